//! The settings of a meta-RL run: the algorithm ([`Algorithm`]), every setting with
//! ProMP's defaults (docs/theory.md#meta-rl-setup) ([`Params`]), checked once into [`ValidParams`] together with the
//! run's environment ([`EnvSource`]: a built-in name, or an environment outside the crate).

use serde::{Deserialize, Serialize};

use super::metagrad::Order;
use super::objectives::{DiceCritic, InnerKind, InnerObjective, Normalisation};
use super::optim::TrpoConfig;
use super::processing::ProcessingConfig;
use crate::envs::{EnvSource, NAMES};
use crate::error::{Result, invalid};
use crate::estimators::{Taylor2Pairs, TaylorDiscount};
use crate::policy::Precision;

/// A meta-RL algorithm.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// TRPO with TMAML's inner objective (IS with TMAML's control variate), second order;
    /// not one of the paper's six.
    TrpoTmaml,
    /// TRPO with `tmaml-past` as inner objective: TMAML's control variate without its
    /// biased Hessian term (the same on-policy inner step as TRPO-TMAML); a control for it.
    TrpoTmamlPast,
}

impl Algorithm {
    /// The paper's six, in its order (`--algos all`): the first six of [`Self::KNOWN`].
    pub const PAPER: [Algorithm; 6] = {
        let k = Self::KNOWN;
        [k[0], k[1], k[2], k[3], k[4], k[5]]
    };

    /// Every algorithm: the paper's six, then TRPO-TMAML and its control TRPO-TMAML-past.
    pub const KNOWN: [Algorithm; 8] = [
        Algorithm::TrpoMaml,
        Algorithm::TrpoFmaml,
        Algorithm::TrpoEmaml,
        Algorithm::TrpoDice,
        Algorithm::Promp,
        Algorithm::PrompTaypo2,
        Algorithm::TrpoTmaml,
        Algorithm::TrpoTmamlPast,
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
            Algorithm::TrpoTmaml => "trpo-tmaml",
            Algorithm::TrpoTmamlPast => "trpo-tmaml-past",
        }
    }

    /// Parses a name (as on the command line).
    pub fn parse(name: &str) -> Result<Self> {
        Self::KNOWN.iter().copied().find(|a| a.name() == name.trim()).ok_or_else(|| {
            invalid(
                "algo",
                format!(
                    "unknown algorithm {name:?} (known: {})",
                    Self::KNOWN.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Parses a comma-separated list of names, or `all` for the six in the paper's order.
    pub fn parse_list(list: &str) -> Result<Vec<Self>> {
        if list.trim() == "all" {
            return Ok(Self::PAPER.to_vec());
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
            Algorithm::TrpoTmaml => InnerKind::Tmaml,
            Algorithm::TrpoTmamlPast => InnerKind::TmamlPast,
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
    /// The critic of TRPO-DiCE and TRPO-TMAML (`Some` for `trpo-dice`, `trpo-tmaml` and
    /// `trpo-tmaml-past` only, set by [`Params::validate`]; `time` by default). TRPO-DiCE runs saved before
    /// this setting existed used `features` ([`Params::upgrade_legacy`]).
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
    /// ProMP-TayPO-2: clip of |ρ_t − 1| in the pair term only, in place of
    /// `taypo2_ratio_clip` there (none by default; ∞ leaves the pair term unclipped; only
    /// for `promp-taypo2`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::unbounded::option")]
    pub taypo2_pair_clip: Option<f64>,
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
    #[serde(default = "default_divergence_threshold", with = "super::unbounded")]
    pub divergence_threshold: f64,
    /// ProMP and ProMP-TayPO-2: a second guard, on the largest |ρ − 1| on the inner data
    /// during the outer steps; the run stops (marked diverged) when it exceeds this. Off by
    /// default; recorded only when set, and only for the ProMP algorithms (TRPO does not
    /// re-evaluate the inner data's ratios).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_guard: Option<f64>,
    /// ProMP algorithms: how the K inner KL penalties combine (their sum by default; ProMP's
    /// code takes their mean). Recorded only when not the default, and only for the ProMP
    /// algorithms.
    #[serde(default, skip_serializing_if = "is_default")]
    pub inner_kl_average: InnerKlAverage,
    /// ProMP algorithms: Adam's ε (1e-8, TensorFlow's default, which ProMP uses). Recorded
    /// only when not the default, and only for the ProMP algorithms.
    #[serde(default = "default_adam_eps", skip_serializing_if = "is_default_adam_eps")]
    pub adam_eps: f64,
    /// ProMP algorithms: a floor on the policy's log-std entries, applied to θ after every
    /// Adam step (none by default; ProMP's policy floors log σ at ln 10⁻⁶). Recorded only when
    /// set, and only for the ProMP algorithms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_std_floor: Option<f64>,
    /// An environment outside the crate: its own settings, as it reports them (e.g.
    /// Meta-World's benchmark, task name and reward version); recorded so that a resume
    /// with other settings is refused. None for the built-in environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_config: Option<serde_json::Value>,
    /// Meta-test evaluation on held-out tasks (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_test: Option<MetaTest>,
}

/// What one meta-test evaluation measured ([`MetaTest`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestStats {
    /// Mean return of the adaptation episodes (before adaptation).
    pub pre_return: f64,
    /// Mean return of the evaluation episodes (after adaptation).
    pub post_return: f64,
    /// Success rate before adaptation, for environments that report success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_success: Option<f64>,
    /// Success rate after adaptation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_success: Option<f64>,
}

/// Meta-test evaluation, every `every` iterations (and after the last one): `tasks` tasks
/// drawn from the test split (a fresh draw each time), adapted as in training (K inner
/// steps on `rollouts` episodes per task and step), then `episodes` evaluation episodes per
/// task with the adapted policy. Reports the mean return and, for environments that report
/// it, the success rate (an episode succeeds when some step reports success) before and
/// after adaptation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaTest {
    /// Iterations between evaluations.
    pub every: usize,
    /// Tasks per evaluation.
    pub tasks: usize,
    /// Evaluation episodes per task after adaptation.
    pub episodes: usize,
}

fn default_divergence_threshold() -> f64 {
    10.0
}

/// Adam's ε unless set (TensorFlow's default, as in ProMP).
pub(crate) fn default_adam_eps() -> f64 {
    1e-8
}

fn is_default_adam_eps(x: &f64) -> bool {
    *x == default_adam_eps()
}

/// How ProMP's outer loss combines the inner KL penalties of the K inner steps
/// (docs/theory.md#algorithms): c_KL Σ_k KL_k or c_KL (1/K) Σ_k KL_k, with KL_k the mean over
/// tasks of the mean KL(π_{θ_k^old} ‖ π_{θ_k(θ)}) on D_k.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InnerKlAverage {
    /// The sum over the inner steps (this library's default).
    #[default]
    Sum,
    /// The mean over the inner steps (ProMP's code: `tf.reduce_mean(inner_kl_coeff *
    /// mean_inner_kl_per_step)`).
    Mean,
}

impl InnerKlAverage {
    /// The command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            InnerKlAverage::Sum => "sum",
            InnerKlAverage::Mean => "mean",
        }
    }

    /// The weight of each inner step's KL penalty, relative to c_KL, with K inner steps.
    pub fn weight(&self, k: usize) -> f64 {
        match self {
            InnerKlAverage::Sum => 1.0,
            InnerKlAverage::Mean => 1.0 / k.max(1) as f64,
        }
    }
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

impl Params {
    /// Settings read from a run saved before a setting existed, with the value that run used:
    /// a `trpo-dice` run without `dice_critic` used the feature baseline.
    pub fn upgrade_legacy(mut self) -> Self {
        if self.algo == Algorithm::TrpoDice && self.dice_critic.is_none() {
            self.dice_critic = Some(DiceCritic::Features);
        }
        self
    }

    /// Checks every setting; errors name the field and its value. The environment is the
    /// built-in one named by `env`.
    pub fn validate(self) -> Result<ValidParams> {
        self.validate_with(crate::limits::DEFAULT_MAX_META_STEPS)
    }

    /// [`Params::validate`] with environment steps per iteration,
    /// tasks·rollouts·horizon·(K + 1), bounded by `max_steps` (checked arithmetic, before
    /// anything is allocated), and the policy's parameters by
    /// [`crate::limits::MAX_POLICY_PARAMS`].
    pub fn validate_with(self, max_steps: usize) -> Result<ValidParams> {
        let source = EnvSource::Builtin(self.env.clone());
        self.validate_in(max_steps, source, None)
    }

    /// [`Params::validate_with`] for the environment `env` (which sets `env` and
    /// `env_config`), with the meta-test's tasks drawn from `test_env` (default: `env`).
    ///
    /// # Errors
    /// As [`Params::validate_with`]; an external environment whose description is invalid
    /// or whose name is that of a built-in environment; a test environment of another shape.
    pub fn validate_in(
        mut self,
        max_steps: usize,
        env: EnvSource,
        test_env: Option<EnvSource>,
    ) -> Result<ValidParams> {
        let (obs_dim, act_dim) = env_dims(&env)?;
        self.env = env.name().to_string();
        self.env_config = match &env {
            EnvSource::Builtin(_) | EnvSource::Native { .. } => None,
            EnvSource::External(e) => Some(e.info().settings.clone()).filter(|v| !v.is_null()),
        };
        if let Some(t) = &test_env
            && env_dims(t)? != (obs_dim, act_dim)
        {
            return Err(invalid(
                "test env",
                format!(
                    "{:?} has observations × actions {:?}, the training env {:?} has {:?}",
                    t.name(),
                    env_dims(t)?,
                    env.name(),
                    (obs_dim, act_dim)
                ),
            ));
        }
        if let Some(m) = &self.meta_test {
            if m.every == 0 {
                return Err(invalid("test-every", "must be ≥ 1 (or unset: no meta-test), got 0"));
            }
            if m.tasks == 0 {
                return Err(invalid("test-tasks", "must be ≥ 1, got 0"));
            }
            if m.episodes == 0 {
                return Err(invalid("test-episodes", "must be ≥ 1, got 0"));
            }
        }
        let point = matches!(&env, EnvSource::Builtin(n) if is_point_env(n));
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
        // Only TRPO-DiCE and the TRPO-TMAMLs read a critic; others record none (so their
        // settings compare equal to those of runs saved before the setting existed).
        let tmaml = matches!(self.algo, Algorithm::TrpoTmaml | Algorithm::TrpoTmamlPast);
        self.dice_critic =
            (tmaml || self.algo == Algorithm::TrpoDice).then(|| self.dice_critic.unwrap_or(DiceCritic::Time));
        if tmaml && self.dice_critic == Some(DiceCritic::Promp) {
            return Err(invalid(
                "dice-critic",
                format!(
                    "{} takes a state critic (time or features); promp is TRPO-DiCE's own loss",
                    self.algo
                ),
            ));
        }
        // Only ProMP-TayPO-2 reads the TayPO-2 variants; others record the defaults.
        if self.algo != Algorithm::PrompTaypo2 {
            self.taypo2_pairs = Taylor2Pairs::Discounted;
            self.taypo2_ratio_clip = None;
            self.taypo2_pair_clip = None;
        }
        if let Some(k) = self.taypo2_ratio_clip {
            finite_pos("taypo2-ratio-clip", k)?;
        }
        if let Some(k) = self.taypo2_pair_clip
            && (k.is_nan() || k <= 0.0)
        {
            return Err(invalid("taypo2-pair-clip", format!("must be > 0 (inf: no clip), got {k}")));
        }
        // Only the ProMP algorithms measure the inner data's ratios during the outer steps.
        if !matches!(self.algo, Algorithm::Promp | Algorithm::PrompTaypo2) {
            self.ratio_guard = None;
        }
        if let Some(g) = self.ratio_guard {
            finite_pos("ratio-guard", g)?;
        }
        // Only the ProMP algorithms read the settings of ProMP's outer loss and optimiser
        // beyond the common ones; others record the defaults.
        if !self.algo.is_promp() {
            self.inner_kl_average = InnerKlAverage::Sum;
            self.adam_eps = default_adam_eps();
            self.log_std_floor = None;
        }
        finite_pos("adam-eps", self.adam_eps)?;
        if let Some(f) = self.log_std_floor
            && !f.is_finite()
        {
            return Err(invalid("log-std-floor", format!("must be finite, got {f}")));
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
        let k = self.inner_steps.unwrap_or(if point { 3 } else { 1 });
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
        if let Some(m) = &self.meta_test {
            let flag = Some("--max-steps-per-iteration");
            crate::limits::product(
                "test-tasks",
                "environment steps of a meta-test's adaptation, test tasks × rollouts × horizon × inner steps",
                &[m.tasks, self.rollouts, self.horizon, k],
                max_steps,
                flag,
            )?;
            crate::limits::product(
                "test-episodes",
                "environment steps of a meta-test's evaluation, test tasks × episodes × horizon",
                &[m.tasks, m.episodes, self.horizon],
                max_steps,
                flag,
            )?;
        }
        let mut n_params = act_dim; // log-std
        let mut width = obs_dim;
        for &out in self.hidden.iter().chain(std::iter::once(&act_dim)) {
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
        if let Some(f) = self.log_std_floor
            && self.init_log_std < f
        {
            return Err(invalid(
                "log-std-floor",
                format!(
                    "{f} is above the initial log-std {} (it must not bind at the start)",
                    self.init_log_std
                ),
            ));
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
        crate::limits::check("promp-steps", self.promp_steps, crate::limits::MAX_PROMP_STEPS, None)?;
        if !self.emaml_weight.is_finite() {
            return Err(invalid("emaml-weight", format!("must be finite, got {}", self.emaml_weight)));
        }
        Ok(ValidParams { params: self, env, test_env })
    }
}

/// Observation and action dimensions of an environment (building a built-in one).
fn env_dims(env: &EnvSource) -> Result<(usize, usize)> {
    if !matches!(env, EnvSource::Builtin(_)) && NAMES.contains(&env.name()) {
        return Err(invalid(
            "env name",
            format!("{:?} is a built-in environment's name; give your environment another", env.name()),
        ));
    }
    if let EnvSource::External(e) = env {
        let info = e.info();
        info.validate()?;
        return Ok((info.obs_dim, info.act_dim));
    }
    let e = env.build_native()?.expect("a Rust environment");
    Ok((e.obs_dim(), e.act_dim()))
}

/// Validated settings (inner steps resolved), with the run's environment.
#[derive(Clone, Debug)]
pub struct ValidParams {
    params: Params,
    env: EnvSource,
    test_env: Option<EnvSource>,
}

impl PartialEq for ValidParams {
    /// Same settings (environments compare by name, which the settings hold).
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params
    }
}

impl Serialize for ValidParams {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.params.serialize(s)
    }
}

impl std::ops::Deref for ValidParams {
    type Target = Params;
    fn deref(&self) -> &Params {
        &self.params
    }
}

impl ValidParams {
    /// K.
    pub fn k(&self) -> usize {
        self.params.inner_steps.expect("resolved by validate")
    }
    /// The run's environment.
    pub fn env_source(&self) -> &EnvSource {
        &self.env
    }
    /// Where the meta-test draws its tasks (the run's environment unless another was given).
    pub fn test_env_source(&self) -> &EnvSource {
        self.test_env.as_ref().unwrap_or(&self.env)
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
            taypo2_pair_clip: self.taypo2_pair_clip,
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
        ValidParams { params: Params { algo, seed, ..self.params.clone() }, ..self.clone() }
    }
}
