//! Tests of the sampler: thread-count independence, the action mapping and log-probabilities,
//! early termination, and bad settings.

use super::*;
use crate::envs::{PointEnv, Step};
use crate::policy::GaussianMlpConfig;

fn policy(env: &dyn MetaEnv) -> GaussianMlp {
    let cfg = GaussianMlpConfig { hidden: vec![8, 8], init_log_std: 0.5, ..Default::default() };
    GaussianMlp::new(env.obs_dim(), env.act_dim(), &cfg, 3).unwrap()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn identical_for_one_and_two_threads() {
    let env = PointEnv::corners();
    let p = policy(&env);
    let tasks = sample_tasks(&env, 6, 5, 0);
    let cfg = SamplerConfig { rollouts_per_task: 3, horizon: 17, ..Default::default() };
    let s = Sampler::new(cfg).unwrap();
    let b1 = in_pool(1, || s.sample(&env, &tasks, &[&p], 11, 2, 0).unwrap());
    let b2 = in_pool(2, || s.sample(&env, &tasks, &[&p], 11, 2, 0).unwrap());
    assert_eq!(b1, b2);
    b1.validate().unwrap();
    let (o, a, l) = b1.task_slices(2);
    assert_eq!((o.len(), a.len(), l.len()), (3 * 17 * 4, 3 * 17 * 2, 3 * 17));
    assert_eq!(o[0], b1.obs[2 * 3 * 17 * 4]);
    assert_eq!(b1.task_local_path_offsets(2), vec![0, 17, 34, 51]);
    assert_eq!((b1.n_steps(), b1.n_paths(), b1.n_tasks()), (6 * 3 * 17, 18, 6));
    // another phase draws other noise
    let b3 = s.sample(&env, &tasks, &[&p], 11, 2, 1).unwrap();
    assert_ne!(b1.actions, b3.actions);
}

#[test]
fn log_probs_actions_and_env_mapping_are_consistent() {
    let env = PointEnv::corners_simple();
    let p = policy(&env);
    let tasks = vec![vec![2.0, 2.0], vec![-2.0, 2.0]];
    let s = Sampler::new(SamplerConfig { rollouts_per_task: 2, horizon: 10, ..Default::default() }).unwrap();
    let b = s.sample(&env, &tasks, &[&p], 1, 0, 0).unwrap();
    let lp = p.log_prob_batch(&b.obs, &b.actions).unwrap();
    for (x, y) in lp.iter().zip(&b.log_probs) {
        assert!((x - y).abs() < 1e-10);
    }
    // Replay path 0 through the env: p_{t+1} = p_t + clip(a/100, ±0.1) (bounds ±0.1, c = 10).
    for p_idx in 0..b.n_paths() {
        let steps = b.path_steps(p_idx);
        assert_eq!(b.time_steps[steps.clone()], (0..10).collect::<Vec<_>>());
        let goal = &tasks[b.path_task[p_idx]];
        for t in steps.clone() {
            let next: Vec<f64> = if t + 1 < steps.end {
                b.obs[(t + 1) * 2..(t + 2) * 2].to_vec()
            } else {
                b.final_obs[p_idx * 2..p_idx * 2 + 2].to_vec()
            };
            for (j, nj) in next.iter().enumerate() {
                let a = b.actions[t * 2 + j].clamp(-10.0, 10.0) / 100.0;
                assert!((nj - (b.obs[t * 2 + j] + a)).abs() < 1e-12);
            }
            let d = ((next[0] - goal[0]).powi(2) + (next[1] - goal[1]).powi(2)).sqrt();
            assert!((b.rewards[t] - (2.0 - d).max(0.0)).abs() < 1e-12);
        }
    }
}

/// An env that terminates every 4 steps, to check the reset-and-continue behaviour;
/// with the flag set, its third step fails instead (a simulator error).
#[derive(Clone)]
struct Short(PointEnv, usize, bool);
impl MetaEnv for Short {
    fn name(&self) -> &str {
        "short"
    }
    fn obs_dim(&self) -> usize {
        2
    }
    fn act_dim(&self) -> usize {
        2
    }
    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>) {
        self.0.action_bounds()
    }
    fn sample_tasks(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
        self.0.sample_tasks(n, rng)
    }
    fn set_task(&mut self, task: &[f64]) -> Result<(), Error> {
        self.0.set_task(task)
    }
    fn reset(&mut self, rng: &mut ChaCha8Rng, obs: &mut [f64]) -> Result<(), Error> {
        self.1 = 0;
        self.0.reset(rng, obs)
    }
    fn step(&mut self, action: &[f64], obs: &mut [f64]) -> Result<Step, Error> {
        self.1 += 1;
        if self.2 && self.1 == 3 {
            return Err(invalid("simulation", "the state became non-finite"));
        }
        Ok(Step { done: self.1 == 4, ..self.0.step(action, obs)? })
    }
    fn boxed_clone(&self) -> Box<dyn MetaEnv> {
        Box::new(self.clone())
    }
}

#[test]
fn early_termination_resets_and_keeps_sampling() {
    let env = Short(PointEnv::corners_simple(), 0, false);
    let p = policy(&env);
    let tasks = vec![vec![2.0, 2.0]];
    let cfg = SamplerConfig { rollouts_per_task: 2, horizon: 10, ..Default::default() };
    let b = Sampler::new(cfg.clone()).unwrap().sample(&env, &tasks, &[&p], 1, 0, 0).unwrap();
    assert_eq!(b.n_steps(), 20);
    assert_eq!(b.path_offsets, vec![0, 4, 8, 10, 14, 18, 20]);
    assert_eq!(b.path_terminated, vec![true, true, false, true, true, false]);
    assert_eq!(b.time_steps[8..12], [0, 1, 0, 1]);
    let drop = SamplerConfig { keep_trailing_partial: false, ..cfg };
    let b = Sampler::new(drop).unwrap().sample(&env, &tasks, &[&p], 1, 0, 0).unwrap();
    assert_eq!(b.path_offsets, vec![0, 4, 8, 12, 16]);
    assert!(b.path_terminated.iter().all(|&t| t));
}

#[test]
fn bad_settings_and_inputs_are_errors() {
    let e = Sampler::new(SamplerConfig { horizon: 0, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("horizon = 0"), "{e}");
    let e = Sampler::new(SamplerConfig { action_range: -1.0, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("action_range = -1"), "{e}");
    let env = PointEnv::corners();
    let s = Sampler::new(SamplerConfig::default()).unwrap();
    let wrong = GaussianMlp::new(2, 2, &GaussianMlpConfig::default(), 0).unwrap();
    let e = s.sample(&env, &[vec![2.0, 2.0]], &[&wrong], 0, 0, 0).unwrap_err();
    assert!(e.to_string().contains("policy obs_dim") && e.to_string().contains("got 2"), "{e}");
    let p = policy(&env);
    let e = s.sample(&env, &[vec![2.0]], &[&p], 0, 0, 0).unwrap_err();
    assert!(e.to_string().contains("task"), "{e}");
    // An env failing mid-rollout: the error names the env, the task and the cause.
    let failing = Short(PointEnv::corners_simple(), 0, true);
    let q = policy(&failing);
    let e = s.sample(&failing, &[vec![2.0, 2.0], vec![-2.0, 2.0]], &[&q], 0, 0, 0).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("short task #0") && msg.contains("non-finite"), "{msg}");
    let e = s.sample(&env, &vec![vec![2.0, 2.0]; 3], &[&p, &p], 0, 0, 0).unwrap_err();
    assert!(e.to_string().contains("policies.len()") && e.to_string().contains("got 2"), "{e}");
}
