//! The six meta-RL algorithms of the paper's Fig. 1(d) and Fig. 2, TRPO-TMAML and its control
//! (docs/theory.md#algorithms), each an inner objective ([`super::objectives`]) composed with an outer optimiser.
//!
//! | algorithm | inner objective | meta-gradient | outer |
//! |---|---|---|---|
//! | `trpo-maml` | naive score (MAML) | second order | TRPO |
//! | `trpo-fmaml` | naive score | first order | TRPO |
//! | `trpo-emaml` | naive score + E-MAML exploration term | second order | TRPO |
//! | `trpo-dice` | DR (DiCE) | second order | TRPO |
//! | `promp` | TayPO-1 / LVC | second order | PPO-clip + inner KL, Adam |
//! | `promp-taypo2` | TayPO-2 | second order | PPO-clip + inner KL, Adam |
//! | `trpo-tmaml` | IS + TMAML's control variate | second order | TRPO |
//! | `trpo-tmaml-past` | the same without its biased Hessian term (`tmaml-past`) | second order | TRPO |
//!
//! # One iteration (per task, in parallel; tasks fresh each iteration)
//!
//! 1. D_0 is sampled with π_θ; for k = 0 … K−1: θ_{k+1} = θ_k + η∇V̂_in(θ_k; D_k), then
//!    D_{k+1} is sampled with π_{θ_{k+1}} (D_K is the post-update data). Returns of D_0
//!    are the pre-update return, of D_k the return after k inner steps.
//! 2. The outer step, with all data fixed and θ_k(θ) recomputed from θ
//!    ([`super::metagrad`]); ρ'_i = π_{θ_K(θ)}(a'_i|x'_i)/π_{θ_K^old}(a'_i|x'_i) on D_K:
//!    * **TRPO**: minimise L(θ) = mean_tasks[−mean_i ρ'_i Â'_i] (minus, for E-MAML,
//!      Σ_k R̄·mean_{D_k} log π_{θ_k(θ)}) subject to mean_tasks KL(π_{θ_K^old} ‖ π_{θ_K(θ)})
//!      on D_K ≤ δ. Conjugate gradient on the exact Fisher of that KL through the
//!      adaptation, J_Kᵀ F' J_K v (J_K = Π(I + ηĤ_k); one step: (I+ηĤ)F'(I+ηĤ)v; J = I
//!      for FMAML), then [`super::optim::trpo_step`]'s line search (every trial re-adapts).
//!    * **ProMP**: `promp_steps` Adam steps on the loss
//!      mean_tasks[PPO-clip(ρ', Â'; ε) + c_KL Σ_k KL(π_{θ_k^old} ‖ π_{θ_k(θ)}) on D_k];
//!      while θ moves away from θ_old, the inner objectives are evaluated off-policy
//!      (ratios against the behaviour of each D_k).
//!
//! Setting the environment variable `METAGRAD_PROFILE` prints, per iteration, the time
//! spent sampling (with the inner adaptation) and in the outer update.
//!
//! The outer steps are in `trpo` and `promp`; the trainer, its state and one iteration here.

mod promp;
mod trpo;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::optim::{Adam, AdamConfig};
use super::task_sampling::{RemoteSampling, TaskRounds, TaskSampler, round_returns, round_success};
use crate::error::{Error, Result, invalid};
use crate::numeric::{mean, population_std};
use crate::policy::{GaussianMlp, Policy};

pub use super::params::{Algorithm, MetaTest, Params, TestStats, ValidParams, is_point_env};

/// Everything a run needs to continue: written as a JSON checkpoint every iteration. All
/// randomness of iteration i is derived from (seed, i), so (θ, optimiser state, i) is
/// the whole state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Completed iterations (the next one to run).
    pub iteration: usize,
    /// Policy parameters θ.
    pub theta: Vec<f64>,
    /// ProMP's Adam state.
    pub adam: Option<Adam>,
    /// Environment steps so far.
    pub env_steps: u64,
    /// Wall-clock seconds so far (summed over resumed sessions).
    pub wall_s: f64,
    /// Per-iteration results so far.
    pub history: Vec<IterationStats>,
    /// Set when the divergence guard stopped the run, or when an inner step diverged while
    /// sampling (that iteration then has no statistics); the run is then finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<Divergence>,
}

/// One iteration's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterationStats {
    /// Iteration index (from 0).
    pub iteration: usize,
    /// Mean return of the pre-update paths.
    pub pre_return: f64,
    /// Mean return after 1 … K inner steps.
    pub post_returns: Vec<f64>,
    /// Cumulative environment steps.
    pub env_steps: u64,
    /// Cumulative wall-clock seconds.
    pub wall_s: f64,
    /// Outer step diagnostics: TRPO's KL of the accepted step (0 if rejected), ProMP's
    /// final PPO loss.
    pub outer_diag: f64,
    /// What shows a divergence coming (absent in runs saved before it was recorded).
    #[serde(default)]
    pub diagnostics: Diagnostics,
    /// Success rate of the pre-update paths (environments that report success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_success: Option<f64>,
    /// Success rates after 1 … K inner steps (empty unless the environment reports success).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_success: Vec<f64>,
    /// The meta-test evaluation after this iteration's update, when one was due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestStats>,
}

/// Per-iteration diagnostics of the adaptation and the outer step (what precedes a
/// divergence).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Mean over tasks of the adaptation's size ‖θ_K − θ‖ when the data were sampled.
    pub inner_step_norm_mean: f64,
    /// Its maximum over tasks.
    pub inner_step_norm_max: f64,
    /// ProMP: the largest |ρ − 1| on the inner data during the outer steps, over tasks,
    /// inner rounds and Adam steps, with ρ = π_{θ_k(θ)}(a|x)/π_{θ_k^old}(a|x) (0 for TRPO).
    pub max_inner_ratio_dev: f64,
    /// ProMP: the outer loss (PPO-clip plus the inner KL terms) at each Adam step, before
    /// the step (empty for TRPO).
    pub outer_losses: Vec<f64>,
    /// Mean of the pre-update policy's log-std entries (log σ) at the iteration's start
    /// (absent in runs saved before it was recorded, as are the fields below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_std: Option<f64>,
    /// The smallest over tasks of the mean log-std of the adapted policy π_{θ_K} that sampled
    /// the task's post-update data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapted_log_std_min: Option<f64>,
    /// ProMP: what the outer steps saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promp: Option<PrompDiagnostics>,
}

/// What ProMP's outer steps saw in one iteration (docs/experiments/promp-breakdown.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrompDiagnostics {
    /// Per inner round k = 0 … K−1: the largest |ρ − 1| on D_k over tasks and Adam steps,
    /// ρ = π_{θ_k(θ)}(a|x)/π_{θ_k^old}(a|x) (their maximum is
    /// [`Diagnostics::max_inner_ratio_dev`]).
    pub inner_ratio_dev: Vec<f64>,
    /// Per inner round k: mean over tasks of the mean KL(π_{θ_k^old} ‖ π_{θ_k(θ)}) on D_k at
    /// the last Adam step (before its update).
    pub inner_kl: Vec<f64>,
    /// Mean over tasks of the fraction of post-update samples whose ratio ρ' is outside
    /// [1 − ε, 1 + ε] at the last Adam step (before its update).
    pub clip_fraction: f64,
    /// ‖θ_after − θ_before‖ of the iteration's Adam steps (0 when the update was not applied).
    pub outer_step_norm: f64,
    /// The largest |Δθ_i| of the iteration's Adam steps.
    pub outer_step_max: f64,
    /// How far the outer steps move the adapted policy per unit move of θ: at the last Adam
    /// step j, mean over tasks of ‖θ_K(θ_j) − θ_K(θ_0)‖ / ‖θ_j − θ_0‖ (θ_0: the iteration's
    /// start; none with one Adam step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptation_gain: Option<f64>,
}

/// Why and when a run stopped early (see [`Params::divergence_threshold`] and
/// [`Params::ratio_guard`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The iteration (from 0) whose outer step diverged (its update was not applied), or
    /// whose sampling did (an inner step gave parameters that are not finite; the iteration
    /// has no statistics then).
    pub iteration: usize,
    /// What was seen.
    pub cause: String,
}

/// A meta-RL trainer: settings, environment and sampler, policy and optimiser state.
pub struct Trainer {
    params: ValidParams,
    sampling: TaskSampler,
    /// The meta-test's sampler (on the run's test environment), opened when first needed.
    test_sampling: Option<TaskSampler>,
    policy: GaussianMlp,
    state: TrainerState,
}

/// What an outer update reports.
pub(super) struct OuterOutcome {
    /// TRPO's accepted KL, ProMP's last outer loss.
    diag: f64,
    /// ProMP: the loss at each Adam step.
    losses: Vec<f64>,
    /// ProMP: the largest |ρ − 1| on the inner data seen during the steps.
    max_ratio_dev: f64,
    /// The divergence guard's finding (the update was then not applied).
    diverged: Option<String>,
    /// ProMP's diagnostics.
    promp: Option<PrompDiagnostics>,
}

/// Sums per-task vectors in order (deterministic), scaled.
fn sum_scaled(parts: &[Vec<f64>], scale: f64) -> Vec<f64> {
    let mut out = vec![0.0; parts.first().map_or(0, Vec::len)];
    for p in parts {
        out.iter_mut().zip(p).for_each(|(o, x)| *o += x);
    }
    out.iter_mut().for_each(|o| *o *= scale);
    out
}

impl Trainer {
    /// A fresh trainer (policy initialised from the seed).
    pub fn new(params: ValidParams) -> Result<Self> {
        let sampling = TaskSampler::new(params.clone())?;
        let policy = sampling.initial_policy()?;
        let adam = if params.algo.is_promp() {
            Some(Adam::new(
                policy.num_params(),
                AdamConfig { lr: params.adam_lr, eps: params.adam_eps, ..Default::default() },
            )?)
        } else {
            None
        };
        let state = TrainerState {
            iteration: 0,
            theta: policy.params().to_vec(),
            adam,
            env_steps: 0,
            wall_s: 0.0,
            history: Vec::new(),
            diverged: None,
        };
        Ok(Self { params, sampling, test_sampling: None, policy, state })
    }

    /// A trainer continuing from a checkpointed state, which is validated like user input
    /// first: θ (length, finite), the optimiser state (see [`Adam::check`]), the iteration
    /// counter against the history (entry i is iteration i, K post-update returns each,
    /// cumulative steps and seconds non-decreasing, the last ones equal to the state's).
    pub fn resume(params: ValidParams, state: TrainerState) -> Result<Self> {
        let mut t = Self::new(params)?;
        let dim = t.policy.num_params();
        if state.theta.len() != dim {
            return Err(invalid(
                "checkpoint theta",
                format!("has {} entries, the policy has {dim} parameters", state.theta.len()),
            ));
        }
        t.policy
            .set_params(&state.theta)
            .map_err(|e| invalid("checkpoint theta", e.reason.clone() + &format!(" (got {})", e.value)))?;
        match (&state.adam, t.state.adam.is_some()) {
            (Some(a), true) => a.check(dim, t.params.adam_lr, t.params.adam_eps).map_err(|e| {
                invalid(format!("checkpoint {}", e.field), format!("{} (got {})", e.reason, e.value))
            })?,
            (None, false) => {}
            _ => return Err(invalid("checkpoint adam", "optimiser state does not match the algorithm")),
        }
        let ck = |field: &str, reason: String| invalid(format!("checkpoint {field}"), reason);
        if state.iteration != state.history.len() {
            return Err(ck(
                "iteration",
                format!("is {}, but the history holds {} iterations", state.iteration, state.history.len()),
            ));
        }
        if !(state.wall_s.is_finite() && state.wall_s >= 0.0) {
            return Err(ck("wall_s", format!("must be finite and ≥ 0, got {}", state.wall_s)));
        }
        let k = t.params.k();
        let (mut steps, mut wall) = (0u64, 0.0f64);
        for (i, h) in state.history.iter().enumerate() {
            let f = |what: &str| format!("history[{i}].{what}");
            if h.iteration != i {
                return Err(ck(&f("iteration"), format!("is {}, expected {i}", h.iteration)));
            }
            if h.post_returns.len() != k {
                return Err(ck(
                    &f("post_returns"),
                    format!("has {} entries, expected K = {k}", h.post_returns.len()),
                ));
            }
            if h.env_steps < steps {
                return Err(ck(&f("env_steps"), format!("{} is below the previous {steps}", h.env_steps)));
            }
            if !(h.wall_s.is_finite() && h.wall_s >= wall) {
                return Err(ck(
                    &f("wall_s"),
                    format!("{} is not finite or below the previous {wall}", h.wall_s),
                ));
            }
            (steps, wall) = (h.env_steps, h.wall_s);
        }
        if state.env_steps != steps {
            return Err(ck("env_steps", format!("is {}, the history ends at {steps}", state.env_steps)));
        }
        t.state = state;
        Ok(t)
    }

    /// A trainer continuing another run's state under other settings (a fork): the state of
    /// a run that has not diverged, with its optimiser's moments and step count kept under
    /// this run's learning rate and ε, validated as [`Trainer::resume`] validates it (so the
    /// policy's architecture, the algorithm's optimiser and K must be those of the state).
    pub fn fork(params: ValidParams, mut state: TrainerState) -> Result<Self> {
        if let Some(d) = &state.diverged {
            return Err(invalid(
                "fork",
                format!(
                    "the run diverged at iteration {} ({}); fork a run that has not",
                    d.iteration, d.cause
                ),
            ));
        }
        if params.algo.is_promp()
            && let Some(a) = state.adam.take()
        {
            let cfg = AdamConfig { lr: params.adam_lr, eps: params.adam_eps, ..a.config().clone() };
            state.adam = Some(a.with_config(cfg).map_err(|e| {
                invalid(format!("checkpoint {}", e.field), format!("{} (got {})", e.reason, e.value))
            })?);
        }
        Self::resume(params, state)
    }

    /// The settings.
    pub fn params(&self) -> &ValidParams {
        &self.params
    }
    /// The state (for checkpoints).
    pub fn state(&self) -> &TrainerState {
        &self.state
    }
    /// The current policy.
    pub fn policy(&self) -> &GaussianMlp {
        &self.policy
    }
    /// Whether all iterations are done.
    pub fn finished(&self) -> bool {
        self.state.iteration >= self.params.iterations || self.state.diverged.is_some()
    }

    /// Samples one iteration's data (every task's K inner rounds with adaptation, then its
    /// post-update round), here or by `remote` ([`super::task_sampling`]; the same bits).
    /// Returns per-task rounds in task order, the mean return of every round and the steps.
    fn sample_iteration(
        &self,
        it: u64,
        remote: Option<&mut (dyn RemoteSampling + '_)>,
    ) -> Result<(Vec<TaskRounds>, Vec<f64>, u64)> {
        let p = &self.params;
        let data = match remote {
            None => self.sampling.sample_with(&self.policy, it, 0..p.tasks)?,
            Some(r) => {
                let theta = self.policy.params();
                let parts = r.sample(theta, it, p.tasks)?;
                let parts =
                    parts.iter().map(|b| self.sampling.decode(theta, it, b)).collect::<Result<Vec<_>>>()?;
                self.sampling.assemble(parts)?
            }
        };
        let (returns, steps) = round_returns(&data, p.k() + 1);
        Ok((data, returns, steps))
    }

    /// The meta-test after iteration `it`'s update, if one is due (every `every` iterations
    /// and after the last of the budget), on the sampler of the run's test environment
    /// (opened at the first evaluation).
    fn meta_test(&mut self, it: usize) -> Result<Option<TestStats>> {
        let Some(m) = self.params.meta_test.clone() else { return Ok(None) };
        if !((it + 1).is_multiple_of(m.every) || it + 1 == self.params.iterations) {
            return Ok(None);
        }
        if self.test_sampling.is_none() {
            let source = self.params.test_env_source().clone();
            self.test_sampling = Some(TaskSampler::on(self.params.clone(), &source)?);
        }
        let sampler = self.test_sampling.as_ref().expect("opened above");
        sampler.evaluate(&self.policy, it as u64, &m).map(Some)
    }

    /// Runs one iteration and returns its statistics; `None` when the run diverged while
    /// sampling (an inner step gave parameters that are not finite): the iteration then has
    /// no statistics, and [`TrainerState::diverged`] says why (the run is finished).
    pub fn step(&mut self) -> Result<Option<IterationStats>> {
        self.step_with(None)
    }

    /// [`Self::step`] with the iteration's tasks sampled by `remote` when given (e.g. by
    /// workers in other processes); the results are the same bit for bit.
    pub fn step_with(
        &mut self,
        remote: Option<&mut (dyn RemoteSampling + '_)>,
    ) -> Result<Option<IterationStats>> {
        let started = Instant::now();
        let it = self.state.iteration;
        let log_std = mean(self.policy.log_std());
        let (data, returns, steps) = match self.sample_iteration(it as u64, remote) {
            Err(Error::Diverged(cause)) => {
                self.state.wall_s += started.elapsed().as_secs_f64();
                self.state.diverged = Some(Divergence { iteration: it, cause });
                return Ok(None);
            }
            sampled => sampled?,
        };
        let sampled = started.elapsed().as_secs_f64();
        let outcome =
            if self.params.algo.is_promp() { self.promp_update(&data)? } else { self.trpo_update(&data)? };
        if std::env::var_os("METAGRAD_PROFILE").is_some() {
            eprintln!(
                "iteration {it}: sampling + inner steps {sampled:.2} s, outer update {:.2} s",
                started.elapsed().as_secs_f64() - sampled
            );
        }
        let mut diverged = outcome.diverged;
        let test = match diverged {
            Some(_) => None,
            None => match self.meta_test(it) {
                Err(Error::Diverged(cause)) => {
                    diverged = Some(format!("meta-test: {cause}"));
                    None
                }
                test => test?,
            },
        };
        let success = round_success(&data, self.params.k() + 1);
        self.state.iteration += 1;
        self.state.env_steps += steps;
        self.state.wall_s += started.elapsed().as_secs_f64();
        self.state.theta = self.policy.params().to_vec();
        let norms: Vec<f64> = data.iter().map(|d| d.step_norm).collect();
        let stats = IterationStats {
            iteration: it,
            pre_return: returns[0],
            post_returns: returns[1..].to_vec(),
            env_steps: self.state.env_steps,
            wall_s: self.state.wall_s,
            outer_diag: outcome.diag,
            diagnostics: Diagnostics {
                inner_step_norm_mean: mean(&norms),
                inner_step_norm_max: norms.iter().copied().fold(0.0, f64::max),
                max_inner_ratio_dev: outcome.max_ratio_dev,
                outer_losses: outcome.losses,
                log_std: Some(log_std),
                adapted_log_std_min: data.iter().map(|d| mean(&d.post.behaviour_log_std)).reduce(f64::min),
                promp: outcome.promp,
            },
            pre_success: success.as_ref().map(|s| s[0]),
            post_success: success.map(|s| s[1..].to_vec()).unwrap_or_default(),
            test,
        };
        self.state.history.push(stats.clone());
        if let Some(cause) = diverged {
            self.state.diverged = Some(Divergence { iteration: it, cause });
        }
        Ok(Some(stats))
    }

    /// E-MAML weights R̄_t: post-update task returns normalised across tasks.
    fn exploration_weights(&self, data: &[TaskRounds]) -> Vec<f64> {
        if !self.params.algo.exploration() {
            return vec![0.0; data.len()];
        }
        let r: Vec<f64> = data.iter().map(|d| d.post.average_return).collect();
        let (m, sd) = (mean(&r), population_std(&r) + 1e-8);
        r.iter().map(|x| self.params.emaml_weight * (x - m) / sd).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimators::Taylor2Pairs;
    use crate::meta::metagrad::Order;
    use crate::meta::objectives::DiceCritic;

    fn tiny(algo: Algorithm) -> ValidParams {
        Params {
            tasks: 3,
            rollouts: 2,
            horizon: 15,
            hidden: vec![8, 8],
            inner_steps: Some(2),
            iterations: 3,
            ..Params::new("point-corners", algo)
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn the_divergence_guard_stops_the_run_without_applying_the_update() {
        // A huge inner step makes the adapted policies' ratios explode during the Adam steps.
        let p = Params { inner_lr: 50.0, iterations: 5, ..(*tiny(Algorithm::PrompTaypo2)).clone() }
            .validate()
            .unwrap();
        let mut t = Trainer::new(p.clone()).unwrap();
        let (theta0, adam0) = (t.policy().params().to_vec(), t.state().adam.clone());
        let s = t.step().unwrap().unwrap();
        let d = t.state().diverged.clone().expect("diverged");
        assert_eq!(d.iteration, 0);
        assert!(d.cause.contains("outer loss") && d.cause.contains("threshold 10"), "{}", d.cause);
        assert!(t.finished() && t.state().iteration == 1 && t.state().history.len() == 1);
        assert_eq!(t.policy().params(), &theta0[..], "the diverging update was applied");
        assert_eq!(t.state().adam, adam0, "Adam's state moved");
        assert_eq!(s.diagnostics.outer_losses.last().copied(), Some(s.outer_diag));
        assert!(s.outer_diag > 10.0 || !s.outer_diag.is_finite());
        // Without the guard the same run goes on.
        let off = Params { divergence_threshold: f64::INFINITY, ..(*p).clone() }.validate().unwrap();
        let mut t = Trainer::new(off).unwrap();
        t.step().unwrap().unwrap();
        assert!(t.state().diverged.is_none());
        // A healthy run records its diagnostics and does not diverge.
        let mut t = Trainer::new(tiny(Algorithm::PrompTaypo2)).unwrap();
        let s = t.step().unwrap().unwrap();
        assert!(t.state().diverged.is_none());
        assert_eq!(s.diagnostics.outer_losses.len(), 5);
        assert!(s.diagnostics.inner_step_norm_max >= s.diagnostics.inner_step_norm_mean);
        assert!(s.diagnostics.max_inner_ratio_dev > 0.0 && s.diagnostics.max_inner_ratio_dev.is_finite());
        let e = Params { divergence_threshold: 0.0, ..(*p).clone() }.validate().unwrap_err().to_string();
        assert!(e.contains("divergence-threshold"), "{e}");
    }

    #[test]
    fn a_non_finite_adaptation_during_the_adam_steps_is_a_divergence() {
        // The data of iteration 0, then a θ whose inner step is not finite (σ = e^{−800}: every
        // ratio on the inner data overflows): ProMP's update reports a divergence, not an
        // error, with θ and Adam's state as they were.
        for algo in [Algorithm::Promp, Algorithm::PrompTaypo2] {
            let mut t = Trainer::new(tiny(algo)).unwrap();
            let (data, _, _) = t.sample_iteration(0, None).unwrap();
            let mut theta = t.policy().params().to_vec();
            let at = t.policy().log_std_offset();
            theta[at..].iter_mut().for_each(|s| *s = -800.0);
            t.policy.set_params(&theta).unwrap();
            let adam0 = t.state().adam.clone();
            let out = t.promp_update(&data).unwrap();
            let cause = out.diverged.expect("diverged");
            assert!(cause.starts_with("Adam step 1: ") && cause.contains("not finite"), "{cause}");
            assert!(out.losses.is_empty() && out.diag.is_nan());
            assert_eq!(t.policy().params(), &theta[..]);
            assert_eq!(t.state().adam, adam0, "Adam's state moved");
        }
    }

    #[test]
    fn the_ratio_guard_stops_a_promp_run_whose_inner_ratios_leave_its_bound() {
        // A healthy run's first Adam step sees ratios at 1 (θ = θ_old) and later ones move
        // away from 1: a tiny bound stops the run at a later step, before any update lands.
        for algo in [Algorithm::Promp, Algorithm::PrompTaypo2] {
            let healthy = tiny(algo);
            let mut t = Trainer::new(healthy.clone()).unwrap();
            let dev = t.step().unwrap().unwrap().diagnostics.max_inner_ratio_dev;
            assert!(dev > 0.0 && t.state().diverged.is_none());
            // A bound above every deviation seen leaves the run bit for bit as it was.
            let loose = Params { ratio_guard: Some(2.0 * dev), ..(*healthy).clone() }.validate().unwrap();
            let mut u = Trainer::new(loose).unwrap();
            u.step().unwrap().unwrap();
            assert!(u.state().diverged.is_none());
            assert_eq!(u.policy().params(), t.policy().params());
            let tight = Params { ratio_guard: Some(dev / 2.0), ..(*healthy).clone() }.validate().unwrap();
            let mut u = Trainer::new(tight).unwrap();
            let (theta0, adam0) = (u.policy().params().to_vec(), u.state().adam.clone());
            let s = u.step().unwrap().unwrap();
            let d = u.state().diverged.clone().expect("diverged");
            assert_eq!(d.iteration, 0);
            assert!(d.cause.contains("max |ρ − 1|") && d.cause.contains("ratio guard"), "{}", d.cause);
            assert!(s.diagnostics.max_inner_ratio_dev > dev / 2.0);
            assert!((2..=5).contains(&s.diagnostics.outer_losses.len()), "{:?}", s.diagnostics.outer_losses);
            assert!(u.finished());
            assert_eq!(u.policy().params(), &theta0[..], "the stopped update was applied");
            assert_eq!(u.state().adam, adam0, "Adam's state moved");
        }
        // Validated at the boundary; TRPO algorithms record no ratio guard.
        for g in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e =
                Params { ratio_guard: Some(g), ..(*tiny(Algorithm::Promp)).clone() }.validate().unwrap_err();
            assert!(e.to_string().contains("ratio-guard"), "{e}");
        }
        let trpo =
            Params { ratio_guard: Some(1.0), ..(*tiny(Algorithm::TrpoMaml)).clone() }.validate().unwrap();
        assert_eq!(trpo.ratio_guard, None);
    }
    /// ProMP's outer loss and gradient averaged over tasks at `theta`, with the tasks' parts.
    use crate::meta::optim::ppo_clip_objective;

    fn promp_loss(t: &Trainer, data: &[TaskRounds], theta: &[f64]) -> (f64, Vec<f64>, Vec<promp::TaskPart>) {
        let k = t.params().k();
        let devs: Vec<std::sync::atomic::AtomicU64> = (0..k).map(|_| Default::default()).collect();
        let q = t.policy().with_params(theta).unwrap();
        let parts = t.promp_objective(data, &q, &devs).unwrap();
        let n = parts.len() as f64;
        let loss = parts.iter().map(|x| x.loss).sum::<f64>() / n;
        let grad = sum_scaled(&parts.iter().map(|x| x.grad.clone()).collect::<Vec<_>>(), 1.0 / n);
        (loss, grad, parts)
    }

    #[test]
    fn prompts_outer_loss_is_the_documented_one_and_its_gradient_matches_finite_differences() {
        use crate::meta::params::InnerKlAverage;
        use crate::policy::Precision;
        // f64 passes, and a KL coefficient large enough for the penalty to shape the gradient.
        let base = Params { precision: Precision::F64, kl_coeff: 0.3, ..(*tiny(Algorithm::Promp)).clone() };
        let k = 2.0;
        let mut by_average = Vec::new();
        for average in [InnerKlAverage::Sum, InnerKlAverage::Mean] {
            let t = Trainer::new(Params { inner_kl_average: average, ..base.clone() }.validate().unwrap())
                .unwrap();
            let (data, _, _) = t.sample_iteration(0, None).unwrap();
            // Off the sampling policy, as after some Adam steps.
            let theta: Vec<f64> = t
                .policy()
                .params()
                .iter()
                .enumerate()
                .map(|(i, x)| x + 0.05 * ((i as f64 * 0.37).sin()))
                .collect();
            let (loss, grad, parts) = promp_loss(&t, &data, &theta);
            // The parts are the documented quantities: the adaptation at θ, the KL of each
            // adapted policy on its round's data, the post-update ratios outside the clip.
            let q = t.policy().with_params(&theta).unwrap();
            let inner = t.params().inner();
            for (d, part) in data.iter().zip(&parts) {
                let chain = crate::meta::metagrad::adapt(&inner, &q, &d.rounds, 0.1).unwrap();
                assert_eq!(part.adapted, chain[2].params());
                for (j, round) in d.rounds.iter().enumerate() {
                    let kl =
                        round.data.kl_from_behaviour(&round.data.rows(&chain[j]).unwrap(), None).unwrap();
                    assert!((kl - part.kls[j]).abs() <= 1e-12 * kl.max(1e-12), "{kl} vs {}", part.kls[j]);
                    assert!(kl > 0.0);
                }
                let rows = d.post.rows(&chain[2]).unwrap();
                let ratios = crate::policy::ScoreRows::values(&rows);
                let ppo = ppo_clip_objective(ratios, &d.post.advantages, 0.3).unwrap().loss;
                let out =
                    ratios.iter().filter(|r| (*r - 1.0).abs() > 0.3).count() as f64 / ratios.len() as f64;
                assert_eq!(part.clip_fraction, out);
                // loss = PPO-clip + c_KL w Σ_k KL_k, w = 1 (sum) or 1/K (mean).
                let w = if average == InnerKlAverage::Sum { 1.0 } else { 1.0 / k };
                let expect = ppo + 0.3 * w * part.kls.iter().sum::<f64>();
                assert!((part.loss - expect).abs() < 1e-12, "{average:?}: {} vs {expect}", part.loss);
            }
            // The gradient against central differences along random directions.
            for seed in 0..3u64 {
                let v: Vec<f64> =
                    (0..theta.len()).map(|i| ((i as f64 + 1.0) * (seed as f64 + 1.3)).cos()).collect();
                let h = 1e-6;
                let at = |s: f64| {
                    let th: Vec<f64> = theta.iter().zip(&v).map(|(a, b)| a + s * b).collect();
                    promp_loss(&t, &data, &th).0
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                let an: f64 = grad.iter().zip(&v).map(|(a, b)| a * b).sum();
                assert!((fd - an).abs() < 1e-6 * (1.0 + an.abs()), "{average:?}: {fd} vs {an}");
            }
            by_average.push((
                loss,
                parts.iter().map(|x| x.kls.iter().sum::<f64>()).sum::<f64>() / parts.len() as f64,
            ));
        }
        // The same data and θ: the two losses differ by c_KL (1 − 1/K) Σ_k KL_k.
        let ((sum, kl), (mean, _)) = (by_average[0], by_average[1]);
        assert!((sum - mean - 0.3 * (1.0 - 1.0 / k) * kl).abs() < 1e-12, "{sum} {mean} {kl}");
        assert!(kl > 0.0);
    }

    #[test]
    fn prompts_log_std_floor_and_adam_eps_act_as_documented() {
        // A seed whose first update lowers some log-std entry below its initial 0.
        let (p, free) = (1..20)
            .find_map(|seed| {
                let p = Params { seed, ..(*tiny(Algorithm::Promp)).clone() }.validate().unwrap();
                let mut t = Trainer::new(p.clone()).unwrap();
                t.step().unwrap().unwrap();
                t.policy().log_std().iter().any(|x| *x < 0.0).then_some((p, t))
            })
            .expect("a seed lowers the log-std");
        let s = free.policy().log_std().to_vec();
        // A floor at 0 holds every entry at or above it, those below it exactly at it.
        let floored = Params { log_std_floor: Some(0.0), ..(*p).clone() }.validate().unwrap();
        let mut t = Trainer::new(floored).unwrap();
        let stats = t.step().unwrap().unwrap();
        let f = t.policy().log_std().to_vec();
        for (a, b) in f.iter().zip(&s) {
            assert!(*a >= 0.0 && (*b >= 0.0 || *a == 0.0), "{f:?} vs {s:?}");
        }
        assert_eq!(stats.diagnostics.log_std, Some(0.0));
        assert!(f.contains(&0.0) && f != s);
        // Validated; recorded for the ProMP algorithms only.
        for (floor, want) in [(f64::NAN, "must be finite"), (0.5, "above the initial log-std")] {
            let e = Params { log_std_floor: Some(floor), ..(*p).clone() }.validate().unwrap_err().to_string();
            assert!(e.contains("log-std-floor") && e.contains(want), "{e}");
        }
        for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = Params { adam_eps: eps, ..(*p).clone() }.validate().unwrap_err().to_string();
            assert!(e.contains("adam-eps"), "{e}");
        }
        let trpo =
            Params { log_std_floor: Some(-1.0), adam_eps: 1.0, ..(*tiny(Algorithm::TrpoMaml)).clone() }
                .validate()
                .unwrap();
        assert_eq!((trpo.log_std_floor, trpo.adam_eps), (None, 1e-8));
        let saved = serde_json::to_string(&*tiny(Algorithm::Promp)).unwrap();
        assert!(!saved.contains("adam_eps") && !saved.contains("inner_kl_average"), "{saved}");
        // A larger ε takes smaller Adam steps from the same state, and the checkpoint's ε must
        // be the run's.
        let big = Params { adam_eps: 1e-2, ..(*p).clone() }.validate().unwrap();
        let mut t = Trainer::new(big.clone()).unwrap();
        let s = t.step().unwrap().unwrap();
        let free_step = free.state().history[0].diagnostics.promp.as_ref().unwrap().outer_step_norm;
        assert!(s.diagnostics.promp.unwrap().outer_step_norm < free_step);
        let e = Trainer::resume(p.clone(), t.state().clone()).err().unwrap().to_string();
        assert!(e.contains("adam.eps") && e.contains("--adam-eps"), "{e}");
        assert!(Trainer::resume(big, t.state().clone()).is_ok());
    }

    #[test]
    fn every_algorithm_runs_and_respects_its_outer_constraints() {
        for algo in Algorithm::KNOWN {
            let mut t = Trainer::new(tiny(algo)).unwrap();
            let theta0 = t.policy().params().to_vec();
            while !t.finished() {
                let s = t.step().unwrap().unwrap();
                assert_eq!(s.post_returns.len(), 2);
                assert!(s.pre_return.is_finite() && s.post_returns.iter().all(|r| r.is_finite()));
                if !algo.is_promp() {
                    // The accepted TRPO step's mean KL (0 when rejected) is within the bound.
                    assert!((0.0..=0.01).contains(&s.outer_diag), "{algo}: KL {}", s.outer_diag);
                } else {
                    // ProMP's Adam steps on the PPO-clip loss: one loss per step, the first at
                    // θ_old where the post-update data are on-policy (ratios 1, f32 passes)
                    // and the advantages have mean 0 per task, so it is ≈ 0; each below the
                    // divergence threshold; the last reported as the outer diagnostic.
                    let l = &s.diagnostics.outer_losses;
                    assert_eq!(l.len(), t.params().promp_steps, "{algo}");
                    assert!(l[0].abs() < 1e-5, "{algo}: first PPO loss {} at θ_old", l[0]);
                    assert!(
                        l.iter().all(|x| x.is_finite() && *x < t.params().divergence_threshold),
                        "{algo}: {l:?}"
                    );
                    assert_eq!(s.outer_diag, *l.last().unwrap(), "{algo}");
                    assert!(
                        s.diagnostics.max_inner_ratio_dev.is_finite()
                            && s.diagnostics.max_inner_ratio_dev > 0.0
                    );
                }
            }
            assert_ne!(t.policy().params(), &theta0[..], "{algo} did not move θ");
            assert_eq!(t.state().history.len(), 3);
            assert_eq!(t.state().env_steps, 3 * 3 * 3 * 2 * 15);
        }
    }

    #[test]
    fn settings_are_validated_with_named_fields() {
        let bad = |p: Params, want: &str| {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} does not name {want}");
        };
        let base = Params::new("point-corners", Algorithm::Promp);
        bad(Params { tasks: 0, ..base.clone() }, "tasks");
        bad(Params { inner_steps: Some(0), ..base.clone() }, "inner-steps");
        bad(Params { inner_lr: f64::NAN, ..base.clone() }, "inner-lr");
        bad(Params { ppo_clip: 0.0, ..base.clone() }, "ppo-clip");
        bad(Params { kl_coeff: -1.0, ..base.clone() }, "kl-coeff");
        bad(Params { gae_lambda: 2.0, ..base.clone() }, "gae_lambda");
        // A MuJoCo task needs the `mujoco` feature; an unknown name is refused either way.
        #[cfg(not(feature = "mujoco"))]
        bad(Params { env: "ant-rand-goal".into(), ..base.clone() }, "mujoco");
        #[cfg(feature = "mujoco")]
        assert!(Params { env: "ant-rand-goal".into(), ..base.clone() }.validate().is_ok());
        assert!(Params { env: "no-such-env".into(), ..base.clone() }.validate().is_err());
        assert_eq!(base.clone().validate().unwrap().k(), 3);
        // The TayPO-2 variants: checked for promp-taypo2, not recorded for the others, and
        // absent from the saved settings when at their defaults.
        let taypo2 = Params { algo: Algorithm::PrompTaypo2, ..base.clone() };
        for k in [0.0, -0.3, f64::NAN, f64::INFINITY] {
            bad(Params { taypo2_ratio_clip: Some(k), ..taypo2.clone() }, "taypo2-ratio-clip");
        }
        for k in [0.0, -0.3, f64::NAN] {
            bad(Params { taypo2_pair_clip: Some(k), ..taypo2.clone() }, "taypo2-pair-clip");
        }
        let variant = Params {
            taypo2_pairs: Taylor2Pairs::Normalised,
            taypo2_ratio_clip: Some(0.3),
            taypo2_pair_clip: Some(f64::INFINITY),
            ..base.clone()
        };
        let v = variant.clone().validate().unwrap();
        assert_eq!(
            (v.taypo2_pairs, v.taypo2_ratio_clip, v.taypo2_pair_clip),
            (Taylor2Pairs::Discounted, None, None)
        );
        let v = Params { algo: Algorithm::PrompTaypo2, ..variant }.validate().unwrap();
        assert_eq!(
            (v.inner().taypo2_pairs, v.inner().taypo2_ratio_clip, v.inner().taypo2_pair_clip),
            (Taylor2Pairs::Normalised, Some(0.3), Some(f64::INFINITY))
        );
        let saved = serde_json::to_string(&*taypo2.validate().unwrap()).unwrap();
        assert!(!saved.contains("taypo2_"), "{saved}");
        assert!(Algorithm::parse("promp-taypo2").is_ok());
        assert!(Algorithm::parse("x").unwrap_err().to_string().contains("trpo-maml"));
        // TRPO-TMAML: by name, not in `all` (the paper's six); a state critic, time by default.
        assert_eq!(Algorithm::parse("trpo-tmaml").unwrap(), Algorithm::TrpoTmaml);
        assert!(Algorithm::parse("x").unwrap_err().to_string().contains("trpo-tmaml"));
        assert!(!Algorithm::parse_list("all").unwrap().contains(&Algorithm::TrpoTmaml));
        let tm = Params { algo: Algorithm::TrpoTmaml, ..base.clone() };
        assert_eq!(tm.clone().validate().unwrap().dice_critic, Some(DiceCritic::Time));
        assert_eq!(tm.clone().validate().unwrap().inner().estimator().name(), "tmaml");
        let e = Params { dice_critic: Some(DiceCritic::Promp), ..tm }.validate().unwrap_err().to_string();
        assert!(e.contains("dice-critic") && e.contains("trpo-tmaml"), "{e}");
        // Its control: the same critic, the inner estimator without the biased Hessian term.
        let past = Params { algo: Algorithm::parse("trpo-tmaml-past").unwrap(), ..base.clone() };
        assert!(!Algorithm::parse_list("all").unwrap().contains(&past.algo));
        let v = past.clone().validate().unwrap();
        assert_eq!(
            (v.dice_critic, v.inner().estimator().name()),
            (Some(DiceCritic::Time), "tmaml-past".into())
        );
        assert_eq!((v.algo.order(), v.algo.is_promp()), (Order::Second, false));
        let e = Params { dice_critic: Some(DiceCritic::Promp), ..past }.validate().unwrap_err().to_string();
        assert!(e.contains("dice-critic") && e.contains("trpo-tmaml-past"), "{e}");
    }
}
