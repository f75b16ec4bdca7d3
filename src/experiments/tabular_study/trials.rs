//! One trial's MDP, critic and policies ([`TrialSetup`]), and the ε, N and meta sweeps over
//! trials ([`ValidStudy::run`]).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::params::{StudyParams, Sweep, ValidStudy};
use crate::error::Result;
use crate::estimators::{BatchObjective, Estimator};
use crate::experiments::metrics::{pearson, relative_error};
use crate::numeric::dot;
use crate::policy::TabularSoftmax;
use crate::rng::stream;
use crate::tabular::oracle::{self, Derivatives};
use crate::tabular::{Critic, TabularBatch, TabularMdp, Trajectory};

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
    (0..d).map(|i| dot(&m[i * d..(i + 1) * d], v)).collect()
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
