//! The settings of a meta-RL run under the names of the command line and of Python
//! ([`RunSettings`]), with their defaults, and their one conversion into the settings a run
//! records ([`Params`]).

use serde::{Deserialize, Serialize};

use super::optim::TrpoConfig;
use super::params::{Algorithm, InnerKlAverage, MetaTest, Params, ValidParams};
use crate::envs::EnvSource;
use crate::error::Result;
use crate::estimators::{Taylor2Pairs, TaylorDiscount};
use crate::meta::objectives::{DiceCritic, Normalisation};
use crate::policy::Precision;

/// Settings shared by a single run and a grid, under the names of the command line and of
/// Python, with their defaults (ProMP's setup, docs/theory.md#meta-rl-setup), written once, in
/// [`RunSettings::default`]. The command line flattens this struct (with the `cli`
/// feature); the Python package fills it from keyword arguments (unknown names are refused).
/// [`RunSettings::to_params`] is the one conversion into a run's recorded [`Params`].
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Environment: point-corners, point-corners-simple, or a MuJoCo meta-task (needs the
    /// `mujoco` feature).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().env))]
    pub env: String,
    /// Meta-iterations.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().iterations))]
    pub iterations: usize,
    /// Tasks per iteration.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().tasks))]
    pub tasks: usize,
    /// Rollouts per task and sampling round.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().rollouts))]
    pub rollouts: usize,
    /// Horizon of every rollout.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().horizon))]
    pub horizon: usize,
    /// Inner steps K (default: 3 for the point envs, 1 otherwise).
    #[cfg_attr(feature = "cli", arg(long))]
    pub inner_steps: Option<usize>,
    /// Inner step size η.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().inner_lr))]
    pub inner_lr: f64,
    /// Discount γ.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().gamma))]
    pub gamma: f64,
    /// GAE λ.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().gae_lambda))]
    pub gae_lambda: f64,
    /// Hidden layer widths of the policy (comma-separated).
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', default_value = comma_list(&RunSettings::default().hidden)))]
    pub hidden: Vec<usize>,
    /// Floating-point type of the policy's network passes (f32 is ≈2× faster; f64 for
    /// exactness checks).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = RunSettings::default().precision))]
    pub precision: Precision,
    /// Normalisation of the inner objectives: mean over samples or over paths.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = RunSettings::default().normalisation))]
    pub normalisation: Normalisation,
    /// TayPO-K / naive-score discount: γ^{t2−t1} (from-first, ProMP) or γ^{t} (absolute).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = RunSettings::default().taypo_discount))]
    pub taypo_discount: TaylorDiscount,
    /// Do not rescale DR's rewards and critic by the task's advantage std.
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_dr_normalise: bool,
    /// TRPO-DiCE's critic: time (time-only linear fit, the paper's setup), features (the
    /// observation-feature baseline) or promp (ProMP's own DiCE loss); TRPO-TMAML's
    /// baselines: time or features.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = RunSettings::default().dice_critic))]
    pub dice_critic: DiceCritic,
    /// ProMP-TayPO-2: weighting of the pair term: discounted (the paper's Eq. 6) or
    /// normalised (per path by its first-order over its pair weight).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = RunSettings::default().taypo2_pairs))]
    pub taypo2_pairs: Taylor2Pairs,
    /// ProMP-TayPO-2: clip ρ_t − 1 in the inner objective to ± this bound, as PPO clips
    /// (default: no clip).
    #[cfg_attr(feature = "cli", arg(long))]
    pub taypo2_ratio_clip: Option<f64>,
    /// ProMP-TayPO-2: clip ρ_t − 1 in the pair term only to ± this bound, in place of
    /// --taypo2-ratio-clip there (inf: the pair term unclipped; default: as the
    /// first-order term).
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(with = "super::unbounded::option")]
    pub taypo2_pair_clip: Option<f64>,
    /// TRPO: bound on the mean KL of a step.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().max_kl))]
    pub max_kl: f64,
    /// ProMP: PPO clip ε.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().ppo_clip))]
    pub ppo_clip: f64,
    /// ProMP: inner KL penalty coefficient.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().kl_coeff))]
    pub kl_coeff: f64,
    /// ProMP: Adam learning rate.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().adam_lr))]
    pub adam_lr: f64,
    /// ProMP: Adam steps per iteration.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().promp_steps))]
    pub promp_steps: usize,
    /// E-MAML: weight of the exploration term.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().emaml_weight))]
    pub emaml_weight: f64,
    /// Divergence guard: stop a run (marked diverged in the summary) when an outer loss is
    /// not finite or exceeds this (`inf` disables it).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().divergence_threshold))]
    #[serde(with = "super::unbounded")]
    pub divergence_threshold: f64,
    /// ProMP algorithms: also stop a run (marked diverged) when the largest |ρ − 1| on the
    /// inner data during its outer steps exceeds this (default: no such guard).
    #[cfg_attr(feature = "cli", arg(long))]
    pub ratio_guard: Option<f64>,
    /// ProMP algorithms: combine the K inner KL penalties by their sum or (as ProMP's code
    /// does) their mean.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = RunSettings::default().inner_kl_average))]
    pub inner_kl_average: InnerKlAverage,
    /// ProMP algorithms: Adam's ε.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().adam_eps))]
    pub adam_eps: f64,
    /// ProMP algorithms: floor of the policy's log-std entries, applied after every Adam step
    /// (default: none; ProMP's policy floors log σ at ln 1e-6 ≈ -13.8).
    #[cfg_attr(feature = "cli", arg(long, allow_hyphen_values = true))]
    pub log_std_floor: Option<f64>,
    /// Largest number of environment steps per iteration, tasks × rollouts × horizon ×
    /// (inner steps + 1), accepted.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().max_steps_per_iteration))]
    pub max_steps_per_iteration: usize,
    /// Meta-test: evaluate on fresh tasks (of the test split, for environments that have
    /// one) every this many iterations and after the last; 0: never.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().test_every))]
    pub test_every: usize,
    /// Meta-test: tasks per evaluation (default: --tasks).
    #[cfg_attr(feature = "cli", arg(long))]
    pub test_tasks: Option<usize>,
    /// Meta-test: evaluation episodes per task with the adapted policy.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = RunSettings::default().test_episodes))]
    pub test_episodes: usize,
}

impl Default for RunSettings {
    /// The defaults of the command line and of Python: ProMP's setup
    /// (docs/theory.md#meta-rl-setup). [`Params::new`] takes its defaults from here too.
    fn default() -> Self {
        Self {
            env: "point-corners".into(),
            iterations: 500,
            tasks: 40,
            rollouts: 20,
            horizon: 100,
            inner_steps: None,
            inner_lr: 0.1,
            gamma: 0.99,
            gae_lambda: 1.0,
            hidden: vec![64, 64],
            precision: Precision::F32,
            normalisation: Normalisation::Samples,
            taypo_discount: TaylorDiscount::FromFirst,
            no_dr_normalise: false,
            dice_critic: DiceCritic::Time,
            taypo2_pairs: Taylor2Pairs::Discounted,
            taypo2_ratio_clip: None,
            taypo2_pair_clip: None,
            max_kl: TrpoConfig::default().max_kl,
            ppo_clip: 0.3,
            kl_coeff: 5e-4,
            adam_lr: 1e-3,
            promp_steps: 5,
            emaml_weight: 1.0,
            divergence_threshold: 10.0,
            ratio_guard: None,
            inner_kl_average: InnerKlAverage::Sum,
            adam_eps: super::params::default_adam_eps(),
            log_std_floor: None,
            max_steps_per_iteration: crate::limits::DEFAULT_MAX_META_STEPS,
            test_every: 0,
            test_tasks: None,
            test_episodes: 3,
        }
    }
}

impl RunSettings {
    /// The settings a run of `algo` with `seed` on the environment called `env` records, not
    /// yet validated (see [`Params::validate_in`]): the one place where the names of the
    /// command line and of Python map onto the recorded ones (`no_dr_normalise` →
    /// `dr_normalise`, `max_kl` → `trpo.max_kl`, `test_*` → `meta_test`; `env` of these
    /// settings is not read). Settings with no flag take the library's defaults (advantages
    /// normalised, initial log-std 0, TRPO's conjugate gradient and line search).
    pub fn to_params(&self, algo: Algorithm, seed: u64, env: &str) -> Params {
        Params {
            env: env.to_string(),
            algo,
            seed,
            iterations: self.iterations,
            tasks: self.tasks,
            rollouts: self.rollouts,
            horizon: self.horizon,
            gamma: self.gamma,
            gae_lambda: self.gae_lambda,
            normalize_advantages: true,
            inner_steps: self.inner_steps,
            inner_lr: self.inner_lr,
            hidden: self.hidden.clone(),
            init_log_std: 0.0,
            precision: self.precision,
            normalisation: self.normalisation,
            taypo_discount: self.taypo_discount,
            dr_normalise: !self.no_dr_normalise,
            dice_critic: Some(self.dice_critic),
            taypo2_pairs: self.taypo2_pairs,
            taypo2_ratio_clip: self.taypo2_ratio_clip,
            taypo2_pair_clip: self.taypo2_pair_clip,
            trpo: TrpoConfig { max_kl: self.max_kl, ..TrpoConfig::default() },
            ppo_clip: self.ppo_clip,
            kl_coeff: self.kl_coeff,
            adam_lr: self.adam_lr,
            promp_steps: self.promp_steps,
            emaml_weight: self.emaml_weight,
            divergence_threshold: self.divergence_threshold,
            ratio_guard: self.ratio_guard,
            inner_kl_average: self.inner_kl_average,
            adam_eps: self.adam_eps,
            log_std_floor: self.log_std_floor,
            env_config: None,
            meta_test: (self.test_every > 0).then(|| MetaTest {
                every: self.test_every,
                tasks: self.test_tasks.unwrap_or(self.tasks),
                episodes: self.test_episodes,
            }),
        }
    }

    /// The validated settings of one run of `algo` with `seed` on the built-in environment
    /// named by `env`.
    pub fn params(&self, algo: Algorithm, seed: u64) -> Result<ValidParams> {
        self.params_in(algo, seed, EnvSource::Builtin(self.env.clone()), None)
    }

    /// [`Self::params`] on the environment `env` (e.g. a user's, outside the crate; `env`
    /// of these settings is then ignored), with the meta-test's tasks drawn from `test_env`
    /// (default: `env`).
    pub fn params_in(
        &self,
        algo: Algorithm,
        seed: u64,
        env: EnvSource,
        test_env: Option<EnvSource>,
    ) -> Result<ValidParams> {
        self.to_params(algo, seed, env.name()).validate_in(self.max_steps_per_iteration, env, test_env)
    }
}

/// A default list as the command line writes it, comma-separated (a flag's help shows it;
/// called once per flag when the command line is built).
#[cfg(feature = "cli")]
pub(crate) fn comma_list<T: std::fmt::Display>(values: &[T]) -> &'static str {
    let text = values.iter().map(T::to_string).collect::<Vec<_>>().join(",");
    Box::leak(text.into_boxed_str())
}

impl Params {
    /// The defaults ([`RunSettings::default`]) for `env` and `algo`, seed 1.
    pub fn new(env: &str, algo: Algorithm) -> Self {
        RunSettings::default().to_params(algo, 1, env)
    }
}

#[cfg(test)]
impl RunSettings {
    /// Settings of a run small enough for a unit test: 3 tasks × 2 rollouts of 8 steps.
    pub(crate) fn tiny(iterations: usize) -> Self {
        RunSettings {
            iterations,
            tasks: 3,
            rollouts: 2,
            horizon: 8,
            hidden: vec![6],
            ..RunSettings::default()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn default_settings_are_the_command_line_defaults() {
        let s = RunSettings::default();
        assert_eq!(
            (s.env.as_str(), s.iterations, s.tasks, s.rollouts, s.horizon),
            ("point-corners", 500, 40, 20, 100)
        );
        assert_eq!(s.hidden, vec![64, 64]);
        assert_eq!(s.taypo_discount, TaylorDiscount::FromFirst);
        // Partial settings from a map (the Python face) fill the rest with the defaults.
        let p: RunSettings = serde_json::from_str(r#"{"iterations": 7}"#).unwrap();
        assert_eq!(RunSettings { iterations: 7, ..RunSettings::default() }, p);
        let bad = serde_json::from_str::<RunSettings>(r#"{"iteratons": 7}"#).unwrap_err().to_string();
        assert!(bad.contains("iteratons"), "{bad}");
    }

    /// Parses `args` as the command line does (a command with the settings flattened).
    #[cfg(feature = "cli")]
    pub(crate) fn parse_flags<T: clap::Args + clap::FromArgMatches>(args: &[&str]) -> T {
        let cmd = T::augment_args(clap::Command::new("metagrad"));
        let matches =
            cmd.try_get_matches_from(std::iter::once("metagrad").chain(args.iter().copied())).unwrap();
        T::from_arg_matches(&matches).unwrap()
    }

    #[cfg(feature = "cli")]
    #[test]
    fn the_command_line_defaults_are_the_default_settings() {
        assert_eq!(parse_flags::<RunSettings>(&[]), RunSettings::default());
        let s: RunSettings = parse_flags(&["--hidden", "8,4", "--kl-coeff", "0.25"]);
        assert_eq!((s.hidden, s.kl_coeff), (vec![8, 4], 0.25));
    }

    #[test]
    fn params_take_the_settings_defaults_through_one_conversion() {
        let p = Params::new("point-corners", Algorithm::Promp);
        assert_eq!(p, RunSettings::default().to_params(Algorithm::Promp, 1, "point-corners"));
        assert_eq!((p.tasks, p.trpo, p.dr_normalise), (40, TrpoConfig::default(), true));
        let s = RunSettings { no_dr_normalise: true, max_kl: 0.02, test_every: 3, ..RunSettings::default() };
        let p = s.to_params(Algorithm::TrpoMaml, 7, "custom");
        assert_eq!((p.env.as_str(), p.seed, p.dr_normalise, p.trpo.max_kl), ("custom", 7, false, 0.02));
        assert_eq!(p.meta_test, Some(MetaTest { every: 3, tasks: 40, episodes: 3 }));
    }
}
