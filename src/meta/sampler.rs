//! Parallel, seeded trajectory sampler (ProMP's meta-sampler, docs/theory.md#meta-rl-setup).
//!
//! For every task, `rollouts_per_task` environment copies each take exactly `horizon`
//! steps with the Gaussian MLP policy. The tasks are the unit of parallel work (rayon);
//! within a task the copies step in lockstep so that the policy's mean is computed for
//! all of them in one batched forward pass.
//!
//! # Actions
//!
//! The policy's action a (stored raw in [`SampleBatch::actions`], with its log-probability)
//! is presented in [−c, c]^d, c = `action_range` (10 in ProMP), and mapped linearly onto
//! the environment's bounds [lb, ub]: a_env = lb + (clip(a, ±c) + c)·(ub − lb)/(2c).
//!
//! # Randomness
//!
//! Copy r of task k draws everything (reset states, policy noise) from its own
//! `ChaCha8Rng::seed_from_u64(rollout_seed(seed, iteration, phase, k, r))`, so the batch
//! does not depend on the number of threads. `phase` separates the pre-update and the
//! post-update sampling rounds of one iteration (e.g. the inner-step index).
//!
//! # Environment copies
//!
//! Each rayon worker clones the caller's env once per batch of tasks it takes on, plus
//! `rollouts_per_task` copies, and switches those copies from task to task with
//! [`MetaEnv::set_task`] instead of cloning them per task (a MuJoCo clone allocates and
//! fills a whole `mjData`); every copy is reset before it steps, so the batch is the same as
//! with fresh clones. Tasks must be ones the env accepts (e.g. drawn by its
//! `sample_tasks`): an env that rejects a task keeps its previous one, which for a reused
//! copy is the previous task that worker sampled.
//!
//! # Early termination
//!
//! ProMP's sampler keeps every environment copy stepping until the batch has
//! rollouts_per_task·horizon steps per task: when an episode terminates, the path is closed
//! and the copy resets and starts a new path. This sampler does the same. The trailing,
//! unfinished path of a copy (cut by the step budget, not by termination) is kept by
//! default, so every task has exactly rollouts_per_task·horizon steps; ProMP drops it
//! (set `keep_trailing_partial = false` for that). Without early termination (the point
//! envs) every copy yields one path of `horizon` steps, and both choices agree.

use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use std::sync::{Mutex, PoisonError};

use crate::envs::MetaEnv;
use crate::envs::external::{BatchEnv, StepOut};
use crate::error::{Error, SettingError, ensure, invalid};
use crate::policy::GaussianMlp;

/// Sampler settings (defaults: ProMP's 20 rollouts per task, horizon 100, actions
/// presented in [−10, 10]^d, trailing partial paths kept).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplerConfig {
    /// Environment copies (episodes without early termination) per task.
    pub rollouts_per_task: usize,
    /// Steps per copy.
    pub horizon: usize,
    /// c: the policy's actions are presented in [−c, c]^d.
    pub action_range: f64,
    /// Keep the unfinished last path of a copy whose earlier episode terminated.
    pub keep_trailing_partial: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self { rollouts_per_task: 20, horizon: 100, action_range: 10.0, keep_trailing_partial: true }
    }
}

/// Samples from all tasks of one round, as flat arrays.
///
/// Steps are ordered by task, then environment copy, then path, then time. Path p covers
/// steps `path_offsets[p]..path_offsets[p+1]`; the paths of task k are
/// `task_path_offsets[k]..task_path_offsets[k+1]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleBatch {
    /// Observation dimension.
    pub obs_dim: usize,
    /// Action dimension.
    pub act_dim: usize,
    /// x_t, N×obs_dim row-major.
    pub obs: Vec<f64>,
    /// Raw policy actions a_t (before clipping and mapping), N×act_dim.
    pub actions: Vec<f64>,
    /// Rewards r_t.
    pub rewards: Vec<f64>,
    /// Behaviour log-probabilities log π_θ(a_t|x_t) of the sampling policy.
    pub log_probs: Vec<f64>,
    /// Time index t of every step within its path.
    pub time_steps: Vec<usize>,
    /// Step offsets of the paths (n_paths + 1 entries).
    pub path_offsets: Vec<usize>,
    /// Task index of every path.
    pub path_task: Vec<usize>,
    /// Whether the path ended by termination (true) or by the step budget (false).
    pub path_terminated: Vec<bool>,
    /// Whether the path succeeded at some step (environments that report success, e.g.
    /// Meta-World's `info["success"]`); empty for environments that do not.
    pub path_success: Vec<bool>,
    /// Last observation x_T of every path (n_paths×obs_dim), for bootstrapping.
    pub final_obs: Vec<f64>,
    /// Path offsets of the tasks (n_tasks + 1 entries).
    pub task_path_offsets: Vec<usize>,
}

impl SampleBatch {
    /// Number of steps N.
    pub fn n_steps(&self) -> usize {
        self.rewards.len()
    }
    /// Number of paths.
    pub fn n_paths(&self) -> usize {
        self.path_task.len()
    }
    /// Number of tasks.
    pub fn n_tasks(&self) -> usize {
        self.task_path_offsets.len().saturating_sub(1)
    }
    /// Step range of path p.
    pub fn path_steps(&self, p: usize) -> std::ops::Range<usize> {
        self.path_offsets[p]..self.path_offsets[p + 1]
    }
    /// Path range of task k.
    pub fn task_paths(&self, k: usize) -> std::ops::Range<usize> {
        self.task_path_offsets[k]..self.task_path_offsets[k + 1]
    }
    /// Step range of task k.
    pub fn task_steps(&self, k: usize) -> std::ops::Range<usize> {
        let ps = self.task_paths(k);
        self.path_offsets[ps.start]..self.path_offsets[ps.end]
    }
    /// Observations, actions and behaviour log-probabilities of task k's steps (the
    /// inputs of [`GaussianMlp::rows`] for that task).
    pub fn task_slices(&self, k: usize) -> (&[f64], &[f64], &[f64]) {
        let r = self.task_steps(k);
        (
            &self.obs[r.start * self.obs_dim..r.end * self.obs_dim],
            &self.actions[r.start * self.act_dim..r.end * self.act_dim],
            &self.log_probs[r],
        )
    }

    /// Path offsets of task k relative to its first step (for estimators that work on
    /// [`Self::task_slices`]): entries 0 = first path start, …, last = number of steps.
    pub fn task_local_path_offsets(&self, k: usize) -> Vec<usize> {
        let ps = self.task_paths(k);
        let base = self.path_offsets[ps.start];
        self.path_offsets[ps.start..=ps.end].iter().map(|o| o - base).collect()
    }

    /// Checks that all arrays have consistent lengths and the offsets are monotone (for
    /// batches built or edited by hand); the error names the first inconsistent field.
    pub fn validate(&self) -> Result<(), SettingError> {
        let n = self.rewards.len();
        let np = self.path_task.len();
        ensure(self.obs.len() == n * self.obs_dim, "obs.len()", self.obs.len(), "expected N·obs_dim")?;
        ensure(
            self.actions.len() == n * self.act_dim,
            "actions.len()",
            self.actions.len(),
            "expected N·act_dim",
        )?;
        ensure(self.log_probs.len() == n, "log_probs.len()", self.log_probs.len(), "expected N")?;
        ensure(self.time_steps.len() == n, "time_steps.len()", self.time_steps.len(), "expected N")?;
        ensure(
            self.path_offsets.len() == np + 1,
            "path_offsets.len()",
            self.path_offsets.len(),
            "expected n_paths + 1",
        )?;
        ensure(
            self.path_terminated.len() == np,
            "path_terminated.len()",
            self.path_terminated.len(),
            "expected n_paths",
        )?;
        ensure(
            self.path_success.is_empty() || self.path_success.len() == np,
            "path_success.len()",
            self.path_success.len(),
            "expected 0 or n_paths",
        )?;
        ensure(
            self.final_obs.len() == np * self.obs_dim,
            "final_obs.len()",
            self.final_obs.len(),
            "expected n_paths·obs_dim",
        )?;
        let monotone = |o: &[usize], end: usize| {
            o.first() == Some(&0) && o.last() == Some(&end) && o.windows(2).all(|w| w[0] <= w[1])
        };
        ensure(
            monotone(&self.path_offsets, n),
            "path_offsets",
            format!("{:?}", self.path_offsets),
            "expected 0 ≤ … ≤ N",
        )?;
        ensure(
            monotone(&self.task_path_offsets, np),
            "task_path_offsets",
            format!("{:?}", self.task_path_offsets),
            "expected 0 ≤ … ≤ n_paths",
        )?;
        for k in 0..self.n_tasks() {
            if let Some(p) = self.task_paths(k).find(|&p| self.path_task[p] != k) {
                return Err(SettingError::new(
                    "path_task",
                    format!("path {p} → {}", self.path_task[p]),
                    format!("expected task {k}"),
                ));
            }
        }
        Ok(())
    }

    /// Mean over paths of the undiscounted return Σ_t r_t (ProMP's "AverageReturn").
    pub fn average_return(&self) -> f64 {
        if self.n_paths() == 0 {
            return 0.0;
        }
        self.rewards.iter().sum::<f64>() / self.n_paths() as f64
    }
    /// Fraction of task k's paths that succeeded, if the environment reports success.
    pub fn task_success_rate(&self, k: usize) -> Option<f64> {
        if self.path_success.is_empty() {
            return None;
        }
        let ps = self.task_paths(k);
        let n = ps.len();
        Some(if n == 0 {
            0.0
        } else {
            self.path_success[ps].iter().filter(|&&s| s).count() as f64 / n as f64
        })
    }
    /// [`Self::average_return`] restricted to task k.
    pub fn task_average_return(&self, k: usize) -> f64 {
        let ps = self.task_paths(k);
        if ps.is_empty() {
            return 0.0;
        }
        self.rewards[self.task_steps(k)].iter().sum::<f64>() / ps.len() as f64
    }
}

/// SplitMix64 finaliser.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed of environment copy `rollout` of task `task` in sampling round (`iteration`,
/// `phase`): a SplitMix64 hash chain over (seed, iteration, phase, task, rollout).
pub fn rollout_seed(seed: u64, iteration: u64, phase: u64, task: u64, rollout: u64) -> u64 {
    [iteration, phase, task, rollout].iter().fold(splitmix64(seed), |h, &x| splitmix64(h ^ splitmix64(x)))
}

/// The sampler (settings validated once, at construction).
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
}

/// A worker's environment copies, reused across the tasks it samples.
struct WorkerEnvs {
    /// A clone of the caller's env (its task and state untouched).
    base: Box<dyn MetaEnv>,
    /// The copies stepped in lockstep (at least `rollouts_per_task` once used).
    copies: Vec<Box<dyn MetaEnv>>,
}

/// One path under construction or finished, local to a copy.
struct CopyBuffers {
    obs: Vec<f64>,
    actions: Vec<f64>,
    rewards: Vec<f64>,
    log_probs: Vec<f64>,
    time_steps: Vec<usize>,
    /// (end step, terminated) of closed paths, relative to this copy.
    path_ends: Vec<(usize, bool)>,
    final_obs: Vec<f64>,
    /// Whether each closed path succeeded (external environments that report success).
    success: Vec<bool>,
}

impl CopyBuffers {
    fn new(horizon: usize, od: usize, ad: usize) -> Self {
        Self {
            obs: Vec::with_capacity(horizon * od),
            actions: Vec::with_capacity(horizon * ad),
            rewards: Vec::with_capacity(horizon),
            log_probs: Vec::with_capacity(horizon),
            time_steps: Vec::with_capacity(horizon),
            path_ends: Vec::new(),
            final_obs: Vec::new(),
            success: Vec::new(),
        }
    }

    /// Closes the trailing, unfinished path (cut by the step budget, the copy's last
    /// observation `last`): kept when `keep` or when it is the copy's only path, else
    /// dropped.
    fn close_trailing(&mut self, t_in_path: usize, last: &[f64], ad: usize, keep: bool, success: bool) {
        if t_in_path == 0 {
            return;
        }
        if self.path_ends.is_empty() || keep {
            self.path_ends.push((self.rewards.len(), false));
            self.final_obs.extend_from_slice(last);
            self.success.push(success);
        } else {
            let od = last.len();
            let keep = self.path_ends.last().map_or(0, |e| e.0);
            self.obs.truncate(keep * od);
            self.actions.truncate(keep * ad);
            self.rewards.truncate(keep);
            self.log_probs.truncate(keep);
            self.time_steps.truncate(keep);
        }
    }
}

/// One batch from every task's copies (in task order); `with_success`: record the paths'
/// success flags.
fn assemble(od: usize, ad: usize, per_task: Vec<Vec<CopyBuffers>>, with_success: bool) -> SampleBatch {
    let mut b = SampleBatch {
        obs_dim: od,
        act_dim: ad,
        path_offsets: vec![0],
        task_path_offsets: vec![0],
        ..Default::default()
    };
    for (k, copies) in per_task.into_iter().enumerate() {
        for c in copies {
            let base = b.rewards.len();
            b.obs.extend_from_slice(&c.obs);
            b.actions.extend_from_slice(&c.actions);
            b.rewards.extend_from_slice(&c.rewards);
            b.log_probs.extend_from_slice(&c.log_probs);
            b.time_steps.extend_from_slice(&c.time_steps);
            b.final_obs.extend_from_slice(&c.final_obs);
            for (end, term) in c.path_ends {
                b.path_offsets.push(base + end);
                b.path_task.push(k);
                b.path_terminated.push(term);
            }
            if with_success {
                b.path_success.extend_from_slice(&c.success);
            }
        }
        b.task_path_offsets.push(b.path_task.len());
    }
    b
}

/// Checks that there is one policy, or one per task, each of the environment's shape.
fn check_policies(
    policies: &[&GaussianMlp],
    n_tasks: usize,
    env_name: &str,
    od: usize,
    ad: usize,
) -> Result<(), SettingError> {
    ensure(
        policies.len() == 1 || policies.len() == n_tasks,
        "policies.len()",
        policies.len(),
        &format!("expected 1 or the number of tasks ({n_tasks})"),
    )?;
    for p in policies {
        ensure(p.obs_dim() == od, "policy obs_dim", p.obs_dim(), &format!("env {env_name} has {od}"))?;
        ensure(p.act_dim() == ad, "policy act_dim", p.act_dim(), &format!("env {env_name} has {ad}"))?;
    }
    Ok(())
}

impl Sampler {
    /// A sampler; errors name the field for zero rollouts, zero horizon or a non-positive
    /// / non-finite action range.
    pub fn new(cfg: SamplerConfig) -> Result<Self, SettingError> {
        ensure(cfg.rollouts_per_task > 0, "rollouts_per_task", cfg.rollouts_per_task, "must be positive")?;
        ensure(cfg.horizon > 0, "horizon", cfg.horizon, "must be positive")?;
        ensure(
            cfg.action_range.is_finite() && cfg.action_range > 0.0,
            "action_range",
            cfg.action_range,
            "must be positive and finite",
        )?;
        Ok(Self { cfg })
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Sample every task of `tasks` (in order) with `policies[k]` for task k, or with
    /// `policies[0]` for all tasks when one policy is given. Runs in the current rayon pool.
    pub fn sample(
        &self,
        env: &dyn MetaEnv,
        tasks: &[Vec<f64>],
        policies: &[&GaussianMlp],
        seed: u64,
        iteration: u64,
        phase: u64,
    ) -> Result<SampleBatch, Error> {
        self.sample_from(env, tasks, policies, seed, iteration, phase, 0)
    }

    /// [`Self::sample`] for tasks `first_task`, `first_task + 1`, … of a round: `tasks[k]`
    /// draws from the seeds (and errors name the index) of task `first_task + k`, so that a
    /// round split into consecutive parts gives, part by part, the tasks of the whole round
    /// bit for bit (the batch's own task indices start at 0).
    #[allow(clippy::too_many_arguments)]
    pub fn sample_from(
        &self,
        env: &dyn MetaEnv,
        tasks: &[Vec<f64>],
        policies: &[&GaussianMlp],
        seed: u64,
        iteration: u64,
        phase: u64,
        first_task: usize,
    ) -> Result<SampleBatch, Error> {
        let (od, ad) = (env.obs_dim(), env.act_dim());
        check_policies(policies, tasks.len(), env.name(), od, ad)?;
        // The trait has no task dimension: learn it from one throwaway draw.
        let task_dim = env.sample_tasks(1, &mut ChaCha8Rng::seed_from_u64(0)).first().map_or(0, Vec::len);
        for (k, t) in tasks.iter().enumerate() {
            ensure(
                t.len() == task_dim && t.iter().all(|x| x.is_finite()),
                "task",
                format!("#{k} {t:?}"),
                &format!("expected {task_dim} finite entries"),
            )?;
        }
        let (lb, ub) = env.action_bounds();
        ensure(
            lb.len() == ad && ub.len() == ad,
            "action_bounds",
            format!("{lb:?}, {ub:?}"),
            "expected act_dim entries",
        )?;
        ensure(
            lb.iter().zip(&ub).all(|(l, u)| l.is_finite() && u.is_finite() && l <= u),
            "action_bounds",
            format!("{lb:?}, {ub:?}"),
            "expected finite lb ≤ ub",
        )?;
        // Environment copies are reused across the tasks a worker samples (cloning a MuJoCo
        // env allocates and fills its whole mjData, a large share of a HalfCheetah task's
        // sampling time). `env` itself need not be `Sync`, so each worker clones its base copy
        // from behind a lock.
        let master = Mutex::new(env.boxed_clone());
        let env_name = env.name().to_string();
        let per_task: Vec<Result<Vec<CopyBuffers>, Error>> = (0..tasks.len())
            .into_par_iter()
            .map_init(
                || WorkerEnvs {
                    base: master.lock().unwrap_or_else(PoisonError::into_inner).boxed_clone(),
                    copies: Vec::new(),
                },
                |w, k| {
                    // A stop request ends the round between tasks (the iteration is dropped).
                    crate::stop::check()?;
                    let policy = if policies.len() == 1 { policies[0] } else { policies[k] };
                    let global = first_task + k;
                    self.sample_task(w, &tasks[k], policy, &lb, &ub, |r| {
                        rollout_seed(seed, iteration, phase, global as u64, r as u64)
                    })
                    .map_err(|e| invalid(format!("{env_name} task #{global}"), e.to_string()))
                },
            )
            .collect();
        // The first failing task by index, whatever the thread count.
        let per_task = per_task.into_iter().collect::<Result<Vec<_>, Error>>()?;
        Ok(assemble(od, ad, per_task, false))
    }

    /// Tasks `tasks` (indices into the round drawn by [`BatchEnv::draw_tasks`]) sampled on an
    /// external environment, `policies[k]` for the k-th of them (or `policies[0]` for all):
    /// the same batch layout, action mapping and seeding as [`Self::sample_from`].
    ///
    /// Copy r of task k draws from its own `ChaCha8Rng::seed_from_u64(rollout_seed(seed,
    /// iteration, phase, k, r))`: first the seed of its first episode's reset, then the
    /// policy noise of every step, and the seed of a new episode's reset whenever one ends
    /// (terminated, or truncated by the environment). The copies of as many whole tasks as
    /// [`BatchEnv::max_copies`] allows start and step together; since every copy's path is
    /// a function of its own seeds, the batch does not depend on that number (nor on the
    /// environment's worker processes).
    ///
    /// # Errors
    /// Policies of the wrong shape; the environment's errors; a non-finite observation or
    /// reward (naming the environment, the call, the task and the copy).
    #[allow(clippy::too_many_arguments)]
    pub fn sample_external(
        &self,
        env: &mut dyn BatchEnv,
        tasks: std::ops::Range<usize>,
        policies: &[&GaussianMlp],
        seed: u64,
        iteration: u64,
        phase: u64,
    ) -> Result<SampleBatch, Error> {
        let info = env.info().clone();
        let (od, ad) = (info.obs_dim, info.act_dim);
        check_policies(policies, tasks.len(), &info.name, od, ad)?;
        let (nr, hor, c) = (self.cfg.rollouts_per_task, self.cfg.horizon, self.cfg.action_range);
        let per_group = (env.max_copies() / nr).max(1);
        let scale: Vec<f64> =
            info.action_low.iter().zip(&info.action_high).map(|(l, u)| (u - l) / (2.0 * c)).collect();
        let mut per_task: Vec<Vec<CopyBuffers>> = Vec::with_capacity(tasks.len());
        let all: Vec<usize> = tasks.collect();
        for (g, group) in all.chunks(per_group).enumerate() {
            crate::stop::check()?;
            let first = g * per_group; // index of the group's first task within `tasks`
            let m = group.len() * nr;
            let mut rngs: Vec<ChaCha8Rng> = group
                .iter()
                .flat_map(|&k| {
                    (0..nr).map(move |r| {
                        ChaCha8Rng::seed_from_u64(rollout_seed(seed, iteration, phase, k as u64, r as u64))
                    })
                })
                .collect();
            let task_of: Vec<usize> = group.iter().flat_map(|&k| std::iter::repeat_n(k, nr)).collect();
            let seeds: Vec<u64> = rngs.iter_mut().map(|r| r.random::<u64>()).collect();
            let mut cur = vec![0.0; m * od];
            env.start(&task_of, &seeds, &mut cur)?;
            let where_ = |call: &str, copy: usize| {
                format!("env {:?} {call} (task #{} copy {})", info.name, task_of[copy], copy % nr)
            };
            check_rows(&cur, od, 0..m, |c| where_("reset", c), "observation")?;
            let mut bufs: Vec<CopyBuffers> = (0..m).map(|_| CopyBuffers::new(hor, od, ad)).collect();
            let mut t_in_path = vec![0usize; m];
            let mut succeeded = vec![false; m];
            let (mut env_act, mut next) = (vec![0.0; m * ad], vec![0.0; m * od]);
            let (mut rew, mut term, mut trunc, mut succ) =
                (vec![0.0; m], vec![false; m], vec![false; m], vec![false; m]);
            let mut raw = vec![0.0; ad];
            for t in 0..hor {
                // A stop request ends the round between batch steps (the iteration is dropped).
                crate::stop::check()?;
                for (j, _) in group.iter().enumerate() {
                    let policy = if policies.len() == 1 { policies[0] } else { policies[first + j] };
                    let std: Vec<f64> = policy.log_std().iter().map(|s| s.exp()).collect();
                    let log_norm: f64 = policy.log_std().iter().sum::<f64>()
                        + 0.5 * ad as f64 * (2.0 * std::f64::consts::PI).ln();
                    let rows = j * nr..(j + 1) * nr;
                    let mean =
                        policy.mean_batch(&cur[rows.start * od..rows.end * od]).expect("obs length checked");
                    for (i, cp) in rows.enumerate() {
                        let mut quad = 0.0;
                        for a in 0..ad {
                            let eps: f64 = rngs[cp].sample(StandardNormal);
                            raw[a] = mean[i * ad + a] + std[a] * eps;
                            quad += eps * eps;
                            env_act[cp * ad + a] = info.action_low[a] + (raw[a].clamp(-c, c) + c) * scale[a];
                        }
                        let buf = &mut bufs[cp];
                        buf.obs.extend_from_slice(&cur[cp * od..(cp + 1) * od]);
                        buf.actions.extend_from_slice(&raw);
                        buf.log_probs.push(-0.5 * quad - log_norm);
                        buf.time_steps.push(t_in_path[cp]);
                    }
                }
                env.step(
                    &env_act,
                    StepOut {
                        obs: &mut next,
                        rewards: &mut rew,
                        terminated: &mut term,
                        truncated: &mut trunc,
                        success: &mut succ,
                    },
                )?;
                check_rows(&next, od, 0..m, |c| where_("step", c), "observation")?;
                check_rows(&rew, 1, 0..m, |c| where_("step", c), "reward")?;
                let (mut ended, mut reseeds) = (Vec::new(), Vec::new());
                for cp in 0..m {
                    let buf = &mut bufs[cp];
                    buf.rewards.push(rew[cp]);
                    t_in_path[cp] += 1;
                    succeeded[cp] |= succ[cp];
                    if term[cp] || trunc[cp] {
                        buf.path_ends.push((buf.rewards.len(), term[cp]));
                        buf.final_obs.extend_from_slice(&next[cp * od..(cp + 1) * od]);
                        buf.success.push(succeeded[cp]);
                        (t_in_path[cp], succeeded[cp]) = (0, false);
                        // A new episode only if the budget has steps left for it.
                        if t + 1 < hor {
                            ended.push(cp);
                            reseeds.push(rngs[cp].random::<u64>());
                        }
                    }
                }
                std::mem::swap(&mut cur, &mut next);
                if !ended.is_empty() {
                    env.reset(&ended, &reseeds, &mut cur)?;
                    check_rows(&cur, od, ended.iter().copied(), |c| where_("reset", c), "observation")?;
                }
            }
            for (cp, buf) in bufs.iter_mut().enumerate() {
                let last = &cur[cp * od..(cp + 1) * od];
                buf.close_trailing(t_in_path[cp], last, ad, self.cfg.keep_trailing_partial, succeeded[cp]);
            }
            let mut it = bufs.into_iter();
            for _ in group {
                per_task.push(it.by_ref().take(nr).collect());
            }
        }
        Ok(assemble(od, ad, per_task, info.reports_success))
    }

    /// All copies of one task, in lockstep, on the worker's environment copies (created on
    /// first use as clones of the caller's env, then switched to each task with
    /// [`MetaEnv::set_task`]; every copy is reset before its first step).
    fn sample_task(
        &self,
        w: &mut WorkerEnvs,
        task: &[f64],
        policy: &GaussianMlp,
        lb: &[f64],
        ub: &[f64],
        seed_of: impl Fn(usize) -> u64,
    ) -> Result<Vec<CopyBuffers>, Error> {
        let (nr, hor) = (self.cfg.rollouts_per_task, self.cfg.horizon);
        let (od, ad) = (w.base.obs_dim(), w.base.act_dim());
        let c = self.cfg.action_range;
        while w.copies.len() < nr {
            w.copies.push(w.base.boxed_clone());
        }
        let envs = &mut w.copies[..nr];
        for e in envs.iter_mut() {
            e.set_task(task)?;
        }
        let mut rngs: Vec<ChaCha8Rng> = (0..nr).map(|r| ChaCha8Rng::seed_from_u64(seed_of(r))).collect();
        let mut cur = vec![0.0; nr * od];
        for r in 0..nr {
            envs[r].reset(&mut rngs[r], &mut cur[r * od..(r + 1) * od])?;
        }
        let mut bufs: Vec<CopyBuffers> = (0..nr).map(|_| CopyBuffers::new(hor, od, ad)).collect();
        let mut t_in_path = vec![0usize; nr];
        let std: Vec<f64> = policy.log_std().iter().map(|s| s.exp()).collect();
        let log_norm: f64 =
            policy.log_std().iter().sum::<f64>() + 0.5 * ad as f64 * (2.0 * std::f64::consts::PI).ln();
        let scale: Vec<f64> = lb.iter().zip(ub).map(|(l, u)| (u - l) / (2.0 * c)).collect();
        let mut raw = vec![0.0; ad];
        let mut env_act = vec![0.0; ad];
        for _ in 0..hor {
            let mean = policy.mean_batch(&cur).expect("obs length checked against the policy");
            for r in 0..nr {
                let (rng, buf) = (&mut rngs[r], &mut bufs[r]);
                let mut quad = 0.0;
                for j in 0..ad {
                    let eps: f64 = rng.sample(StandardNormal);
                    raw[j] = mean[r * ad + j] + std[j] * eps;
                    quad += eps * eps;
                    env_act[j] = lb[j] + (raw[j].clamp(-c, c) + c) * scale[j];
                }
                let x = &mut cur[r * od..(r + 1) * od];
                buf.obs.extend_from_slice(x);
                buf.actions.extend_from_slice(&raw);
                buf.log_probs.push(-0.5 * quad - log_norm);
                buf.time_steps.push(t_in_path[r]);
                let step = envs[r].step(&env_act, x)?;
                buf.rewards.push(step.reward);
                t_in_path[r] += 1;
                if step.done {
                    buf.path_ends.push((buf.rewards.len(), true));
                    buf.success.push(false);
                    buf.final_obs.extend_from_slice(x);
                    envs[r].reset(rng, x)?;
                    t_in_path[r] = 0;
                }
            }
        }
        for (r, buf) in bufs.iter_mut().enumerate() {
            buf.close_trailing(
                t_in_path[r],
                &cur[r * od..(r + 1) * od],
                ad,
                self.cfg.keep_trailing_partial,
                false,
            );
        }
        Ok(bufs)
    }
}

/// Checks that rows `rows` of `values` (rows of `width`) are finite; the error names the
/// call and copy (`at(copy)`), the quantity and the row.
fn check_rows(
    values: &[f64],
    width: usize,
    rows: impl IntoIterator<Item = usize>,
    at: impl Fn(usize) -> String,
    what: &str,
) -> Result<(), Error> {
    for r in rows {
        let row = &values[r * width..(r + 1) * width];
        if row.iter().any(|x| !x.is_finite()) {
            return Err(invalid(at(r), format!("returned a non-finite {what}: {row:?}")));
        }
    }
    Ok(())
}

/// The seed of the tasks drawn for `iteration` of the run seeded by `seed`.
pub fn task_seed(seed: u64, iteration: u64) -> u64 {
    rollout_seed(seed, iteration, u64::MAX, u64::MAX, u64::MAX)
}

/// Draws a fresh set of tasks for `iteration` from the env, seeded by (seed, iteration).
pub fn sample_tasks(env: &dyn MetaEnv, n: usize, seed: u64, iteration: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(task_seed(seed, iteration));
    env.sample_tasks(n, &mut rng)
}

#[cfg(test)]
mod tests;
