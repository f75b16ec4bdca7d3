//! Throughput of the MuJoCo meta-task environments, per robot.
//!
//! * `mujoco/mj_step/<env>`: raw `mj_step` calls per second on one thread (uniformly random
//!   actions, resets on termination).
//! * `mujoco/env_step/<env>`: environment steps per second on one thread (frame skip, reward,
//!   observation and resets on termination included), no policy.
//! * `sampler/with_policy/<env>/<k>threads`: env steps per second of the full sampler
//!   ([`Sampler::sample`]) with Gaussian-MLP (64, 64) inference, 20 rollouts × horizon 100 per
//!   task, in a dedicated rayon pool of k threads.
//! * `sampler/raw_ceiling/<env>/<k>threads`: the same sampling round reduced to raw physics:
//!   per env step set the controls and call `mj_step` frame-skip times (no policy inference,
//!   observation, reward or `cfrc_ext`). It replays the sampler's own round exactly: the same
//!   (mapped) actions, the copies' own random streams (so resets draw the same states), resets
//!   where the sampler's episodes terminated; the setup checks that the replay retraces the
//!   sampler's states bit for bit. Each task's copies run one after the other (best case for
//!   the caches); tasks are spread over the same k-thread pool. Its env steps per second
//!   (= mj_step/s ÷ frame skip) is the ceiling the sampler is compared against.
//! * `sampler/raw_lockstep/<env>/<k>threads`: the same replay with each task's copies stepped
//!   in lockstep on their own data, as the sampler steps them (isolates the cache cost of
//!   interleaving 20 `mjData` from the cost of the policy and the env code).
//! * `meta_round/half-cheetah-rand-direc/40tasks/2threads`: one pre-update sampling round of
//!   a meta-iteration in the paper's setup (40 tasks × 20 rollouts × 100 steps = 80k env steps)
//!   on two threads; a meta-iteration samples twice that (pre- and post-update).
//!
//! The per-robot sampler rows use fewer than the paper's 40 tasks ([`tasks_for`]) to keep a
//! run short on a shared 2-core machine; the work per task (20 × 100 steps, one batched
//! forward pass of 20 rows per step) is the paper's, so steps per second carry over.
//!
//! Run: `cargo bench --features mujoco --bench mujoco_envs` (filter e.g. with `-- sampler/`).

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use metagrad::envs::MetaEnv;
use metagrad::envs::mujoco::{EnvKind, LocomotionEnv};
use metagrad::meta::sampler::{SampleBatch, Sampler, SamplerConfig, rollout_seed, sample_tasks};
use metagrad::policy::{GaussianMlp, GaussianMlpConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

/// Environment steps per measured batch (one episode of the paper's horizon).
const BATCH: usize = 100;

fn actions(env: &LocomotionEnv, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    let (lo, hi) = env.action_bounds();
    (0..BATCH).map(|_| lo.iter().zip(&hi).map(|(l, h)| rng.random_range(*l..*h)).collect()).collect()
}

fn bench_envs(c: &mut Criterion) {
    let mut group = c.benchmark_group("mujoco");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    for kind in EnvKind::ALL {
        let mut env = LocomotionEnv::new(kind).expect("run scripts/install-mujoco.sh");
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let task = env.sample_tasks(1, &mut rng).remove(0);
        env.set_task(&task).unwrap();
        let acts = actions(&env, &mut rng);
        let mut obs = vec![0.0; env.obs_dim()];
        let frame_skip = env.sim().frame_skip();

        // Raw physics along the same kind of trajectories: per environment step set the
        // controls and call mj_step frame_skip times (no reward, observation or cfrc_ext),
        // resetting when the robot becomes unhealthy. Counts mj_step calls.
        group.throughput(Throughput::Elements((BATCH * frame_skip) as u64));
        let mut raw = env.clone();
        let mut raw_rng = rng.clone();
        group.bench_function(format!("mj_step/{}", kind.name()), |b| {
            b.iter(|| {
                raw.reset(&mut raw_rng, &mut obs).unwrap();
                for a in &acts {
                    let sim = raw.sim_mut();
                    sim.set_ctrl(a).expect("action length");
                    for _ in 0..frame_skip {
                        sim.raw_step();
                    }
                    if !raw.is_healthy() {
                        raw.reset(&mut raw_rng, &mut obs).unwrap();
                    }
                }
                black_box(raw.sim().qpos()[0])
            })
        });

        // Environment steps: one 100-step episode, resetting on termination.
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(format!("env_step/{}", kind.name()), |b| {
            b.iter(|| {
                env.reset(&mut rng, &mut obs).unwrap();
                let mut ret = 0.0;
                for a in &acts {
                    let s = env.step(a, &mut obs).unwrap();
                    ret += s.reward;
                    if s.done {
                        env.reset(&mut rng, &mut obs).unwrap();
                    }
                }
                black_box(ret)
            })
        });
    }
    group.finish();
}

/// Tasks per measured sampling round (20 rollouts × 100 steps each): fewer for the robots
/// whose physics is slow, so that one round takes well under a second on one thread.
fn tasks_for(kind: EnvKind) -> usize {
    match kind {
        EnvKind::AntRandDirec | EnvKind::AntRandGoal | EnvKind::HumanoidRandDirec2D => 2,
        _ => 4,
    }
}

/// Seed, iteration and phase of the measured sampling rounds.
const SEED: u64 = 1;

/// One copy's replay plan: its random-number seed, the env-unit actions of its steps and, per
/// step, whether its episode terminated there (the sampler reset the copy after it).
struct CopyPlan {
    seed: u64,
    ctrl: Vec<f64>,
    reset_after: Vec<bool>,
}

/// The raw-physics replay of a sampler batch: per task, per copy, the sampler's actions mapped
/// onto the env's bounds, with the resets where the sampler's episodes terminated.
fn replay_plan(env: &LocomotionEnv, batch: &SampleBatch, cfg: &SamplerConfig) -> Vec<Vec<CopyPlan>> {
    let (lb, ub) = env.action_bounds();
    let (ad, c, per_copy) = (env.act_dim(), cfg.action_range, cfg.horizon);
    (0..batch.n_tasks())
        .map(|k| {
            let steps = batch.task_steps(k);
            let mut reset_after = vec![false; steps.len()];
            for p in batch.task_paths(k) {
                if batch.path_terminated[p] {
                    reset_after[batch.path_offsets[p + 1] - 1 - steps.start] = true;
                }
            }
            let acts = &batch.actions[steps.start * ad..steps.end * ad];
            let ctrl: Vec<f64> = acts
                .chunks_exact(ad)
                .flat_map(|a| {
                    (0..ad).map(|j| lb[j] + (a[j].clamp(-c, c) + c) * ((ub[j] - lb[j]) / (2.0 * c)))
                })
                .collect();
            ctrl.chunks_exact(per_copy * ad)
                .zip(reset_after.chunks_exact(per_copy))
                .enumerate()
                .map(|(r, (ctrl, reset))| CopyPlan {
                    seed: rollout_seed(SEED, 0, 0, k as u64, r as u64),
                    ctrl: ctrl.to_vec(),
                    reset_after: reset.to_vec(),
                })
                .collect()
        })
        .collect()
}

/// One env step of a replay: draw (and discard) the policy noise the sampler drew, so that
/// resets draw the sampler's reset states; set the controls; `mj_step` frame-skip times;
/// reset where the sampler's episode terminated. The physics is then exactly the sampler's.
fn replay_step(env: &mut LocomotionEnv, rng: &mut ChaCha8Rng, ctrl: &[f64], reset: bool, obs: &mut [f64]) {
    for _ in 0..ctrl.len() {
        let _: f64 = rng.sample(StandardNormal);
    }
    let frame_skip = env.sim().frame_skip();
    let sim = env.sim_mut();
    sim.set_ctrl(ctrl).expect("action length");
    for _ in 0..frame_skip {
        sim.raw_step();
    }
    if reset {
        env.reset(rng, obs).unwrap();
    }
}

/// Replay `plan` with raw physics, tasks in parallel in the current pool, each task's copies
/// one after the other on one env (set to the task beforehand): the best case for caches.
fn raw_round(envs: &mut [LocomotionEnv], plan: &[Vec<CopyPlan>]) -> f64 {
    envs.par_iter_mut()
        .zip(plan)
        .map(|(env, copies)| {
            let mut obs = vec![0.0; env.obs_dim()];
            let ad = env.act_dim();
            let mut x = 0.0;
            for copy in copies {
                let mut rng = ChaCha8Rng::seed_from_u64(copy.seed);
                env.reset(&mut rng, &mut obs).unwrap();
                for (a, &reset) in copy.ctrl.chunks_exact(ad).zip(&copy.reset_after) {
                    replay_step(env, &mut rng, a, reset, &mut obs);
                }
                x += env.sim().qpos()[0];
            }
            x
        })
        .sum()
}

/// As [`raw_round`], but each task's copies step in lockstep on their own envs, as the
/// sampler steps them (one env step of every copy, then the next time step).
fn raw_round_lockstep(envs: &mut [Vec<LocomotionEnv>], plan: &[Vec<CopyPlan>]) -> f64 {
    envs.par_iter_mut()
        .zip(plan)
        .map(|(copies_env, copies)| {
            let mut obs = vec![0.0; copies_env[0].obs_dim()];
            let ad = copies_env[0].act_dim();
            let mut rngs: Vec<ChaCha8Rng> =
                copies.iter().map(|c| ChaCha8Rng::seed_from_u64(c.seed)).collect();
            for (env, rng) in copies_env.iter_mut().zip(&mut rngs) {
                env.reset(rng, &mut obs).unwrap();
            }
            for t in 0..copies[0].reset_after.len() {
                for ((env, copy), rng) in copies_env.iter_mut().zip(copies).zip(&mut rngs) {
                    replay_step(env, rng, &copy.ctrl[t * ad..(t + 1) * ad], copy.reset_after[t], &mut obs);
                }
            }
            copies_env.iter().map(|e| e.sim().qpos()[0]).sum::<f64>()
        })
        .sum()
}

/// Check that the replay of task 0, copy 0 retraces the sampler's states: the first
/// observation entry (a qpos entry for every robot) after each step equals the batch's.
fn check_replay(env: &LocomotionEnv, task: &[f64], batch: &SampleBatch, copy: &CopyPlan) {
    let mut env = env.clone();
    env.try_set_task(task).unwrap();
    let (od, ad) = (env.obs_dim(), env.act_dim());
    let mut obs = vec![0.0; od];
    let mut rng = ChaCha8Rng::seed_from_u64(copy.seed);
    env.reset(&mut rng, &mut obs).unwrap();
    assert_eq!(obs[0], batch.obs[0], "{}: first reset state", env.name());
    let steps = copy.reset_after.len();
    for t in 0..steps - 1 {
        replay_step(&mut env, &mut rng, &copy.ctrl[t * ad..(t + 1) * ad], copy.reset_after[t], &mut obs);
        assert_eq!(env.observation()[0], batch.obs[(t + 1) * od], "{}: replay step {t}", env.name());
    }
}

/// A group for whole sampling rounds (long iterations): 10 flat samples.
fn round_group<'c>(
    c: &'c mut Criterion,
    name: &str,
    warm_up: Duration,
    measure: Duration,
) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(warm_up).measurement_time(measure);
    group
}

fn bench_sampler(c: &mut Criterion) {
    let mut group = round_group(c, "sampler", Duration::from_millis(300), Duration::from_secs(2));
    let cfg = SamplerConfig::default();
    let sampler = Sampler::new(cfg.clone()).unwrap();
    for kind in EnvKind::ALL {
        let env = LocomotionEnv::new(kind).expect("run scripts/install-mujoco.sh");
        let n_tasks = tasks_for(kind);
        let tasks = sample_tasks(&env, n_tasks, 1, 0);
        let policy =
            GaussianMlp::new(env.obs_dim(), env.act_dim(), &GaussianMlpConfig::default(), 1).unwrap();
        let batch = sampler.sample(&env, &tasks, &[&policy], SEED, 0, 0).unwrap();
        let plan = replay_plan(&env, &batch, &cfg);
        check_replay(&env, &tasks[0], &batch, &plan[0][0]);
        let mut raw_envs: Vec<LocomotionEnv> = tasks
            .iter()
            .map(|t| {
                let mut e = env.clone();
                e.try_set_task(t).unwrap();
                e
            })
            .collect();
        let mut lockstep_envs: Vec<Vec<LocomotionEnv>> =
            raw_envs.iter().map(|e| vec![e.clone(); cfg.rollouts_per_task]).collect();
        group.throughput(Throughput::Elements((n_tasks * cfg.rollouts_per_task * cfg.horizon) as u64));
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            group.bench_function(format!("with_policy/{}/{threads}threads", kind.name()), |b| {
                b.iter(|| {
                    pool.install(|| black_box(sampler.sample(&env, &tasks, &[&policy], 1, 0, 0).unwrap()))
                })
            });
            group.bench_function(format!("raw_ceiling/{}/{threads}threads", kind.name()), |b| {
                b.iter(|| pool.install(|| black_box(raw_round(&mut raw_envs, &plan))))
            });
            group.bench_function(format!("raw_lockstep/{}/{threads}threads", kind.name()), |b| {
                b.iter(|| pool.install(|| black_box(raw_round_lockstep(&mut lockstep_envs, &plan))))
            });
        }
    }
    group.finish();
}

/// One pre-update sampling round of a HalfCheetahRandDirec meta-iteration (the paper's 40
/// tasks × 20 rollouts × 100 steps) on two threads.
fn bench_meta_round(c: &mut Criterion) {
    let mut group = round_group(c, "meta_round", Duration::from_millis(100), Duration::from_secs(5));
    let env = LocomotionEnv::new(EnvKind::HalfCheetahRandDirec).expect("run scripts/install-mujoco.sh");
    let tasks = sample_tasks(&env, 40, 1, 0);
    let policy = GaussianMlp::new(env.obs_dim(), env.act_dim(), &GaussianMlpConfig::default(), 1).unwrap();
    let sampler = Sampler::new(SamplerConfig::default()).unwrap();
    group.throughput(Throughput::Elements(40 * 20 * 100));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    group.bench_function("half-cheetah-rand-direc/40tasks/2threads", |b| {
        b.iter(|| pool.install(|| black_box(sampler.sample(&env, &tasks, &[&policy], 1, 0, 0).unwrap())))
    });
    group.finish();
}

criterion_group!(benches, bench_envs, bench_sampler, bench_meta_round);
criterion_main!(benches);
