//! The six meta-RL algorithms of the paper's Fig. 1(d) and Fig. 2 (docs/theory.md#algorithms), each an
//! inner objective ([`super::objectives`]) composed with an outer optimiser.
//!
//! | algorithm | inner objective | meta-gradient | outer |
//! |---|---|---|---|
//! | `trpo-maml` | naive score (MAML) | second order | TRPO |
//! | `trpo-fmaml` | naive score | first order | TRPO |
//! | `trpo-emaml` | naive score + E-MAML exploration term | second order | TRPO |
//! | `trpo-dice` | DR (DiCE) | second order | TRPO |
//! | `promp` | TayPO-1 / LVC | second order | PPO-clip + inner KL, Adam |
//! | `promp-taypo2` | TayPO-2 | second order | PPO-clip + inner KL, Adam |
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

use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::metagrad::{self, Order, chain_objectives};
use super::objectives::{DiceCritic, InnerKind, InnerObjective, Normalisation, exploration_term};
use super::optim::{Adam, AdamConfig, TrpoConfig, ppo_clip_objective, ratio_surrogate, trpo_step};
use super::processing::ProcessingConfig;
use super::task_sampling::{RemoteSampling, TaskRounds, TaskSampler, round_returns};
use crate::envs::{MetaEnv, PointEnv, make_mujoco_env};
use crate::error::{Result, invalid};
use crate::estimators::{Taylor2Pairs, TaylorDiscount};
use crate::policy::{GaussianMlp, GaussianMlpRows, Policy, Precision, ScoreRows};

/// A meta-RL algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// TRPO with MAML's naive inner loss, second order.
    TrpoMaml,
    /// TRPO with MAML's naive inner loss, first order.
    TrpoFmaml,
    /// TRPO-MAML plus E-MAML's exploration term.
    TrpoEmaml,
    /// TRPO with the DR (DiCE) inner objective.
    TrpoDice,
    /// ProMP: LVC (TayPO-1) inner objective, PPO-clip outer.
    Promp,
    /// ProMP with the TayPO-2 inner objective.
    PrompTaypo2,
}

impl Algorithm {
    /// All six, in the paper's order.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::TrpoMaml,
        Algorithm::TrpoFmaml,
        Algorithm::TrpoEmaml,
        Algorithm::TrpoDice,
        Algorithm::Promp,
        Algorithm::PrompTaypo2,
    ];

    /// The command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::TrpoMaml => "trpo-maml",
            Algorithm::TrpoFmaml => "trpo-fmaml",
            Algorithm::TrpoEmaml => "trpo-emaml",
            Algorithm::TrpoDice => "trpo-dice",
            Algorithm::Promp => "promp",
            Algorithm::PrompTaypo2 => "promp-taypo2",
        }
    }

    /// Parses a name (as on the command line).
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.iter().copied().find(|a| a.name() == name.trim()).ok_or_else(|| {
            invalid(
                "algo",
                format!(
                    "unknown algorithm {name:?} (known: {})",
                    Self::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Parses a comma-separated list of names, or `all` for the six in the paper's order.
    pub fn parse_list(list: &str) -> Result<Vec<Self>> {
        if list.trim() == "all" {
            return Ok(Self::ALL.to_vec());
        }
        let algos =
            list.split(',').filter(|s| !s.trim().is_empty()).map(Self::parse).collect::<Result<Vec<_>>>()?;
        if algos.is_empty() {
            return Err(invalid("algos", format!("no algorithm named in {list:?}")));
        }
        Ok(algos)
    }

    /// The inner objective's estimator.
    pub fn inner_kind(&self) -> InnerKind {
        match self {
            Algorithm::TrpoMaml | Algorithm::TrpoFmaml | Algorithm::TrpoEmaml => InnerKind::Maml,
            Algorithm::TrpoDice => InnerKind::Dr,
            Algorithm::Promp => InnerKind::Lvc,
            Algorithm::PrompTaypo2 => InnerKind::Taypo2,
        }
    }

    /// Whether the outer optimiser is ProMP's (otherwise TRPO).
    pub fn is_promp(&self) -> bool {
        matches!(self, Algorithm::Promp | Algorithm::PrompTaypo2)
    }

    /// First or second order meta-gradient.
    pub fn order(&self) -> Order {
        if *self == Algorithm::TrpoFmaml { Order::First } else { Order::Second }
    }

    /// Whether the E-MAML exploration term is added.
    pub fn exploration(&self) -> bool {
        *self == Algorithm::TrpoEmaml
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `env` is one of the 2-D point environments.
pub fn is_point_env(env: &str) -> bool {
    env.starts_with("point-")
}

/// The environment for a command-line name: the point envs, or a MuJoCo meta-task (which
/// needs the `mujoco` feature and errors clearly without it).
pub fn make_env(name: &str) -> Result<Box<dyn MetaEnv>> {
    if is_point_env(name) {
        Ok(Box::new(PointEnv::from_name(name)?))
    } else {
        make_mujoco_env(name).map_err(|e| invalid("env", format!("{name:?}: {e:#}")))
    }
}

/// Settings of a meta-RL run (defaults: docs/theory.md#meta-rl-setup). Check with [`Params::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Environment name.
    pub env: String,
    /// Algorithm.
    pub algo: Algorithm,
    /// Seed of every random draw.
    pub seed: u64,
    /// Meta-iterations.
    pub iterations: usize,
    /// Tasks per iteration (40).
    pub tasks: usize,
    /// Rollouts per task and sampling round (20).
    pub rollouts: usize,
    /// Horizon (100).
    pub horizon: usize,
    /// γ (0.99).
    pub gamma: f64,
    /// GAE λ (1).
    pub gae_lambda: f64,
    /// Normalise advantages per task (true).
    pub normalize_advantages: bool,
    /// Inner steps K; `None`: 3 for the point envs, 1 otherwise.
    pub inner_steps: Option<usize>,
    /// Inner step size η (0.1).
    pub inner_lr: f64,
    /// Hidden layer widths ((64, 64)).
    pub hidden: Vec<usize>,
    /// Initial log-std (0).
    pub init_log_std: f64,
    /// Floating-point type of the policy's network passes (f32; runs saved before this
    /// setting existed used f64).
    #[serde(default)]
    pub precision: Precision,
    /// Normalisation of the inner objectives (mean over samples).
    pub normalisation: Normalisation,
    /// TayPO-K / naive-score discount convention (ProMP's γ^{t2−t1}).
    pub taypo_discount: TaylorDiscount,
    /// DR: divide rewards and critic by the task's advantage std (true).
    pub dr_normalise: bool,
    /// TRPO-DiCE's critic (`Some` for `trpo-dice` only, set by [`Params::validate`]; `time`
    /// by default). Runs saved before this setting existed used `features`
    /// ([`Params::upgrade_legacy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dice_critic: Option<DiceCritic>,
    /// ProMP-TayPO-2: weighting of the pair term (the paper's discounted pairs by default;
    /// recorded only when not the default, and only for `promp-taypo2`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub taypo2_pairs: Taylor2Pairs,
    /// ProMP-TayPO-2: clip of |ρ_t − 1| in the inner objective (none by default; only for
    /// `promp-taypo2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taypo2_ratio_clip: Option<f64>,
    /// TRPO settings (max KL 0.01, 10 CG iterations, backtracking 0.8 × ≤ 15).
    pub trpo: TrpoConfig,
    /// ProMP's PPO clip ε (0.3).
    pub ppo_clip: f64,
    /// ProMP's inner KL penalty coefficient (5e-4).
    pub kl_coeff: f64,
    /// ProMP's Adam learning rate (1e-3).
    pub adam_lr: f64,
    /// ProMP's full-batch Adam steps per iteration (5).
    pub promp_steps: usize,
    /// Weight of E-MAML's exploration term (1).
    pub emaml_weight: f64,
    /// Divergence guard: the run stops (marked diverged) when an outer loss is not finite or
    /// exceeds this (10; PPO-clip losses on normalised advantages stay below ≈ 1.3 while the
    /// ratios are within reach of the clip), or when the gradient is not finite.
    #[serde(default = "default_divergence_threshold")]
    pub divergence_threshold: f64,
    /// ProMP and ProMP-TayPO-2: a second guard, on the largest |ρ − 1| on the inner data
    /// during the outer steps; the run stops (marked diverged) when it exceeds this. Off by
    /// default; recorded only when set, and only for the ProMP algorithms (TRPO does not
    /// re-evaluate the inner data's ratios).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_guard: Option<f64>,
}

fn default_divergence_threshold() -> f64 {
    10.0
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

impl Params {
    /// Defaults for `env` and `algo`.
    pub fn new(env: &str, algo: Algorithm) -> Self {
        Self {
            env: env.to_string(),
            algo,
            seed: 1,
            iterations: 500,
            tasks: 40,
            rollouts: 20,
            horizon: 100,
            gamma: 0.99,
            gae_lambda: 1.0,
            normalize_advantages: true,
            inner_steps: None,
            inner_lr: 0.1,
            hidden: vec![64, 64],
            init_log_std: 0.0,
            precision: Precision::F32,
            normalisation: Normalisation::Samples,
            taypo_discount: TaylorDiscount::FromFirst,
            dr_normalise: true,
            dice_critic: None,
            taypo2_pairs: Taylor2Pairs::Discounted,
            taypo2_ratio_clip: None,
            trpo: TrpoConfig::default(),
            ppo_clip: 0.3,
            kl_coeff: 5e-4,
            adam_lr: 1e-3,
            promp_steps: 5,
            emaml_weight: 1.0,
            divergence_threshold: default_divergence_threshold(),
            ratio_guard: None,
        }
    }

    /// Settings read from a run saved before a setting existed, with the value that run used:
    /// a `trpo-dice` run without `dice_critic` used the feature baseline.
    pub fn upgrade_legacy(mut self) -> Self {
        if self.algo == Algorithm::TrpoDice && self.dice_critic.is_none() {
            self.dice_critic = Some(DiceCritic::Features);
        }
        self
    }

    /// Checks every setting; errors name the field and its value.
    pub fn validate(self) -> Result<ValidParams> {
        self.validate_with(crate::limits::DEFAULT_MAX_META_STEPS)
    }

    /// [`Params::validate`] with environment steps per iteration,
    /// tasks·rollouts·horizon·(K + 1), bounded by `max_steps` (checked arithmetic, before
    /// anything is allocated), and the policy's parameters by
    /// [`crate::limits::MAX_POLICY_PARAMS`].
    pub fn validate_with(mut self, max_steps: usize) -> Result<ValidParams> {
        let pos = |field: &str, v: usize| -> Result<()> {
            if v == 0 { Err(invalid(field, "must be ≥ 1, got 0")) } else { Ok(()) }
        };
        let finite_pos = |field: &str, v: f64| -> Result<()> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(field, format!("must be finite and > 0, got {v}")))
            }
        };
        let env = make_env(&self.env)?;
        // Only TRPO-DiCE reads a DiCE critic; others record none (so their settings compare
        // equal to those of runs saved before the setting existed).
        self.dice_critic = match self.algo {
            Algorithm::TrpoDice => Some(self.dice_critic.unwrap_or(DiceCritic::Time)),
            _ => None,
        };
        // Only ProMP-TayPO-2 reads the TayPO-2 variants; others record the defaults.
        if self.algo != Algorithm::PrompTaypo2 {
            self.taypo2_pairs = Taylor2Pairs::Discounted;
            self.taypo2_ratio_clip = None;
        }
        if let Some(k) = self.taypo2_ratio_clip {
            finite_pos("taypo2-ratio-clip", k)?;
        }
        // Only the ProMP algorithms measure the inner data's ratios during the outer steps.
        if !matches!(self.algo, Algorithm::Promp | Algorithm::PrompTaypo2) {
            self.ratio_guard = None;
        }
        if let Some(g) = self.ratio_guard {
            finite_pos("ratio-guard", g)?;
        }
        if self.dice_critic == Some(DiceCritic::Promp) && (self.gamma.is_nan() || self.gamma <= 0.0) {
            return Err(invalid("dice-critic", format!("promp needs γ > 0, got gamma = {}", self.gamma)));
        }
        if self.divergence_threshold.is_nan() || self.divergence_threshold <= 0.0 {
            return Err(invalid(
                "divergence-threshold",
                format!("must be > 0 (inf disables the guard), got {}", self.divergence_threshold),
            ));
        }
        pos("iterations", self.iterations)?;
        pos("tasks", self.tasks)?;
        pos("rollouts", self.rollouts)?;
        pos("horizon", self.horizon)?;
        let k = self.inner_steps.unwrap_or(if is_point_env(&self.env) { 3 } else { 1 });
        pos("inner-steps", k)?;
        self.inner_steps = Some(k);
        finite_pos("inner-lr", self.inner_lr)?;
        for &h in &self.hidden {
            pos("hidden", h)?;
        }
        crate::limits::product(
            "steps per iteration",
            "environment steps per iteration, tasks × rollouts × horizon × (inner steps + 1)",
            &[self.tasks, self.rollouts, self.horizon, k.saturating_add(1)],
            max_steps,
            Some("--max-steps-per-iteration"),
        )?;
        let mut n_params = env.act_dim(); // log-std
        let mut width = env.obs_dim();
        for &out in self.hidden.iter().chain(std::iter::once(&env.act_dim())) {
            n_params = width
                .checked_add(1)
                .and_then(|w| w.checked_mul(out))
                .and_then(|layer| layer.checked_add(n_params))
                .unwrap_or(usize::MAX);
            width = out;
        }
        if n_params > crate::limits::MAX_POLICY_PARAMS {
            return Err(invalid(
                "hidden",
                format!(
                    "{:?} gives a policy of {} parameters, above the limit of {}",
                    self.hidden,
                    if n_params == usize::MAX {
                        "more than usize::MAX".to_string()
                    } else {
                        n_params.to_string()
                    },
                    crate::limits::MAX_POLICY_PARAMS
                ),
            ));
        }
        if !self.init_log_std.is_finite() {
            return Err(invalid("init-log-std", format!("must be finite, got {}", self.init_log_std)));
        }
        ProcessingConfig { gamma: self.gamma, gae_lambda: self.gae_lambda, ..Default::default() }
            .validate()?;
        self.trpo.validate()?;
        finite_pos("ppo-clip", self.ppo_clip)?;
        if !(self.kl_coeff.is_finite() && self.kl_coeff >= 0.0) {
            return Err(invalid("kl-coeff", format!("must be finite and ≥ 0, got {}", self.kl_coeff)));
        }
        if !(self.adam_lr > 0.0 && self.adam_lr <= 1.0) {
            return Err(invalid(
                "adam-lr",
                format!(
                    "must be in (0, 1] (Adam moves each parameter by about this much per step), got {:?}",
                    self.adam_lr
                ),
            ));
        }
        pos("promp-steps", self.promp_steps)?;
        if !self.emaml_weight.is_finite() {
            return Err(invalid("emaml-weight", format!("must be finite, got {}", self.emaml_weight)));
        }
        Ok(ValidParams(self))
    }
}

/// Validated settings (inner steps resolved).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidParams(Params);

impl std::ops::Deref for ValidParams {
    type Target = Params;
    fn deref(&self) -> &Params {
        &self.0
    }
}

impl ValidParams {
    /// K.
    pub fn k(&self) -> usize {
        self.0.inner_steps.expect("resolved by validate")
    }
    /// The inner objective.
    pub fn inner(&self) -> InnerObjective {
        InnerObjective {
            kind: self.algo.inner_kind(),
            normalisation: self.normalisation,
            discount: self.taypo_discount,
            gamma: self.gamma,
            dr_normalise: self.dr_normalise,
            dice_critic: self.dice_critic.unwrap_or(DiceCritic::Time),
            taypo2_pairs: self.taypo2_pairs,
            taypo2_ratio_clip: self.taypo2_ratio_clip,
        }
    }
    pub(crate) fn processing(&self) -> ProcessingConfig {
        ProcessingConfig {
            gamma: self.gamma,
            gae_lambda: self.gae_lambda,
            normalize_advantages: self.normalize_advantages,
            ..Default::default()
        }
    }
    /// The same settings with another seed / algorithm (for grids).
    pub fn with(&self, algo: Algorithm, seed: u64) -> ValidParams {
        ValidParams(Params { algo, seed, ..self.0.clone() })
    }
}

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
    /// Set when the divergence guard stopped the run (the run is then finished).
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
}

/// Per-iteration diagnostics of the adaptation and the outer step (what the ProMP-TayPO-2
/// stability study reads, docs/experiments/stability.md).
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
}

/// Why and when a run stopped early (see [`Params::divergence_threshold`] and
/// [`Params::ratio_guard`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The iteration (from 0) whose outer step diverged; its update was not applied.
    pub iteration: usize,
    /// What was seen.
    pub cause: String,
}

/// A meta-RL trainer: settings, environment and sampler, policy and optimiser state.
pub struct Trainer {
    params: ValidParams,
    sampling: TaskSampler,
    policy: GaussianMlp,
    state: TrainerState,
}

/// What an outer update reports.
struct OuterOutcome {
    /// TRPO's accepted KL, ProMP's last outer loss.
    diag: f64,
    /// ProMP: the loss at each Adam step.
    losses: Vec<f64>,
    /// ProMP: the largest |ρ − 1| on the inner data seen during the steps.
    max_ratio_dev: f64,
    /// The divergence guard's finding (the update was then not applied).
    diverged: Option<String>,
}

fn mean_of(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { s / n as f64 }
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
            Some(Adam::new(policy.num_params(), AdamConfig { lr: params.adam_lr, ..Default::default() })?)
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
        Ok(Self { params, sampling, policy, state })
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
            (Some(a), true) => a.check(dim, t.params.adam_lr).map_err(|e| {
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

    /// Runs one iteration and returns its statistics.
    pub fn step(&mut self) -> Result<IterationStats> {
        self.step_with(None)
    }

    /// [`Self::step`] with the iteration's tasks sampled by `remote` when given (e.g. by
    /// workers in other processes); the results are the same bit for bit.
    pub fn step_with(&mut self, remote: Option<&mut (dyn RemoteSampling + '_)>) -> Result<IterationStats> {
        let started = Instant::now();
        let it = self.state.iteration;
        let (data, returns, steps) = self.sample_iteration(it as u64, remote)?;
        let sampled = started.elapsed().as_secs_f64();
        let outcome =
            if self.params.algo.is_promp() { self.promp_update(&data)? } else { self.trpo_update(&data)? };
        if std::env::var_os("METAGRAD_PROFILE").is_some() {
            eprintln!(
                "iteration {it}: sampling + inner steps {sampled:.2} s, outer update {:.2} s",
                started.elapsed().as_secs_f64() - sampled
            );
        }
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
                inner_step_norm_mean: mean_of(norms.iter().copied()),
                inner_step_norm_max: norms.iter().copied().fold(0.0, f64::max),
                max_inner_ratio_dev: outcome.max_ratio_dev,
                outer_losses: outcome.losses,
            },
        };
        self.state.history.push(stats.clone());
        if let Some(cause) = outcome.diverged {
            self.state.diverged = Some(Divergence { iteration: it, cause });
        }
        Ok(stats)
    }

    /// E-MAML weights R̄_t: post-update task returns normalised across tasks.
    fn exploration_weights(&self, data: &[TaskRounds]) -> Vec<f64> {
        if !self.params.algo.exploration() {
            return vec![0.0; data.len()];
        }
        let r: Vec<f64> = data.iter().map(|d| d.post.average_return).collect();
        let m = mean_of(r.iter().copied());
        let sd = (mean_of(r.iter().map(|x| (x - m) * (x - m)))).sqrt() + 1e-8;
        r.iter().map(|x| self.params.emaml_weight * (x - m) / sd).collect()
    }

    /// TRPO outer step. Reports the accepted step's KL (0 when rejected); a non-finite loss
    /// or gradient is a divergence (the step is not taken).
    fn trpo_update(&mut self, data: &[TaskRounds]) -> Result<OuterOutcome> {
        let p = self.params.clone();
        let inner = p.inner();
        let (eta, order) = (p.inner_lr, p.algo.order());
        let weights = self.exploration_weights(data);
        let nt = data.len() as f64;
        let old = self.policy.clone();
        // The adaptation at θ_old (equal to the sampling policies), taken once: its rows
        // serve the meta-gradient and every Fisher-vector product of the CG solve.
        let chains: Vec<metagrad::AdaptedChain<'_>> = data
            .par_iter()
            .map(|d| metagrad::adapt_chain(&inner, &old, &d.rounds, eta))
            .collect::<Result<_>>()?;
        let chain_objs: Vec<Vec<_>> = data
            .iter()
            .zip(&chains)
            .map(|(d, c)| chain_objectives(&inner, &c.rows, &d.rounds))
            .collect::<Result<_>>()?;
        // Per-task loss (to minimise) at θ_K: −mean(ρ'Â') on the post-update rows.
        let outer_loss =
            |d: &TaskRounds, rows: &GaussianMlpRows<'_>, grad: bool| -> Result<(f64, Vec<f64>)> {
                let o = ratio_surrogate(rows.values(), &d.post.advantages)?;
                let mut g = Vec::new();
                if grad {
                    g = vec![0.0; rows.num_params()];
                    rows.vjp_add(&o.d_log, &mut g);
                }
                Ok((o.loss, g))
            };
        // E-MAML: −R̄·mean_{D_k} log π_{θ_k} per inner step.
        let explore = |d: &TaskRounds,
                       w: f64,
                       k: usize,
                       rows: &GaussianMlpRows<'_>|
         -> Result<Option<(f64, Vec<f64>)>> {
            if w == 0.0 {
                return Ok(None);
            }
            let (e, g) = exploration_term(rows, &d.rounds[k].data, w)?;
            Ok(Some((-e, g.iter().map(|x| -x).collect())))
        };
        let parts: Vec<(f64, Vec<f64>)> = data
            .par_iter()
            .zip(weights.par_iter())
            .zip(chains.par_iter().zip(chain_objs.par_iter()))
            .map(|((d, &w), (chain, objs))| {
                metagrad::meta_gradient_on_chain(
                    objs,
                    chain,
                    eta,
                    order,
                    &mut |last| outer_loss(d, &d.post.rows(last)?, true),
                    &|k, pol| explore(d, w, k, pol),
                )
            })
            .collect::<Result<_>>()?;
        let loss_before = parts.iter().map(|x| x.0).sum::<f64>() / nt;
        let grad = sum_scaled(&parts.iter().map(|x| x.1.clone()).collect::<Vec<_>>(), 1.0 / nt);
        let outcome = |diag: f64, diverged: Option<String>| OuterOutcome {
            diag,
            losses: Vec::new(),
            max_ratio_dev: 0.0,
            diverged,
        };
        if !loss_before.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Ok(outcome(
                0.0,
                Some(format!("the outer loss ({loss_before}) or its gradient is not finite")),
            ));
        }
        // Fisher-vector product through the adaptation: mean_t J_tᵀ F'_t J_t v.
        let post_batches: Vec<_> = data
            .iter()
            .zip(&chains)
            .map(|(d, c)| c.last.batch(&d.post.obs))
            .collect::<std::result::Result<_, _>>()?;
        // On a stop request the remaining CG products return 0 and the line search's trials
        // NaN, which ends `trpo_step` at once; the iteration is then dropped below.
        let fvp = |v: &[f64], out: &mut [f64]| {
            if crate::stop::requested() {
                out.fill(0.0);
                return;
            }
            let parts: Vec<Vec<f64>> = chain_objs
                .par_iter()
                .zip(post_batches.par_iter())
                .map(|(objs, batch)| {
                    let u = metagrad::jvp(objs, eta, order, v);
                    let mut fu = vec![0.0; u.len()];
                    batch.fisher_vector_product(&u, &mut fu).expect("lengths match");
                    metagrad::vjp(objs, eta, order, &fu, &[]).expect("no extras")
                })
                .collect();
            out.copy_from_slice(&sum_scaled(&parts, 1.0 / nt));
        };
        let eval = |theta: &[f64]| -> (f64, f64) {
            if crate::stop::requested() {
                return (f64::NAN, f64::NAN);
            }
            let Ok(q) = old.with_params(theta) else { return (f64::NAN, f64::NAN) };
            let res: Result<Vec<(f64, f64)>> = data
                .par_iter()
                .zip(weights.par_iter())
                .map(|(d, &w)| {
                    let chain = metagrad::adapt_chain(&inner, &q, &d.rounds, eta)?;
                    let post_rows = d.post.rows(&chain.last)?;
                    let mut loss = outer_loss(d, &post_rows, false)?.0;
                    if w != 0.0 {
                        for (k, rows) in chain.rows.iter().enumerate() {
                            if let Some((e, _)) = explore(d, w, k, rows)? {
                                loss += e;
                            }
                        }
                    }
                    let kl = d.post.kl_from_behaviour(&post_rows, None)?;
                    Ok((loss, kl))
                })
                .collect();
            match res {
                Ok(v) => (v.iter().map(|x| x.0).sum::<f64>() / nt, v.iter().map(|x| x.1).sum::<f64>() / nt),
                Err(_) => (f64::NAN, f64::NAN),
            }
        };
        let out = trpo_step(&p.trpo, old.params(), &grad, loss_before, fvp, eval)?;
        crate::stop::check()?;
        drop(chain_objs);
        self.policy.set_params(&out.theta)?;
        Ok(outcome(out.kl, None))
    }

    /// ProMP's outer steps. Reports the last outer loss, each step's loss and the largest
    /// |ρ − 1| on the inner data; a loss that is not finite or exceeds the divergence
    /// threshold (or a non-finite gradient, or with a ratio guard a max |ρ − 1| above it)
    /// ends the update without applying it (θ and Adam's state stay as they were before the
    /// iteration).
    fn promp_update(&mut self, data: &[TaskRounds]) -> Result<OuterOutcome> {
        let p = self.params.clone();
        let inner = p.inner();
        let eta = p.inner_lr;
        let nt = data.len() as f64;
        let mut theta = self.policy.params().to_vec();
        let adam_before = self.state.adam.clone();
        let mut last_loss = 0.0;
        let mut losses = Vec::with_capacity(p.promp_steps);
        // max |ρ − 1| as the bits of a non-negative f64 (their order is the numbers' order).
        let max_dev = std::sync::atomic::AtomicU64::new(0);
        for _ in 0..p.promp_steps {
            crate::stop::check()?;
            let q = self.policy.with_params(&theta)?;
            let ppo = |d: &TaskRounds, last: &GaussianMlp| -> Result<(f64, Vec<f64>)> {
                let rows = d.post.rows(last)?;
                let o = ppo_clip_objective(rows.values(), &d.post.advantages, p.ppo_clip)?;
                let mut g = vec![0.0; last.num_params()];
                rows.vjp_add(&o.d_log, &mut g);
                Ok((o.loss, g))
            };
            // c_KL·KL(π_{θ_k^old} ‖ π_{θ_k}) on D_k.
            let kl_term =
                |d: &TaskRounds, k: usize, rows: &GaussianMlpRows<'_>| -> Result<Option<(f64, Vec<f64>)>> {
                    let dev = rows
                        .values()
                        .iter()
                        .map(|r| (r - 1.0).abs())
                        .fold(0.0, |m: f64, x| if x.is_nan() { f64::INFINITY } else { m.max(x) });
                    max_dev.fetch_max(dev.to_bits(), std::sync::atomic::Ordering::Relaxed);
                    if p.kl_coeff == 0.0 {
                        return Ok(None);
                    }
                    let mut g = vec![0.0; rows.num_params()];
                    let kl = d.rounds[k].data.kl_from_behaviour(rows, Some(&mut g))?;
                    g.iter_mut().for_each(|x| *x *= p.kl_coeff);
                    Ok(Some((p.kl_coeff * kl, g)))
                };
            let parts: Vec<(f64, Vec<f64>)> = data
                .par_iter()
                .map(|d| {
                    metagrad::meta_gradient_with(
                        &inner,
                        &q,
                        &d.rounds,
                        eta,
                        Order::Second,
                        &mut |last| ppo(d, last),
                        &|k, pol| kl_term(d, k, pol),
                    )
                })
                .collect::<Result<_>>()?;
            last_loss = parts.iter().map(|x| x.0).sum::<f64>() / nt;
            losses.push(last_loss);
            let grad = sum_scaled(&parts.iter().map(|x| x.1.clone()).collect::<Vec<_>>(), 1.0 / nt);
            let diverged = if !last_loss.is_finite() || last_loss > p.divergence_threshold {
                Some(format!(
                    "outer loss {last_loss} at Adam step {} (divergence threshold {})",
                    losses.len(),
                    p.divergence_threshold
                ))
            } else if grad.iter().any(|g| !g.is_finite()) {
                Some(format!("non-finite gradient at Adam step {}", losses.len()))
            } else {
                let dev = f64::from_bits(max_dev.load(std::sync::atomic::Ordering::Relaxed));
                p.ratio_guard.filter(|&g| dev > g).map(|g| {
                    format!(
                        "max |ρ − 1| on the inner data {dev} at Adam step {} (ratio guard {g})",
                        losses.len()
                    )
                })
            };
            if diverged.is_some() {
                self.state.adam = adam_before;
                return Ok(OuterOutcome {
                    diag: last_loss,
                    losses,
                    max_ratio_dev: f64::from_bits(max_dev.into_inner()),
                    diverged,
                });
            }
            self.state.adam.as_mut().expect("ProMP has Adam").step(&mut theta, &grad)?;
        }
        self.policy.set_params(&theta)?;
        Ok(OuterOutcome {
            diag: last_loss,
            losses,
            max_ratio_dev: f64::from_bits(max_dev.into_inner()),
            diverged: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = t.step().unwrap();
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
        t.step().unwrap();
        assert!(t.state().diverged.is_none());
        // A healthy run records its diagnostics and does not diverge.
        let mut t = Trainer::new(tiny(Algorithm::PrompTaypo2)).unwrap();
        let s = t.step().unwrap();
        assert!(t.state().diverged.is_none());
        assert_eq!(s.diagnostics.outer_losses.len(), 5);
        assert!(s.diagnostics.inner_step_norm_max >= s.diagnostics.inner_step_norm_mean);
        assert!(s.diagnostics.max_inner_ratio_dev > 0.0 && s.diagnostics.max_inner_ratio_dev.is_finite());
        let e = Params { divergence_threshold: 0.0, ..(*p).clone() }.validate().unwrap_err().to_string();
        assert!(e.contains("divergence-threshold"), "{e}");
    }

    #[test]
    fn the_ratio_guard_stops_a_promp_run_whose_inner_ratios_leave_its_bound() {
        // A healthy run's first Adam step sees ratios at 1 (θ = θ_old) and later ones move
        // away from 1: a tiny bound stops the run at a later step, before any update lands.
        for algo in [Algorithm::Promp, Algorithm::PrompTaypo2] {
            let healthy = tiny(algo);
            let mut t = Trainer::new(healthy.clone()).unwrap();
            let dev = t.step().unwrap().diagnostics.max_inner_ratio_dev;
            assert!(dev > 0.0 && t.state().diverged.is_none());
            // A bound above every deviation seen leaves the run bit for bit as it was.
            let loose = Params { ratio_guard: Some(2.0 * dev), ..(*healthy).clone() }.validate().unwrap();
            let mut u = Trainer::new(loose).unwrap();
            u.step().unwrap();
            assert!(u.state().diverged.is_none());
            assert_eq!(u.policy().params(), t.policy().params());
            let tight = Params { ratio_guard: Some(dev / 2.0), ..(*healthy).clone() }.validate().unwrap();
            let mut u = Trainer::new(tight).unwrap();
            let (theta0, adam0) = (u.policy().params().to_vec(), u.state().adam.clone());
            let s = u.step().unwrap();
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
    #[test]
    fn every_algorithm_runs_and_respects_its_outer_constraints() {
        for algo in Algorithm::ALL {
            let mut t = Trainer::new(tiny(algo)).unwrap();
            let theta0 = t.policy().params().to_vec();
            while !t.finished() {
                let s = t.step().unwrap();
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
        let variant =
            Params { taypo2_pairs: Taylor2Pairs::Normalised, taypo2_ratio_clip: Some(0.3), ..base.clone() };
        let v = variant.clone().validate().unwrap();
        assert_eq!((v.taypo2_pairs, v.taypo2_ratio_clip), (Taylor2Pairs::Discounted, None));
        let v = Params { algo: Algorithm::PrompTaypo2, ..variant }.validate().unwrap();
        assert_eq!(
            (v.inner().taypo2_pairs, v.inner().taypo2_ratio_clip),
            (Taylor2Pairs::Normalised, Some(0.3))
        );
        let saved = serde_json::to_string(&*taypo2.validate().unwrap()).unwrap();
        assert!(!saved.contains("taypo2_"), "{saved}");
        assert!(Algorithm::parse("promp-taypo2").is_ok());
        assert!(Algorithm::parse("x").unwrap_err().to_string().contains("trpo-maml"));
    }
}
