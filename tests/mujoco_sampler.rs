//! The parallel sampler on the MuJoCo meta-task environments (feature `mujoco`): batches do
//! not depend on the number of threads, and early-terminated episodes are handled as the
//! sampler documents (the copy closes the path, resets and keeps sampling until its task has
//! rollouts_per_task·horizon steps).
#![cfg(feature = "mujoco")]

use metagrad::envs::MetaEnv;
use metagrad::envs::mujoco::{EnvKind, LocomotionEnv};
use metagrad::meta::sampler::{SampleBatch, Sampler, SamplerConfig, sample_tasks};
use metagrad::policy::{GaussianMlp, GaussianMlpConfig};

fn env(kind: EnvKind) -> LocomotionEnv {
    LocomotionEnv::new(kind).expect("MuJoCo assets: run scripts/install-mujoco.sh")
}

/// A (64, 64) Gaussian MLP policy with initial log-std `log_std`.
fn policy(env: &dyn MetaEnv, log_std: f64) -> GaussianMlp {
    let cfg = GaussianMlpConfig { init_log_std: log_std, ..GaussianMlpConfig::default() };
    GaussianMlp::new(env.obs_dim(), env.act_dim(), &cfg, 7).unwrap()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn mujoco_sampler_identical_for_one_and_two_threads() {
    let cfg = SamplerConfig { rollouts_per_task: 4, horizon: 40, ..SamplerConfig::default() };
    let sampler = Sampler::new(cfg).unwrap();
    for kind in [EnvKind::HalfCheetahRandDirec, EnvKind::AntRandGoal, EnvKind::HopperRandParams] {
        let e = env(kind);
        // log-std 1: wide actions, so that Hopper terminates within the horizon.
        let p = policy(&e, 1.0);
        let tasks = sample_tasks(&e, 5, 3, 1);
        let b1 = in_pool(1, || sampler.sample(&e, &tasks, &[&p], 3, 1, 0).unwrap());
        let b2 = in_pool(2, || sampler.sample(&e, &tasks, &[&p], 3, 1, 0).unwrap());
        b1.validate().unwrap();
        assert_eq!(b1.n_steps(), 5 * 4 * 40, "{}", kind.name());
        // Hopper leaves its healthy range here, so the threads also agree on paths cut short
        // by a termination (HalfCheetah never terminates; Ant does not within 40 steps).
        let terminated = b1.path_terminated.iter().any(|&t| t);
        assert_eq!(terminated, kind == EnvKind::HopperRandParams, "{}: terminations", kind.name());
        assert!(b1.rewards.iter().chain(&b1.obs).all(|v| v.is_finite()), "{}", kind.name());
        assert_eq!(b1, b2, "{}: 1 vs 2 threads", kind.name());
        // The same round again in a 2-thread pool, and another phase differs.
        assert_eq!(b1, in_pool(2, || sampler.sample(&e, &tasks, &[&p], 3, 1, 0).unwrap()));
        let other = in_pool(2, || sampler.sample(&e, &tasks, &[&p], 3, 1, 1).unwrap());
        assert_ne!(b1.actions, other.actions, "{}", kind.name());
    }
}

/// Hopper's observation is qpos[1:] ⊕ clip(qvel, ±10); its reset state is qpos0 = (0, 1.25,
/// 0, …), qvel0 = 0, plus U(±5e-3) noise.
fn is_hopper_reset_obs(o: &[f64]) -> bool {
    (o[0] - 1.25).abs() <= 5e-3 && o[1..].iter().all(|v| v.abs() <= 5e-3)
}

/// Hopper-v5's healthy condition on what the observation shows (z, angle, qpos[2:]).
fn hopper_obs_healthy(o: &[f64], nq: usize) -> bool {
    o[0] > 0.7 && o[1].abs() < 0.2 && o[1..nq - 1].iter().all(|v| v.abs() < 100.0)
}

fn check_paths(b: &SampleBatch, nq: usize, rollouts: usize, horizon: usize) {
    let od = b.obs_dim;
    for p in 0..b.n_paths() {
        let steps = b.path_steps(p);
        assert!(!steps.is_empty());
        assert_eq!(b.time_steps[steps.clone()], (0..steps.len()).collect::<Vec<_>>(), "path {p}");
        assert!(
            is_hopper_reset_obs(&b.obs[steps.start * od..(steps.start + 1) * od]),
            "path {p} starts at a reset"
        );
        let last = &b.final_obs[p * od..(p + 1) * od];
        if b.path_terminated[p] {
            assert!(!hopper_obs_healthy(last, nq), "terminated path {p} ends unhealthy");
            // Every step before the terminal one was healthy.
            for t in steps.start + 1..steps.end {
                assert!(hopper_obs_healthy(&b.obs[t * od..(t + 1) * od], nq), "path {p}, step {t}");
            }
        } else {
            assert!(steps.len() <= horizon);
        }
    }
    for k in 0..b.n_tasks() {
        assert!(b.task_steps(k).len() <= rollouts * horizon);
    }
}

#[test]
fn mujoco_sampler_resets_terminated_episodes_and_fills_the_batch() {
    let e = env(EnvKind::HopperRandParams);
    let nq = e.sim().nq();
    // log-std 2.3: the policy's actions spread over [−10, 10] (clipped), i.e. random actions
    // over the whole control range; Hopper falls within a few dozen steps.
    let p = policy(&e, 2.3);
    let tasks = sample_tasks(&e, 3, 9, 0);
    let (rollouts, horizon) = (4, 100);
    let cfg = SamplerConfig { rollouts_per_task: rollouts, horizon, ..SamplerConfig::default() };
    let b = Sampler::new(cfg.clone()).unwrap().sample(&e, &tasks, &[&p], 9, 0, 0).unwrap();
    b.validate().unwrap();
    // Every task has exactly rollouts·horizon steps, in more paths than copies.
    for k in 0..3 {
        assert_eq!(b.task_steps(k).len(), rollouts * horizon, "task {k}");
        assert!(b.task_paths(k).len() > rollouts, "task {k}: episodes terminated early and restarted");
    }
    let terminated = b.path_terminated.iter().filter(|&&t| t).count();
    assert!(terminated >= 3 * rollouts, "{terminated} terminated paths");
    // At most one unfinished (budget-cut) path per copy, and it is its copy's last path.
    assert!(b.path_terminated.iter().filter(|&&t| !t).count() <= 3 * rollouts);
    check_paths(&b, nq, rollouts, horizon);
    // Same with 2 threads.
    let cfg2 = cfg.clone();
    let b2 = in_pool(2, || Sampler::new(cfg2).unwrap().sample(&e, &tasks, &[&p], 9, 0, 0).unwrap());
    assert_eq!(b, b2);

    // ProMP's choice: drop each copy's unfinished trailing path; only terminated paths remain,
    // and they are exactly the terminated paths of the batch above.
    let drop = SamplerConfig { keep_trailing_partial: false, ..cfg };
    let d = Sampler::new(drop).unwrap().sample(&e, &tasks, &[&p], 9, 0, 0).unwrap();
    d.validate().unwrap();
    assert!(d.path_terminated.iter().all(|&t| t));
    assert_eq!(d.n_paths(), terminated);
    check_paths(&d, nq, rollouts, horizon);
    let kept: Vec<usize> = (0..b.n_paths()).filter(|&p| b.path_terminated[p]).collect();
    for (q, &p) in kept.iter().enumerate() {
        assert_eq!(b.rewards[b.path_steps(p)], d.rewards[d.path_steps(q)], "path {p}");
    }
}
