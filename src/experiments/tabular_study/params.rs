//! The tabular study's settings: the command line's names and defaults
//! ([`StudySettings`]), the study's parameters ([`StudyParams`]) and their validation
//! ([`ValidStudy`]).

use serde::{Deserialize, Serialize};

use crate::error::{Result, invalid};
use crate::estimators::Estimator;
use crate::limits::Limits;
#[cfg(feature = "cli")]
use crate::meta::settings::comma_list;
use crate::tabular::RandomMdpParams;

/// Which sweeps to run.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sweep {
    /// Accuracy vs off-policyness ε at fixed N (Fig. 1 a, b).
    Eps,
    /// Accuracy vs sample size N at fixed ε (Fig. 1 c).
    N,
    /// Meta-gradient accuracy vs ε (beyond the paper).
    Meta,
    /// Bias–variance decomposition against the exact derivatives, with the N sweep it
    /// predicts (see [`super::biasvar`]). Not part of `all` (it samples M trajectories per
    /// point: ≈ 40 s by default, where `all` takes ≈ 1.5 s).
    Biasvar,
    /// Eps, N and Meta.
    All,
}

/// Settings of the study (validated by [`StudyParams::validate`]). Defaults are the tabular
/// benchmark's (docs/theory.md#tabular-benchmark).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyParams {
    /// Which sweeps.
    pub sweep: Sweep,
    /// ε grid of the ε and meta sweeps.
    pub eps: Vec<f64>,
    /// N of the ε and meta sweeps.
    pub n: usize,
    /// N grid of the N sweep.
    pub n_grid: Vec<usize>,
    /// ε of the N sweep.
    pub n_sweep_eps: f64,
    /// Independent trials per grid point.
    pub trials: usize,
    /// The seed every draw flows from.
    pub seed: u64,
    /// Random MDP settings (states, actions, γ, Dirichlet concentration, rewards).
    pub mdp: RandomMdpParams,
    /// Transitions per trajectory T.
    pub horizon: usize,
    /// Scale s of the critic noise.
    pub critic_noise: f64,
    /// Estimators to compare.
    pub estimators: Vec<Estimator>,
    /// Inner step size η of the meta sweep.
    pub eta: f64,
    /// Trajectories M per (trial, ε) point of the biasvar sweep.
    #[serde(default = "default_biasvar_trajectories")]
    pub biasvar_trajectories: usize,
    /// Trajectories per chunk c of the biasvar sweep (M is streamed in M/c chunks).
    #[serde(default = "default_biasvar_chunk")]
    pub biasvar_chunk: usize,
}

/// Default M of the biasvar sweep.
pub const DEFAULT_BIASVAR_TRAJECTORIES: usize = 100_000;
/// Default chunk size of the biasvar sweep.
pub const DEFAULT_BIASVAR_CHUNK: usize = 1000;

fn default_biasvar_trajectories() -> usize {
    DEFAULT_BIASVAR_TRAJECTORIES
}

fn default_biasvar_chunk() -> usize {
    DEFAULT_BIASVAR_CHUNK
}

impl Default for StudyParams {
    /// The defaults of [`StudySettings::default`].
    fn default() -> Self {
        StudySettings::default().to_params().expect("the default settings are valid")
    }
}

/// The study's settings under the command line's names, with its defaults (one source:
/// the `#[arg]` attributes). The command line flattens this struct; the Python package
/// fills it from keyword arguments (unknown names are refused). [`StudySettings::validate`]
/// turns it into a [`ValidStudy`].
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudySettings {
    /// Which sweep: eps (Fig. 1 a, b), n (Fig. 1 c), meta (meta-gradients), all (these
    /// three) or biasvar (bias–variance decomposition, with the n sweep it predicts).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = StudySettings::default().sweep))]
    pub sweep: Sweep,
    /// ε grid (comma-separated) of the eps and meta sweeps.
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', default_value = comma_list(&StudySettings::default().eps)))]
    pub eps: Vec<f64>,
    /// Trajectories per estimate in the eps and meta sweeps.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().n))]
    pub n: usize,
    /// N grid (comma-separated) of the n sweep.
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', default_value = comma_list(&StudySettings::default().n_grid)))]
    pub n_grid: Vec<usize>,
    /// ε of the n sweep.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().n_sweep_eps))]
    pub n_sweep_eps: f64,
    /// Independent trials (new MDP, π_d, critic noise and data) per grid point.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().trials))]
    pub trials: usize,
    /// Seed of every random draw.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().seed))]
    pub seed: u64,
    /// Number of states |X|.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().states))]
    pub states: usize,
    /// Number of actions |A|.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().actions))]
    pub actions: usize,
    /// Discount γ.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().gamma))]
    pub gamma: f64,
    /// Transitions per trajectory T.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().horizon))]
    pub horizon: usize,
    /// Dirichlet concentration of the transition rows.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().dirichlet))]
    pub dirichlet: f64,
    /// Scale of the critic noise (1 = the tabular benchmark's: N(0,1)·‖V^μ‖₂/|X|).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().critic_noise))]
    pub critic_noise: f64,
    /// Comma-separated estimators: is, dr, dr-trunc, taypo-K (K ≥ 1), lvc, maml, tmaml, tmaml-past.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().estimators))]
    pub estimators: String,
    /// Truncation level ρ̄ = c̄ of dr-trunc.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().truncation))]
    pub truncation: f64,
    /// Inner step size η of the meta sweep.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().eta))]
    pub eta: f64,
    /// Biasvar sweep: trajectories M per (trial, ε) point (a multiple of 20 × --biasvar-chunk).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().biasvar_trajectories))]
    pub biasvar_trajectories: usize,
    /// Biasvar sweep: trajectories per streamed chunk.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().biasvar_chunk))]
    pub biasvar_chunk: usize,
    /// Largest parameter count D = states × actions accepted (D×D Hessians per estimate).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().max_params))]
    pub max_params: usize,
    /// Largest number of steps N·T of one estimate's batch (for --n and every --n-grid value).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = StudySettings::default().max_steps))]
    pub max_steps: usize,
}

impl Default for StudySettings {
    /// The defaults of the command line and of Python, the tabular benchmark's
    /// (docs/theory.md#tabular-benchmark): the one place they are written.
    fn default() -> Self {
        let mdp = RandomMdpParams::default();
        Self {
            sweep: Sweep::All,
            eps: vec![0.0, 0.2, 0.5, 0.8],
            n: 1000,
            n_grid: vec![10, 30, 100, 300, 1000, 3000],
            n_sweep_eps: 0.5,
            trials: 10,
            seed: 0,
            states: mdp.n_states,
            actions: mdp.n_actions,
            gamma: mdp.gamma,
            horizon: 20,
            dirichlet: mdp.dirichlet,
            critic_noise: 1.0,
            estimators: "is,dr,dr-trunc,taypo-1,taypo-2".into(),
            truncation: 1.0,
            eta: DEFAULT_ETA,
            biasvar_trajectories: DEFAULT_BIASVAR_TRAJECTORIES,
            biasvar_chunk: DEFAULT_BIASVAR_CHUNK,
            max_params: crate::limits::DEFAULT_MAX_PARAMS,
            max_steps: crate::limits::DEFAULT_MAX_STEPS,
        }
    }
}

impl StudySettings {
    /// The study's parameters (not yet validated): the one place where the names of the
    /// command line and of Python map onto them.
    ///
    /// # Errors
    /// An unknown estimator name or an invalid truncation level.
    pub fn to_params(&self) -> Result<StudyParams> {
        Ok(StudyParams {
            sweep: self.sweep,
            eps: self.eps.clone(),
            n: self.n,
            n_grid: self.n_grid.clone(),
            n_sweep_eps: self.n_sweep_eps,
            trials: self.trials,
            seed: self.seed,
            mdp: RandomMdpParams {
                n_states: self.states,
                n_actions: self.actions,
                dirichlet: self.dirichlet,
                gamma: self.gamma,
                ..Default::default()
            },
            horizon: self.horizon,
            critic_noise: self.critic_noise,
            estimators: Estimator::parse_list(&self.estimators, self.truncation)?,
            eta: self.eta,
            biasvar_trajectories: self.biasvar_trajectories,
            biasvar_chunk: self.biasvar_chunk,
        })
    }

    /// Checks every setting once.
    pub fn validate(&self) -> Result<ValidStudy> {
        self.to_params()?.validate_with(&Limits {
            max_params: self.max_params,
            max_steps: self.max_steps,
            ..Limits::default()
        })
    }
}

/// Default inner step size of the meta sweep. On the default MDPs the exact Hessian term
/// is small along the gradient: ‖ηHg'‖/‖g'‖ ≈ 0.05 at η = 1 but ≈ 0.5 at η = 10 (measured,
/// column `hessian_term_ratio`), so at η = 10 the Hessian estimate visibly shapes the
/// meta-gradient while the step θ' = θ + η∇V stays moderate.
pub const DEFAULT_ETA: f64 = 10.0;

/// Validated settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidStudy(StudyParams);

impl std::ops::Deref for ValidStudy {
    type Target = StudyParams;
    fn deref(&self) -> &StudyParams {
        &self.0
    }
}

/// Number of groups of chunks behind the Monte-Carlo standard errors (fixed, so results do
/// not depend on the thread count). M must be a multiple of `GROUPS` × chunk size, with at
/// least two chunks per group.
pub const GROUPS: usize = 20;

impl StudyParams {
    /// Checks every setting once, with the default [`Limits`].
    pub fn validate(self) -> Result<ValidStudy> {
        self.validate_with(&Limits::default())
    }

    /// Checks every setting once; sizes against `limits` (D = states × actions ≤
    /// `max_params`, N·T ≤ `max_steps` for every N) and trials ≤ [`crate::limits::MAX_TRIALS`],
    /// before anything is allocated.
    pub fn validate_with(self, limits: &Limits) -> Result<ValidStudy> {
        use crate::limits::{MAX_TRIALS, check, product};
        self.mdp.validate()?;
        product(
            "states",
            "parameters D = states × actions",
            &[self.mdp.n_states, self.mdp.n_actions],
            limits.max_params,
            Some("--max-params"),
        )?;
        check("trials", self.trials, MAX_TRIALS, None)?;
        for (field, n) in std::iter::once(("n", self.n)).chain(self.n_grid.iter().map(|&n| ("n-grid", n))) {
            product(
                field,
                "steps N·T (trajectories × horizon)",
                &[n, self.horizon],
                limits.max_steps,
                Some("--max-steps"),
            )?;
        }
        let check_eps = |field: &str, e: f64| {
            if !(0.0..=1.0).contains(&e) {
                return Err(invalid(field, format!("ε must be in [0, 1], got {e}")));
            }
            Ok(())
        };
        if self.eps.is_empty() {
            return Err(invalid("eps", "needs at least one value"));
        }
        for &e in &self.eps {
            check_eps("eps", e)?;
        }
        check_eps("n-sweep-eps", self.n_sweep_eps)?;
        if self.n == 0 {
            return Err(invalid("n", "the number of trajectories must be ≥ 1, got 0"));
        }
        if self.n_grid.is_empty() {
            return Err(invalid("n-grid", "needs at least one value"));
        }
        if let Some(&bad) = self.n_grid.iter().find(|&&n| n == 0) {
            return Err(invalid("n-grid", format!("the number of trajectories must be ≥ 1, got {bad}")));
        }
        if self.trials == 0 {
            return Err(invalid("trials", "must be ≥ 1, got 0"));
        }
        if self.horizon == 0 {
            return Err(invalid("horizon", "must be ≥ 1, got 0"));
        }
        if !(self.critic_noise.is_finite() && self.critic_noise >= 0.0) {
            return Err(invalid(
                "critic-noise",
                format!("must be finite and ≥ 0, got {}", self.critic_noise),
            ));
        }
        if self.estimators.is_empty() {
            return Err(invalid("estimators", "needs at least one estimator"));
        }
        if !self.eta.is_finite() {
            return Err(invalid("eta", format!("must be finite, got {}", self.eta)));
        }
        if self.sweep == Sweep::Biasvar {
            if self.biasvar_chunk == 0 {
                return Err(invalid("biasvar-chunk", "must be ≥ 1, got 0"));
            }
            product(
                "biasvar-chunk",
                "steps c·T (chunk × horizon)",
                &[self.biasvar_chunk, self.horizon],
                limits.max_steps,
                Some("--max-steps"),
            )?;
            let unit = GROUPS * self.biasvar_chunk;
            let m = self.biasvar_trajectories;
            if !m.is_multiple_of(unit) || m < 2 * unit {
                return Err(invalid(
                    "biasvar-trajectories",
                    format!(
                        "must be a multiple of {GROUPS} × biasvar-chunk = {unit} and at least {}, got {m}",
                        2 * unit
                    ),
                ));
            }
        }
        Ok(ValidStudy(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_defaults_are_the_settings_defaults_and_the_paper_set() {
        let p = StudyParams::default();
        assert_eq!(p.estimators, Estimator::paper_set());
        assert_eq!((p.mdp.clone(), p.n, p.eta), (RandomMdpParams::default(), 1000, DEFAULT_ETA));
        assert_eq!(StudySettings::default().validate().unwrap(), p.validate().unwrap());
    }

    #[cfg(feature = "cli")]
    #[test]
    fn the_command_line_defaults_are_the_default_settings() {
        let s: StudySettings = crate::meta::settings::tests::parse_flags(&[]);
        assert_eq!(s, StudySettings::default());
    }
}
