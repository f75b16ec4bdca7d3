//! The tabular study of the paper's Fig. 1 (a–c), plus meta-gradient accuracy.
//!
//! A *trial* draws a random MDP (docs/theory.md#tabular-benchmark), a deterministic policy π_d and
//! the critic noise; within a trial every grid point (ε or N) draws its own data from μ. The target
//! policy is π = ε π_d + (1 − ε) μ with θ = log π, the behaviour μ is uniform, the critic
//! is V̂(x) = V^μ(x) + ξ(x)·s‖V^μ‖₂/|X| with ξ ~ N(0, 1) and s = `critic_noise`. The
//! accuracy of an estimate is the Pearson correlation between the flattened exact
//! derivative (infinite-horizon oracle) and the estimate averaged over N trajectories.
//!
//! The meta sweep compares the Alg. 1 meta-gradient (I + ηĤ)ĝ' with the exact
//! ∇_θ V(θ + η∇V(θ)) = (I + η∇²V(θ)) ∇V(θ') (see [`MetaRow`]).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::first_seen;
use super::metrics::{mean_std_se, pearson, relative_error};
use crate::error::{Result, invalid};
use crate::estimators::{BatchObjective, Estimator};
use crate::limits::Limits;
use crate::policy::TabularSoftmax;
use crate::rng::stream;
use crate::tabular::oracle::{self, Derivatives};
use crate::tabular::{Critic, RandomMdpParams, TabularBatch, TabularMdp, Trajectory};

/// Which sweeps to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
    fn default() -> Self {
        Self {
            sweep: Sweep::All,
            eps: vec![0.0, 0.2, 0.5, 0.8],
            n: 1000,
            n_grid: vec![10, 30, 100, 300, 1000, 3000],
            n_sweep_eps: 0.5,
            trials: 10,
            seed: 0,
            mdp: RandomMdpParams::default(),
            horizon: 20,
            critic_noise: 1.0,
            estimators: Estimator::paper_set(),
            eta: DEFAULT_ETA,
            biasvar_trajectories: DEFAULT_BIASVAR_TRAJECTORIES,
            biasvar_chunk: DEFAULT_BIASVAR_CHUNK,
        }
    }
}

/// The study's settings under the command line's names, with its defaults (one source:
/// the `#[arg]` attributes). The command line flattens this struct; the Python package
/// fills it from keyword arguments (unknown names are refused). [`StudySettings::validate`]
/// turns it into a [`ValidStudy`].
#[derive(clap::Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudySettings {
    /// Which sweep: eps (Fig. 1 a, b), n (Fig. 1 c), meta (meta-gradients), all (these
    /// three) or biasvar (bias–variance decomposition, with the n sweep it predicts).
    #[arg(long, value_enum, default_value_t = Sweep::All)]
    pub sweep: Sweep,
    /// ε grid (comma-separated) of the eps and meta sweeps.
    #[arg(long, value_delimiter = ',', default_value = "0,0.2,0.5,0.8")]
    pub eps: Vec<f64>,
    /// Trajectories per estimate in the eps and meta sweeps.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// N grid (comma-separated) of the n sweep.
    #[arg(long, value_delimiter = ',', default_value = "10,30,100,300,1000,3000")]
    pub n_grid: Vec<usize>,
    /// ε of the n sweep.
    #[arg(long, default_value_t = 0.5)]
    pub n_sweep_eps: f64,
    /// Independent trials (new MDP, π_d, critic noise and data) per grid point.
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of states |X|.
    #[arg(long, default_value_t = 20)]
    pub states: usize,
    /// Number of actions |A|.
    #[arg(long, default_value_t = 5)]
    pub actions: usize,
    /// Discount γ.
    #[arg(long, default_value_t = 0.8)]
    pub gamma: f64,
    /// Transitions per trajectory T.
    #[arg(long, default_value_t = 20)]
    pub horizon: usize,
    /// Dirichlet concentration of the transition rows.
    #[arg(long, default_value_t = 0.001)]
    pub dirichlet: f64,
    /// Scale of the critic noise (1 = the tabular benchmark's: N(0,1)·‖V^μ‖₂/|X|).
    #[arg(long, default_value_t = 1.0)]
    pub critic_noise: f64,
    /// Comma-separated estimators: is, dr, dr-trunc, taypo-K (K ≥ 1), lvc, maml.
    #[arg(long, default_value = "is,dr,dr-trunc,taypo-1,taypo-2")]
    pub estimators: String,
    /// Truncation level ρ̄ = c̄ of dr-trunc.
    #[arg(long, default_value_t = 1.0)]
    pub truncation: f64,
    /// Inner step size η of the meta sweep.
    #[arg(long, default_value_t = DEFAULT_ETA)]
    pub eta: f64,
    /// Biasvar sweep: trajectories M per (trial, ε) point (a multiple of 20 × --biasvar-chunk).
    #[arg(long, default_value_t = DEFAULT_BIASVAR_TRAJECTORIES)]
    pub biasvar_trajectories: usize,
    /// Biasvar sweep: trajectories per streamed chunk.
    #[arg(long, default_value_t = DEFAULT_BIASVAR_CHUNK)]
    pub biasvar_chunk: usize,
    /// Largest parameter count D = states × actions accepted (D×D Hessians per estimate).
    #[arg(long, default_value_t = crate::limits::DEFAULT_MAX_PARAMS)]
    pub max_params: usize,
    /// Largest number of steps N·T of one estimate's batch (for --n and every --n-grid value).
    #[arg(long, default_value_t = crate::limits::DEFAULT_MAX_STEPS)]
    pub max_steps: usize,
}

impl Default for StudySettings {
    fn default() -> Self {
        super::command_line_defaults()
    }
}

impl StudySettings {
    /// Checks every setting once.
    pub fn validate(&self) -> Result<ValidStudy> {
        StudyParams {
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
        }
        .validate_with(&Limits {
            max_params: self.max_params,
            max_steps: self.max_steps,
            ..Limits::default()
        })
    }
}

/// Everything a study run produces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StudyOutput {
    /// One row per sweep × estimator × grid point × trial.
    pub rows: Vec<TrialRow>,
    /// Mean and standard error over trials.
    pub summary: Vec<SummaryRow>,
    /// The biasvar sweep's results (with `--sweep biasvar`).
    pub biasvar: Option<super::biasvar::BiasVarOutput>,
}

impl ValidStudy {
    /// Runs the study's sweeps ([`Self::run`], and [`Self::run_biasvar`] for the biasvar
    /// sweep) and summarises them, calling `progress` after each of [`Self::n_jobs`] items.
    pub fn run_all(&self, progress: &(dyn Fn() + Sync)) -> Result<StudyOutput> {
        let rows = self.run(progress)?;
        let summary = summarise(&rows);
        let biasvar = if self.sweep == Sweep::Biasvar {
            let bv = self.run_biasvar(progress)?;
            Some(super::biasvar::BiasVarOutput::new(self, bv, &summary))
        } else {
            None
        };
        Ok(StudyOutput { rows, summary, biasvar })
    }
}

/// Writes a study's files to `out`: `trials.csv`, `summary.csv`, `config.json` (every
/// setting, the seed, version and commit), the figures of [`plot_summary`] and, for the
/// biasvar sweep, those of [`super::biasvar::BiasVarOutput::write`]. Returns the figures'
/// stems.
pub fn write_results(out: &std::path::Path, study: &ValidStudy, output: &StudyOutput) -> Result<Vec<String>> {
    use super::{RunConfig, prepare_output_dir, write_csv, write_json};
    prepare_output_dir(out)?;
    write_csv(&out.join("trials.csv"), &output.rows)?;
    write_csv(&out.join("summary.csv"), &output.summary)?;
    write_json(&out.join("config.json"), &RunConfig::new("tabular", &**study))?;
    let mut figures = plot_summary(&output.summary, out)?;
    if let Some(bv) = &output.biasvar {
        figures.extend(bv.write(out, study)?);
    }
    Ok(figures)
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
            use super::biasvar::GROUPS;
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

/// One trial's MDP, critic and deterministic policy.
#[derive(Clone, Debug)]
pub struct TrialSetup {
    /// The MDP.
    pub mdp: TabularMdp,
    /// μ (uniform), row-major |X|×|A|.
    pub behaviour: Vec<f64>,
    /// π_d's action per state.
    pub deterministic: Vec<usize>,
    /// The noisy state-value critic.
    pub critic: Critic,
}

/// Stream names (first element of every random stream's path).
const STREAM_TRIAL: u64 = 1;
const STREAM_DATA: u64 = 2;

impl TrialSetup {
    /// Draws trial `trial` of the study.
    pub fn draw(study: &StudyParams, trial: usize) -> Self {
        let mut rng = stream(study.seed, &[STREAM_TRIAL, trial as u64]);
        let mdp = TabularMdp::random(&study.mdp, &mut rng);
        let (ns, na) = (mdp.n_states(), mdp.n_actions());
        let behaviour = vec![1.0 / na as f64; ns * na];
        let deterministic = (0..ns).map(|_| rng.random_range(0..na)).collect();
        let v_mu = oracle::evaluate(&mdp, &behaviour).v;
        let norm = v_mu.iter().map(|v| v * v).sum::<f64>().sqrt() / ns as f64;
        let critic = Critic::StateValues(
            v_mu.iter()
                .map(|v| {
                    let xi: f64 = StandardNormal.sample(&mut rng);
                    v + xi * norm * study.critic_noise
                })
                .collect(),
        );
        Self { mdp, behaviour, deterministic, critic }
    }

    /// π = ε π_d + (1 − ε) μ as a softmax with θ = log π (zero probabilities, at ε = 1,
    /// get the smallest normal logit, so π stays exactly representable).
    pub fn target(&self, eps: f64) -> TabularSoftmax {
        let (ns, na) = (self.mdp.n_states(), self.mdp.n_actions());
        let theta = (0..ns * na)
            .map(|i| {
                let det = if self.deterministic[i / na] == i % na { 1.0 } else { 0.0 };
                (eps * det + (1.0 - eps) * self.behaviour[i]).max(f64::MIN_POSITIVE).ln()
            })
            .collect();
        TabularSoftmax::new(ns, na, theta)
    }

    /// N trajectories from μ.
    pub fn sample(&self, n: usize, horizon: usize, rng: &mut ChaCha8Rng) -> Vec<Trajectory> {
        (0..n).map(|_| self.mdp.sample_trajectory(&self.behaviour, horizon, rng)).collect()
    }

    /// Mean estimate (with Hessian) of `estimator` over `data` at `policy`.
    pub fn estimate(
        &self,
        estimator: Estimator,
        data: &[Trajectory],
        policy: &TabularSoftmax,
    ) -> Result<Derivatives> {
        TabularBatch::new(data, &self.behaviour, self.mdp.n_actions()).estimate(
            estimator,
            self.mdp.gamma(),
            policy,
            Some(&self.critic),
            true,
        )
    }
}

/// One row of `trials.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRow {
    /// `eps`, `n` or `meta`.
    pub sweep: String,
    /// Estimator name.
    pub estimator: String,
    /// ε.
    pub eps: f64,
    /// N.
    pub n: usize,
    /// Trial index.
    pub trial: usize,
    /// Correlation of the gradient estimate with ∇V.
    pub grad_corr: f64,
    /// Correlation of the Hessian estimate with ∇²V.
    pub hess_corr: f64,
    /// Meta sweep: correlation of the Alg. 1 meta-gradient with the exact one.
    pub metagrad_corr: Option<f64>,
    /// Meta sweep: the same with the exact inner step θ' = θ + η∇V (no plug-in error).
    pub metagrad_exact_step_corr: Option<f64>,
    /// Meta sweep: ĝ' from the pre-update data instead of fresh data (paper App. A).
    pub metagrad_shared_data_corr: Option<f64>,
    /// Meta sweep: relative error ‖m̂ − m‖/‖m‖ of the Alg. 1 meta-gradient.
    pub metagrad_rel_err: Option<f64>,
    /// Meta sweep: ‖ηHg'‖/‖g'‖, how much the exact Hessian term weighs.
    pub hessian_term_ratio: Option<f64>,
}

/// Meta-gradient results of one estimator in one trial.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaRow {
    /// Alg. 1 estimate vs exact.
    pub corr: f64,
    /// With the exact θ'.
    pub exact_step_corr: f64,
    /// With ĝ' on the inner data.
    pub shared_data_corr: f64,
    /// Relative error of the Alg. 1 estimate.
    pub rel_err: f64,
}

/// The exact meta-gradient (I + η∇²V(θ))∇V(θ') at θ' = θ + η∇V(θ), and ‖ηH g'‖/‖g'‖.
pub fn exact_meta_gradient(mdp: &TabularMdp, policy: &TabularSoftmax, eta: f64) -> (Vec<f64>, f64) {
    let ex = oracle::softmax_derivatives(mdp, policy);
    let post = step(policy, &ex.gradient, eta);
    let g_post = oracle::softmax_derivatives(mdp, &post).gradient;
    let hg = matvec(&ex.hessian, &g_post);
    let meta: Vec<f64> = g_post.iter().zip(&hg).map(|(g, h)| g + eta * h).collect();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let ratio = eta.abs() * norm(&hg) / norm(&g_post).max(f64::MIN_POSITIVE);
    (meta, ratio)
}

fn step(policy: &TabularSoftmax, direction: &[f64], eta: f64) -> TabularSoftmax {
    use crate::policy::Policy;
    let theta: Vec<f64> = policy.params().iter().zip(direction).map(|(t, g)| t + eta * g).collect();
    TabularSoftmax::new(policy.n_states(), policy.n_actions(), theta)
}

fn matvec(m: &[f64], v: &[f64]) -> Vec<f64> {
    let d = v.len();
    (0..d).map(|i| m[i * d..(i + 1) * d].iter().zip(v).map(|(a, b)| a * b).sum()).collect()
}

/// Alg. 1's meta-gradient from `estimator` on inner data `pre`, with the post-update
/// gradient ĝ' estimated by DR (unbiased off-policy) at `post_policy` on `post` data:
/// returns (I + ηĤ)ĝ' using a Hessian-vector product of the inner objective.
fn meta_estimate(
    setup: &TrialSetup,
    estimator: Estimator,
    policy: &TabularSoftmax,
    pre: &[Trajectory],
    post_policy: &TabularSoftmax,
    post: &[Trajectory],
    eta: f64,
) -> Result<Vec<f64>> {
    let na = setup.mdp.n_actions();
    let g = setup.mdp.gamma();
    let post_batch = TabularBatch::new(post, &setup.behaviour, na);
    let g_post = post_batch.estimate(Estimator::Dr, g, post_policy, Some(&setup.critic), false)?.gradient;
    let pre_batch = TabularBatch::new(pre, &setup.behaviour, na);
    let prepared = pre_batch.prepare(estimator, g, Some(&setup.critic))?;
    let rows = pre_batch.rows(policy, &prepared, Some(&setup.critic));
    let hv = BatchObjective::new(&prepared, &rows)?.hvp(&g_post);
    Ok(g_post.iter().zip(&hv).map(|(a, b)| a + eta * b).collect())
}

/// Which grid point a job computes.
#[derive(Clone, Copy, Debug)]
struct Job {
    sweep: Sweep,
    point: usize,
    trial: usize,
}

impl ValidStudy {
    fn jobs(&self) -> Vec<Job> {
        let sweeps: &[Sweep] = match self.sweep {
            Sweep::All => &[Sweep::Eps, Sweep::N, Sweep::Meta],
            Sweep::Eps => &[Sweep::Eps],
            Sweep::N | Sweep::Biasvar => &[Sweep::N],
            Sweep::Meta => &[Sweep::Meta],
        };
        let mut jobs = Vec::new();
        for &sweep in sweeps {
            let points = if sweep == Sweep::N { self.n_grid.len() } else { self.eps.len() };
            for point in 0..points {
                for trial in 0..self.trials {
                    jobs.push(Job { sweep, point, trial });
                }
            }
        }
        jobs
    }

    /// Number of work items (for progress reporting): grid points × trials, plus the
    /// biasvar sweep's chunks.
    pub fn n_jobs(&self) -> usize {
        self.jobs().len() + self.biasvar_units()
    }

    fn run_job(&self, job: Job, setup: &TrialSetup) -> Result<Vec<TrialRow>> {
        let (eps, n) = match job.sweep {
            Sweep::N => (self.n_sweep_eps, self.n_grid[job.point]),
            _ => (self.eps[job.point], self.n),
        };
        let sweep_id = match job.sweep {
            Sweep::Eps => 0,
            Sweep::N => 1,
            Sweep::Meta => 2,
            Sweep::All | Sweep::Biasvar => unreachable!("expanded in jobs()"),
        };
        let mut rng = stream(self.seed, &[STREAM_DATA, job.trial as u64, sweep_id, job.point as u64]);
        let policy = setup.target(eps);
        let exact = oracle::softmax_derivatives(&setup.mdp, &policy);
        let data = setup.sample(n, self.horizon, &mut rng);
        let meta_setup = if job.sweep == Sweep::Meta {
            let post_data = setup.sample(n, self.horizon, &mut rng);
            let (meta, ratio) = exact_meta_gradient(&setup.mdp, &policy, self.eta);
            let exact_post = step(&policy, &exact.gradient, self.eta);
            Some((post_data, meta, ratio, exact_post))
        } else {
            None
        };
        let mut rows = Vec::with_capacity(self.estimators.len());
        for &e in &self.estimators {
            let est = setup.estimate(e, &data, &policy)?;
            let mut row = TrialRow {
                sweep: format!("{:?}", job.sweep).to_lowercase(),
                estimator: e.name(),
                eps,
                n,
                trial: job.trial,
                grad_corr: pearson(&exact.gradient, &est.gradient),
                hess_corr: pearson(&exact.hessian, &est.hessian),
                metagrad_corr: None,
                metagrad_exact_step_corr: None,
                metagrad_shared_data_corr: None,
                metagrad_rel_err: None,
                hessian_term_ratio: None,
            };
            if let Some((post_data, meta, ratio, exact_post)) = &meta_setup {
                let post = step(&policy, &est.gradient, self.eta);
                let m = meta_estimate(setup, e, &policy, &data, &post, post_data, self.eta)?;
                let m_exact_step = meta_estimate(setup, e, &policy, &data, exact_post, post_data, self.eta)?;
                let m_shared = meta_estimate(setup, e, &policy, &data, &post, &data, self.eta)?;
                row.metagrad_corr = Some(pearson(meta, &m));
                row.metagrad_exact_step_corr = Some(pearson(meta, &m_exact_step));
                row.metagrad_shared_data_corr = Some(pearson(meta, &m_shared));
                row.metagrad_rel_err = Some(relative_error(meta, &m));
                row.hessian_term_ratio = Some(*ratio);
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Runs every job (in parallel; results in a fixed order), calling `progress` after
    /// each one.
    pub fn run(&self, progress: &(dyn Fn() + Sync)) -> Result<Vec<TrialRow>> {
        let setups: Vec<TrialSetup> =
            (0..self.trials).into_par_iter().map(|t| TrialSetup::draw(self, t)).collect();
        let results: Vec<Result<Vec<TrialRow>>> = self
            .jobs()
            .into_par_iter()
            .map(|job| {
                crate::stop::check()?;
                let r = self.run_job(job, &setups[job.trial]);
                progress();
                r
            })
            .collect();
        let mut rows = Vec::new();
        for r in results {
            rows.extend(r?);
        }
        Ok(rows)
    }
}

/// One row of `summary.csv`: mean and standard error over trials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Sweep.
    pub sweep: String,
    /// Estimator.
    pub estimator: String,
    /// ε.
    pub eps: f64,
    /// N.
    pub n: usize,
    /// Number of trials.
    pub trials: usize,
    /// Mean gradient correlation.
    pub grad_mean: f64,
    /// Its standard error.
    pub grad_se: f64,
    /// Mean Hessian correlation.
    pub hess_mean: f64,
    /// Its standard error.
    pub hess_se: f64,
    /// Mean meta-gradient correlation (meta sweep).
    pub metagrad_mean: Option<f64>,
    /// Its standard error.
    pub metagrad_se: Option<f64>,
    /// Mean with the exact inner step.
    pub metagrad_exact_step_mean: Option<f64>,
    /// Mean with ĝ' on the inner data.
    pub metagrad_shared_data_mean: Option<f64>,
    /// Mean relative error of the meta-gradient.
    pub metagrad_rel_err_mean: Option<f64>,
    /// Standard deviation of the gradient correlation.
    pub grad_std: f64,
    /// Standard deviation of the Hessian correlation.
    pub hess_std: f64,
}

/// Groups trial rows by (sweep, estimator, ε, N), in first-appearance order.
pub fn summarise(rows: &[TrialRow]) -> Vec<SummaryRow> {
    first_seen(rows.iter().map(|r| (r.sweep.clone(), r.estimator.clone(), r.eps, r.n)))
        .into_iter()
        .map(|(sweep, estimator, eps, n)| {
            let group: Vec<&TrialRow> = rows
                .iter()
                .filter(|r| r.sweep == sweep && r.estimator == estimator && r.eps == eps && r.n == n)
                .collect();
            let col = |f: &dyn Fn(&TrialRow) -> f64| group.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let opt = |f: &dyn Fn(&TrialRow) -> Option<f64>| -> Option<Vec<f64>> {
                group.iter().map(|r| f(r)).collect()
            };
            let (gm, gsd, gse) = mean_std_se(&col(&|r| r.grad_corr));
            let (hm, hsd, hse) = mean_std_se(&col(&|r| r.hess_corr));
            let meta = opt(&|r| r.metagrad_corr).map(|v| mean_std_se(&v));
            SummaryRow {
                sweep,
                estimator,
                eps,
                n,
                trials: group.len(),
                grad_mean: gm,
                grad_se: gse,
                hess_mean: hm,
                hess_se: hse,
                metagrad_mean: meta.map(|m| m.0),
                metagrad_se: meta.map(|m| m.2),
                metagrad_exact_step_mean: opt(&|r| r.metagrad_exact_step_corr).map(|v| mean_std_se(&v).0),
                metagrad_shared_data_mean: opt(&|r| r.metagrad_shared_data_corr).map(|v| mean_std_se(&v).0),
                metagrad_rel_err_mean: opt(&|r| r.metagrad_rel_err).map(|v| mean_std_se(&v).0),
                grad_std: gsd,
                hess_std: hsd,
            }
        })
        .collect()
}

/// The study's figures from its summary: `fig1a_gradient`, `fig1b_hessian` (correlation vs
/// ε), `fig1c_n_sweep` (Hessian correlation vs N, log x) and `fig_meta_gradient`
/// (meta-gradient correlation vs ε), one line per estimator with standard-error bars,
/// each as PNG and SVG in `dir`. Figures whose sweep did not run are skipped.
pub fn plot_summary(summary: &[SummaryRow], dir: &std::path::Path) -> Result<Vec<String>> {
    use crate::plot::{Figure, Series, save_or_skip};
    type Pick = fn(&SummaryRow) -> Option<(f64, f64)>;
    let specs: [(&str, &str, &str, &str, bool, Pick); 4] = [
        (
            "fig1a_gradient",
            "eps",
            "Gradient estimates vs off-policyness (N fixed)",
            "off-policyness ε (π = ε π_d + (1 − ε) μ)",
            false,
            |r| Some((r.grad_mean, r.grad_se)),
        ),
        (
            "fig1b_hessian",
            "eps",
            "Hessian estimates vs off-policyness (N fixed)",
            "off-policyness ε (π = ε π_d + (1 − ε) μ)",
            false,
            |r| Some((r.hess_mean, r.hess_se)),
        ),
        ("fig1c_n_sweep", "n", "Hessian estimates vs sample size (ε fixed)", "trajectories N", true, |r| {
            Some((r.hess_mean, r.hess_se))
        }),
        (
            "fig_meta_gradient",
            "meta",
            "Meta-gradient estimates (I + ηĤ)ĝ' vs off-policyness",
            "ε",
            false,
            |r| r.metagrad_mean.zip(r.metagrad_se),
        ),
    ];
    let mut written = Vec::new();
    for (stem, sweep, title, x_label, log_x, pick) in specs {
        let rows: Vec<&SummaryRow> = summary.iter().filter(|r| r.sweep == sweep).collect();
        if rows.is_empty() {
            continue;
        }
        let names = first_seen(rows.iter().map(|r| r.estimator.as_str()));
        let series = names
            .iter()
            .map(|name| {
                let pts: Vec<(f64, f64, f64)> = rows
                    .iter()
                    .filter(|r| r.estimator == *name)
                    .filter_map(|r| {
                        pick(r).map(|(m, se)| (if sweep == "n" { r.n as f64 } else { r.eps }, m, se))
                    })
                    .collect();
                Series {
                    name: name.to_string(),
                    x: pts.iter().map(|p| p.0).collect(),
                    y: pts.iter().map(|p| p.1).collect(),
                    err: Some(pts.iter().map(|p| p.2).collect()),
                }
            })
            .collect();
        let fig = Figure {
            title: title.into(),
            x_label: x_label.into(),
            y_label: "correlation with the exact derivative".into(),
            log_x,
            series,
        };
        if save_or_skip(&fig, &dir.join(stem))? {
            written.push(stem.to_string());
        }
    }
    Ok(written)
}
