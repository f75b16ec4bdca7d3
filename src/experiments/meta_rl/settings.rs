//! The settings of a meta-RL run under the command line's names and with its defaults.

use serde::{Deserialize, Serialize};

use crate::envs::EnvSource;
use crate::error::Result;
use crate::estimators::{Taylor2Pairs, TaylorDiscount};
use crate::meta::algos::{Algorithm, MetaTest, Params, ValidParams};
use crate::meta::objectives::{DiceCritic, Normalisation};
use crate::policy::Precision;

/// Settings shared by a single run and a grid, under the command line's names and with
/// its defaults (ProMP's setup, docs/theory.md#meta-rl-setup). The command line flattens this
/// struct; the Python package fills it from keyword arguments (unknown names are refused).
#[derive(clap::Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Environment: point-corners, point-corners-simple, or a MuJoCo meta-task (needs the
    /// `mujoco` feature).
    #[arg(long, default_value = "point-corners")]
    pub env: String,
    /// Meta-iterations.
    #[arg(long, default_value_t = 500)]
    pub iterations: usize,
    /// Tasks per iteration.
    #[arg(long, default_value_t = 40)]
    pub tasks: usize,
    /// Rollouts per task and sampling round.
    #[arg(long, default_value_t = 20)]
    pub rollouts: usize,
    /// Horizon of every rollout.
    #[arg(long, default_value_t = 100)]
    pub horizon: usize,
    /// Inner steps K (default: 3 for the point envs, 1 otherwise).
    #[arg(long)]
    pub inner_steps: Option<usize>,
    /// Inner step size η.
    #[arg(long, default_value_t = 0.1)]
    pub inner_lr: f64,
    /// Discount γ.
    #[arg(long, default_value_t = 0.99)]
    pub gamma: f64,
    /// GAE λ.
    #[arg(long, default_value_t = 1.0)]
    pub gae_lambda: f64,
    /// Hidden layer widths of the policy (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    pub hidden: Vec<usize>,
    /// Floating-point type of the policy's network passes (f32 is ≈2× faster; f64 for
    /// exactness checks).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Normalisation of the inner objectives: mean over samples or over paths.
    #[arg(long, value_enum, default_value_t = Normalisation::Samples)]
    pub normalisation: Normalisation,
    /// TayPO-K / naive-score discount: γ^{t2−t1} (from-first, ProMP) or γ^{t} (absolute).
    #[arg(long, value_enum, default_value_t = TaylorDiscount::FromFirst)]
    pub taypo_discount: TaylorDiscount,
    /// Do not rescale DR's rewards and critic by the task's advantage std.
    #[arg(long)]
    pub no_dr_normalise: bool,
    /// TRPO-DiCE's critic: time (time-only linear fit, the paper's setup), features (the
    /// observation-feature baseline) or promp (ProMP's own DiCE loss).
    #[arg(long, value_enum, default_value_t = DiceCritic::Time)]
    pub dice_critic: DiceCritic,
    /// ProMP-TayPO-2: weighting of the pair term: discounted (the paper's Eq. 6) or
    /// normalised (per path by its first-order over its pair weight).
    #[arg(long, value_enum, default_value_t = Taylor2Pairs::Discounted)]
    pub taypo2_pairs: Taylor2Pairs,
    /// ProMP-TayPO-2: clip ρ_t − 1 in the inner objective to ± this bound, as PPO clips
    /// (default: no clip).
    #[arg(long)]
    pub taypo2_ratio_clip: Option<f64>,
    /// TRPO: bound on the mean KL of a step.
    #[arg(long, default_value_t = 0.01)]
    pub max_kl: f64,
    /// ProMP: PPO clip ε.
    #[arg(long, default_value_t = 0.3)]
    pub ppo_clip: f64,
    /// ProMP: inner KL penalty coefficient.
    #[arg(long, default_value_t = 5e-4)]
    pub kl_coeff: f64,
    /// ProMP: Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub adam_lr: f64,
    /// ProMP: Adam steps per iteration.
    #[arg(long, default_value_t = 5)]
    pub promp_steps: usize,
    /// E-MAML: weight of the exploration term.
    #[arg(long, default_value_t = 1.0)]
    pub emaml_weight: f64,
    /// Divergence guard: stop a run (marked diverged in the summary) when an outer loss is
    /// not finite or exceeds this (`inf` disables it).
    #[arg(long, default_value_t = 10.0)]
    pub divergence_threshold: f64,
    /// ProMP algorithms: also stop a run (marked diverged) when the largest |ρ − 1| on the
    /// inner data during its outer steps exceeds this (default: no such guard).
    #[arg(long)]
    pub ratio_guard: Option<f64>,
    /// Largest number of environment steps per iteration, tasks × rollouts × horizon ×
    /// (inner steps + 1), accepted.
    #[arg(long, default_value_t = crate::limits::DEFAULT_MAX_META_STEPS)]
    pub max_steps_per_iteration: usize,
    /// Meta-test: evaluate on fresh tasks (of the test split, for environments that have
    /// one) every this many iterations and after the last; 0: never.
    #[arg(long, default_value_t = 0)]
    pub test_every: usize,
    /// Meta-test: tasks per evaluation (default: --tasks).
    #[arg(long)]
    pub test_tasks: Option<usize>,
    /// Meta-test: evaluation episodes per task with the adapted policy.
    #[arg(long, default_value_t = 3)]
    pub test_episodes: usize,
}

impl Default for RunSettings {
    /// The command line's defaults (one source: the `#[arg]` attributes above).
    fn default() -> Self {
        crate::experiments::command_line_defaults()
    }
}

impl RunSettings {
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
        let mut p = Params::new(env.name(), algo);
        p.seed = seed;
        p.iterations = self.iterations;
        p.tasks = self.tasks;
        p.rollouts = self.rollouts;
        p.horizon = self.horizon;
        p.inner_steps = self.inner_steps;
        p.inner_lr = self.inner_lr;
        p.gamma = self.gamma;
        p.gae_lambda = self.gae_lambda;
        p.hidden = self.hidden.clone();
        p.precision = self.precision;
        p.normalisation = self.normalisation;
        p.taypo_discount = self.taypo_discount;
        p.dr_normalise = !self.no_dr_normalise;
        p.dice_critic = Some(self.dice_critic);
        p.taypo2_pairs = self.taypo2_pairs;
        p.taypo2_ratio_clip = self.taypo2_ratio_clip;
        p.trpo.max_kl = self.max_kl;
        p.ppo_clip = self.ppo_clip;
        p.kl_coeff = self.kl_coeff;
        p.adam_lr = self.adam_lr;
        p.promp_steps = self.promp_steps;
        p.emaml_weight = self.emaml_weight;
        p.divergence_threshold = self.divergence_threshold;
        p.ratio_guard = self.ratio_guard;
        p.meta_test = (self.test_every > 0).then(|| MetaTest {
            every: self.test_every,
            tasks: self.test_tasks.unwrap_or(self.tasks),
            episodes: self.test_episodes,
        });
        p.validate_in(self.max_steps_per_iteration, env, test_env)
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
mod tests {
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
}
