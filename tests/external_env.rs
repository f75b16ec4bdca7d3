//! Environments outside the crate ([`metagrad::envs::external`]): the sampler's batched path
//! gives the same batch however many copies step at once, every algorithm trains on such an
//! environment reproducibly (threads, copies at once, resume), success rates and the
//! meta-test reach the progress file, and a misbehaving environment gets a clear error.
//! The external environment here is a test double: copies of the crate's point env behind
//! the batched, task-indexed interface, truncating episodes after 7 steps and reporting
//! success when the reward exceeds 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metagrad::envs::{BatchEnv, EnvInfo, EnvSource, ExternalEnv, MetaEnv, PointEnv, StepOut};
use metagrad::experiments::meta_rl::{self, Resume, RunSettings};
use metagrad::meta::algos::{Algorithm, IterationStats, Trainer};
use metagrad::meta::{Sampler, SamplerConfig};
use metagrad::policy::{GaussianMlp, GaussianMlpConfig, Policy};
use metagrad::{Error, Result, error::invalid};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What the test double does wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    /// A NaN observation at the given call of `step`.
    NanAt(usize),
    /// An error at the given call of `step`.
    FailAt(usize),
}

struct PointBatch {
    info: EnvInfo,
    proto: PointEnv,
    tasks: Vec<Vec<f64>>,
    copies: Vec<(PointEnv, usize)>,
    max: usize,
    fault: Fault,
    steps: Arc<AtomicUsize>,
}

impl PointBatch {
    fn reset_copy(&mut self, c: usize, seed: u64, obs: &mut [f64]) -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.copies[c].1 = 0;
        self.copies[c].0.reset(&mut rng, &mut obs[c * 4..(c + 1) * 4])
    }
}

impl BatchEnv for PointBatch {
    fn info(&self) -> &EnvInfo {
        &self.info
    }
    fn draw_tasks(&mut self, n: usize, seed: u64) -> Result<()> {
        self.tasks = self.proto.sample_tasks(n, &mut ChaCha8Rng::seed_from_u64(seed));
        Ok(())
    }
    fn start(&mut self, tasks: &[usize], seeds: &[u64], obs: &mut [f64]) -> Result<()> {
        self.copies.clear();
        for (c, &t) in tasks.iter().enumerate() {
            let task = self.tasks.get(t).ok_or_else(|| invalid("task", format!("{t} not drawn")))?;
            let mut env = self.proto.clone();
            env.set_task(task)?;
            self.copies.push((env, 0));
            self.reset_copy(c, seeds[c], obs)?;
        }
        Ok(())
    }
    fn reset(&mut self, copies: &[usize], seeds: &[u64], obs: &mut [f64]) -> Result<()> {
        for (&c, &s) in copies.iter().zip(seeds) {
            self.reset_copy(c, s, obs)?;
        }
        Ok(())
    }
    fn step(&mut self, actions: &[f64], out: StepOut<'_>) -> Result<()> {
        let call = self.steps.fetch_add(1, Ordering::Relaxed);
        if self.fault == Fault::FailAt(call) {
            return Err(invalid("env \"point-batch\" step", "raised RuntimeError('boom')"));
        }
        for (c, (env, t)) in self.copies.iter_mut().enumerate() {
            let s = env.step(&actions[c * 2..(c + 1) * 2], &mut out.obs[c * 4..(c + 1) * 4])?;
            *t += 1;
            out.rewards[c] = s.reward;
            out.terminated[c] = s.done;
            out.truncated[c] = *t >= 7;
            out.success[c] = s.reward > 1.0;
        }
        if self.fault == Fault::NanAt(call) {
            out.obs[5] = f64::NAN;
        }
        Ok(())
    }
    fn max_copies(&self) -> usize {
        self.max
    }
}

struct PointExternal {
    info: EnvInfo,
    max: usize,
    fault: Fault,
    steps: Arc<AtomicUsize>,
}

fn info(name: &str) -> EnvInfo {
    EnvInfo {
        name: name.into(),
        obs_dim: 4,
        act_dim: 2,
        action_low: vec![-0.1; 2],
        action_high: vec![0.1; 2],
        reports_success: true,
        settings: serde_json::json!({"kind": "test double"}),
    }
}

impl ExternalEnv for PointExternal {
    fn info(&self) -> &EnvInfo {
        &self.info
    }
    fn open(&self) -> Result<Box<dyn BatchEnv>> {
        Ok(Box::new(PointBatch {
            info: self.info.clone(),
            proto: PointEnv::corners(),
            tasks: Vec::new(),
            copies: Vec::new(),
            max: self.max,
            fault: self.fault,
            steps: self.steps.clone(),
        }))
    }
}

fn external(max: usize, fault: Fault) -> EnvSource {
    EnvSource::External(Arc::new(PointExternal {
        info: info("point-batch"),
        max,
        fault,
        steps: Arc::new(AtomicUsize::new(0)),
    }))
}

fn settings() -> RunSettings {
    RunSettings {
        tasks: 3,
        rollouts: 2,
        horizon: 10,
        hidden: vec![8],
        inner_steps: Some(1),
        iterations: 3,
        ..RunSettings::default()
    }
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

fn strip(h: &[IterationStats]) -> Vec<String> {
    h.iter()
        .map(|s| {
            let mut s = s.clone();
            s.wall_s = 0.0;
            serde_json::to_string(&s).unwrap()
        })
        .collect()
}

#[test]
fn the_batch_does_not_depend_on_the_copies_stepped_at_once() {
    let cfg = GaussianMlpConfig { hidden: vec![8], init_log_std: 0.5, ..Default::default() };
    let policy = GaussianMlp::new(4, 2, &cfg, 3).unwrap();
    let sampler =
        Sampler::new(SamplerConfig { rollouts_per_task: 2, horizon: 10, ..Default::default() }).unwrap();
    let batch = |max: usize, tasks: std::ops::Range<usize>| {
        let EnvSource::External(e) = external(max, Fault::None) else { unreachable!() };
        let mut env = e.open().unwrap();
        env.draw_tasks(5, 42).unwrap();
        sampler.sample_external(env.as_mut(), tasks, &[&policy], 9, 1, 0).unwrap()
    };
    let want = batch(1, 0..5);
    want.validate().unwrap();
    for max in [2, 5, 100] {
        assert_eq!(batch(max, 0..5), want, "max_copies {max}");
    }
    // Episodes truncated by the env after 7 steps: paths of 7 then 3 (the budget's cut).
    assert_eq!(want.n_paths(), 5 * 2 * 2);
    assert_eq!(&want.path_offsets[..5], &[0, 7, 10, 17, 20]);
    assert_eq!(&want.path_terminated[..4], &[false, false, false, false]);
    assert_eq!(want.path_success.len(), want.n_paths());
    // Tasks 2..4 alone are tasks 2..4 of the whole round, bit for bit.
    let part = batch(3, 2..4);
    assert_eq!(part.obs, want.obs[want.task_steps(2).start * 4..want.task_steps(3).end * 4]);
    assert_eq!(part.actions, want.actions[want.task_steps(2).start * 2..want.task_steps(3).end * 2]);
    // Another round phase draws other noise.
    let EnvSource::External(e) = external(4, Fault::None) else { unreachable!() };
    let mut env = e.open().unwrap();
    env.draw_tasks(5, 42).unwrap();
    let other = sampler.sample_external(env.as_mut(), 0..5, &[&policy], 9, 1, 1).unwrap();
    assert_ne!(other.actions, want.actions);
}

#[test]
fn every_algorithm_trains_reproducibly_on_an_external_env() {
    for algo in Algorithm::KNOWN {
        let run = |max: usize, threads: usize| {
            let p = settings().params_in(algo, 4, external(max, Fault::None), None).unwrap();
            in_pool(threads, || {
                let mut t = Trainer::new(p).unwrap();
                let mut h = Vec::new();
                while !t.finished() {
                    h.push(t.step().unwrap().unwrap());
                }
                (strip(&h), t.policy().params().to_vec())
            })
        };
        let want = run(1, 1);
        assert_eq!(run(6, 2), want, "{algo}");
        assert_eq!(run(100, 1), want, "{algo}");
        // Success rates of every round are recorded.
        let first: serde_json::Value = serde_json::from_str(&want.0[0]).unwrap();
        assert!(
            first["pre_success"].is_number() && first["post_success"].as_array().unwrap().len() == 1,
            "{first}"
        );
    }
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one_and_records_the_env_and_the_meta_test() {
    let dir = tempfile::tempdir().unwrap();
    let s = RunSettings { test_every: 2, test_tasks: Some(2), test_episodes: 2, ..settings() };
    let params = |iterations: usize, env: EnvSource| {
        RunSettings { iterations, ..s.clone() }.params_in(Algorithm::Promp, 5, env, None).unwrap()
    };
    let straight = dir.path().join("straight");
    let want =
        meta_rl::run(&params(4, external(4, Fault::None)), &straight, Resume::No, &mut |_| Ok(())).unwrap();
    let split = dir.path().join("split");
    meta_rl::run(&params(2, external(4, Fault::None)), &split, Resume::No, &mut |_| Ok(())).unwrap();
    let got = meta_rl::run(&params(4, external(2, Fault::None)), &split, Resume::Required, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(strip(&got), strip(&want));
    // The meta-test ran after iterations 2 and 4 (1-based), and only then.
    let tested: Vec<bool> = want.iter().map(|h| h.test.is_some()).collect();
    assert_eq!(tested, [false, true, false, true]);
    let t = want[1].test.as_ref().unwrap();
    assert!(t.pre_return.is_finite() && t.post_success.is_some_and(|x| (0.0..=1.0).contains(&x)), "{t:?}");
    let csv = std::fs::read_to_string(straight.join("progress.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    // The success and meta-test columns, then the ProMP diagnostics.
    assert!(
        header.contains(
            "pre_success,post_success_1,test_pre_return,test_post_return,test_pre_success,test_post_success,log_std,"
        ) && header.ends_with("clip_fraction,outer_step_norm,outer_step_max,adaptation_gain"),
        "{header}"
    );
    let config = std::fs::read_to_string(straight.join("config.json")).unwrap();
    assert!(config.contains("\"env\": \"point-batch\"") && config.contains("test double"), "{config}");
    // The environment's settings are part of the run's: another environment is refused.
    let mut other = info("point-batch");
    other.settings = serde_json::json!({"kind": "another"});
    let env = EnvSource::External(Arc::new(PointExternal {
        info: other,
        max: 4,
        fault: Fault::None,
        steps: Arc::new(AtomicUsize::new(0)),
    }));
    let e = meta_rl::run(&params(5, env), &split, Resume::Required, &mut |_| Ok(())).unwrap_err();
    assert!(e.to_string().contains("settings differ"), "{e}");
}

#[test]
fn a_misbehaving_env_gets_a_clear_error() {
    let msg = |fault: Fault| -> String {
        let p = settings().params_in(Algorithm::TrpoMaml, 1, external(4, fault), None).unwrap();
        let mut t = Trainer::new(p).unwrap();
        match t.step() {
            Err(e) => e.to_string(),
            Ok(_) => String::from("no error"),
        }
    };
    let m = msg(Fault::NanAt(3));
    assert!(m.contains("point-batch") && m.contains("step") && m.contains("non-finite observation"), "{m}");
    assert!(m.contains("task #0 copy 1") && m.contains("NaN"), "{m}");
    let m = msg(Fault::FailAt(2));
    assert!(m.contains("point-batch") && m.contains("RuntimeError('boom')"), "{m}");
    // Descriptions are checked before anything runs.
    let bad = |edit: &dyn Fn(&mut EnvInfo)| -> String {
        let mut i = info("point-batch");
        edit(&mut i);
        let env = EnvSource::External(Arc::new(PointExternal {
            info: i,
            max: 4,
            fault: Fault::None,
            steps: Arc::new(AtomicUsize::new(0)),
        }));
        settings().params_in(Algorithm::Promp, 1, env, None).unwrap_err().to_string()
    };
    let m = bad(&|i| i.action_high[1] = f64::INFINITY);
    assert!(m.contains("action space high") && m.contains("inf"), "{m}");
    let m = bad(&|i| i.action_low = vec![0.0]);
    assert!(m.contains("action space low") && m.contains("has 1 entries"), "{m}");
    let m = bad(&|i| i.name = "point-corners".into());
    assert!(m.contains("built-in environment's name"), "{m}");
    let m = bad(&|i| i.obs_dim = 0);
    assert!(m.contains("observation space"), "{m}");
}

/// A user's own Rust environment: the point env under another name, with a test split of
/// another shape refused.
#[test]
fn a_native_rust_env_trains_and_a_test_env_must_have_the_same_shape() {
    let env = EnvSource::native("my-point", || Ok(Box::new(PointEnv::corners_simple()) as Box<dyn MetaEnv>));
    let p = settings().params_in(Algorithm::PrompTaypo2, 2, env.clone(), None).unwrap();
    assert_eq!(p.env, "my-point");
    let mut t = Trainer::new(p).unwrap();
    let s = t.step().unwrap().unwrap();
    assert!(s.pre_return.is_finite() && s.pre_success.is_none());
    let mut five = info("point-batch");
    five.obs_dim = 5;
    let wrong = EnvSource::External(Arc::new(PointExternal {
        info: five,
        max: 4,
        fault: Fault::None,
        steps: Arc::new(AtomicUsize::new(0)),
    }));
    let e: Error = settings().params_in(Algorithm::Promp, 2, env, Some(wrong)).err().unwrap();
    assert!(e.to_string().contains("test env"), "{e}");
}

#[test]
fn a_grid_reports_success_rates_and_the_meta_test_only_when_it_has_them() {
    use metagrad::experiments::meta_rl::GridSettings;
    let dir = tempfile::tempdir().unwrap();
    let grid = |out: &std::path::Path| GridSettings {
        run: RunSettings { iterations: 2, test_every: 2, test_tasks: Some(2), ..settings() },
        algos: vec![Algorithm::Promp, Algorithm::TrpoMaml],
        seeds: vec![1, 2],
        at: vec![1],
        out: out.to_path_buf(),
    };
    let ext = dir.path().join("external");
    grid(&ext).validate_in(external(4, Fault::None), None).unwrap().run(1, &|_| Ok(())).unwrap();
    let csv = std::fs::read_to_string(ext.join("success.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 2, "{csv}");
    assert!(lines[0].starts_with("algo,iteration,seeds,pre_success_mean"), "{csv}");
    // At iteration 1 no meta-test has run yet (test_iteration 0); at 2 it has.
    assert!(lines[1].starts_with("promp,1,2,") && lines[1].contains(",0,NaN,"), "{}", lines[1]);
    assert!(lines[2].starts_with("promp,2,2,") && lines[2].contains(",2,"), "{}", lines[2]);
    let md = std::fs::read_to_string(ext.join("summary.md")).unwrap();
    assert!(md.contains("Success rates (%) at iteration 2") && md.contains("| trpo-maml | 2 |"), "{md}");
    assert!(ext.join("curves.png").exists());
    // A built-in environment without success or meta-test: no such file.
    let builtin = dir.path().join("builtin");
    let mut g = grid(&builtin);
    g.run.test_every = 0;
    g.validate().unwrap().run(1, &|_| Ok(())).unwrap();
    assert!(!builtin.join("success.csv").exists() && builtin.join("fig1d.png").exists());
}
