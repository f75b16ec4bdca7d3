//! The decomposition of one (trial, ε) point: chunk means streamed into per-group sums,
//! then bias², variance and the correlation model per estimator, quantity and target.

use rayon::prelude::*;
use serde::Serialize;

use super::GROUPS;
use crate::error::{Result, invalid};
use crate::estimators::Estimator;
use crate::experiments::tabular_study::params::{Sweep, ValidStudy};
use crate::experiments::tabular_study::trials::TrialSetup;
use crate::numeric::dot;
use crate::rng::stream;
use crate::tabular::Critic;
use crate::tabular::oracle::{self, Bootstrap};

/// Stream name of the decomposition's data (the study's trials use 1, its sweeps 2).
const STREAM_BIASVAR: u64 = 3;

/// Gradient or Hessian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantity {
    /// ∇ (D entries).
    Gradient,
    /// ∇² (D² entries).
    Hessian,
}

/// What the estimate is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Target {
    /// Derivatives of J_T (horizon T, the estimator's bootstrap).
    #[serde(rename = "J_T")]
    FiniteHorizon,
    /// Derivatives of V (infinite horizon, the paper's oracle).
    #[serde(rename = "V")]
    Value,
}

impl Quantity {
    pub(super) fn name(self) -> &'static str {
        match self {
            Quantity::Gradient => "gradient",
            Quantity::Hessian => "hessian",
        }
    }
}

impl Target {
    pub(super) fn name(self) -> &'static str {
        match self {
            Target::FiniteHorizon => "J_T",
            Target::Value => "V",
        }
    }
}

/// The decomposition of one estimator × quantity × target, at one ε, for one trial (or
/// averaged over trials, `trial` = `None`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BiasVarRow {
    /// Estimator name.
    pub estimator: String,
    /// ε.
    pub eps: f64,
    /// Gradient or Hessian.
    pub quantity: Quantity,
    /// J_T or V.
    pub target: Target,
    /// Trial index (`None`: mean over trials).
    pub trial: Option<usize>,
    /// Trajectories M per trial.
    pub trajectories: usize,
    /// Trials with a detectable bias (1 or 0 for one trial).
    pub detectable_trials: usize,
    /// Unbiased Monte-Carlo estimate of bias² = ‖E\[ĥ\] − h‖² (noise when not detectable).
    pub bias2_estimate: f64,
    /// Monte-Carlo standard error of `bias2_estimate`.
    pub bias2_se: f64,
    /// Whether `bias2_estimate` > 2 `bias2_se`.
    pub bias_detectable: bool,
    /// Upper bound max(bias², 0) + 2 s.e.
    pub bias2_bound: f64,
    /// RMS Monte-Carlo error √(σ²/M) of the estimated bias vector.
    pub bias_se: f64,
    /// σ² = tr Var(ĥ), per trajectory.
    pub variance: f64,
    /// Its Monte-Carlo standard error.
    pub variance_se: f64,
    /// bias² + σ²/N at each N of the N grid.
    pub mse: Vec<f64>,
    /// Parameters of the correlation prediction (for other N).
    #[serde(skip)]
    pub(super) corr_model: CorrModel,
}

/// ρ(N) = a / √(b + v/N) (see the module documentation), averaged over trials when several.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct CorrModel {
    /// Per trial: (⟨h_c, μ_c⟩/‖h_c‖, ‖μ_c‖², σ_c²).
    pub(super) terms: Vec<(f64, f64, f64)>,
}

impl CorrModel {
    pub(super) fn at(&self, n: f64) -> f64 {
        let k = self.terms.len() as f64;
        self.terms
            .iter()
            .map(|&(a, b, v)| a / (b.max(0.0) + v / n).sqrt().max(f64::MIN_POSITIVE))
            .sum::<f64>()
            / k
    }
}

impl BiasVarRow {
    /// bias² when detectable, `None` otherwise (then only [`Self::bias2_bound`] holds).
    pub fn bias2(&self) -> Option<f64> {
        self.bias_detectable.then_some(self.bias2_estimate)
    }

    /// The bias as text: the estimate, or "not detectable (≤ bound)".
    pub fn bias2_text(&self) -> String {
        match self.bias2() {
            Some(b) => format!("{b:.3e} ± {:.1e}", self.bias2_se),
            None => format!("not detectable (≤ {:.1e})", self.bias2_bound),
        }
    }

    /// Predicted correlation at any N.
    pub fn predicted_corr(&self, n: f64) -> f64 {
        self.corr_model.at(n)
    }
}

/// Per-group streaming sums of one quantity's chunk means.
#[derive(Clone, Debug)]
pub(super) struct GroupSums {
    /// Σ d_k, d_k = m_k − h_V.
    sum: Vec<f64>,
    /// Σ ‖d_k‖².
    sq: f64,
    /// Σ ‖d_k − mean(d_k) 1‖².
    sq_centred: f64,
    /// Chunks added.
    chunks: usize,
}

impl GroupSums {
    pub(super) fn new(n: usize) -> Self {
        Self { sum: vec![0.0; n], sq: 0.0, sq_centred: 0.0, chunks: 0 }
    }

    pub(super) fn add(&mut self, mean: &[f64], shift: &[f64]) {
        let (mut sq, mut tot) = (0.0, 0.0);
        for ((s, m), h) in self.sum.iter_mut().zip(mean).zip(shift) {
            let d = m - h;
            *s += d;
            sq += d * d;
            tot += d;
        }
        self.sq += sq;
        self.sq_centred += sq - tot * tot / mean.len() as f64;
        self.chunks += 1;
    }
}

fn centred(v: &[f64]) -> Vec<f64> {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| x - m).collect()
}

/// Mean and standard error of a sample.
pub(super) fn mean_se(xs: &[f64]) -> (f64, f64) {
    let (m, _, se) = crate::experiments::metrics::mean_std_se(xs);
    (m, se)
}

/// The decomposition of one estimator × quantity at one point, for every target.
pub(super) struct Decomposition<'a> {
    groups: &'a [GroupSums],
    /// h_V, the shift of the sums.
    shift: &'a [f64],
    /// Trajectories per chunk.
    chunk: usize,
}

/// Numbers of one decomposition against one target.
pub(super) struct Parts {
    bias2: f64,
    bias2_se: f64,
    bias_se: f64,
    variance: f64,
    variance_se: f64,
    corr: (f64, f64, f64),
}

impl Decomposition<'_> {
    pub(super) fn parts(&self, target: &[f64]) -> Parts {
        let g = self.groups.len();
        let kg = self.groups[0].chunks;
        let k = (g * kg) as f64;
        let c = self.chunk as f64;
        let m = k * c;
        let n = self.shift.len();
        let mut dbar = vec![0.0; n];
        for gr in self.groups {
            dbar.iter_mut().zip(&gr.sum).for_each(|(a, b)| *a += b / k);
        }
        let sq: f64 = self.groups.iter().map(|gr| gr.sq).sum();
        let sq_c: f64 = self.groups.iter().map(|gr| gr.sq_centred).sum();
        let dbar_sq = dot(&dbar, &dbar);
        let dbar_sum: f64 = dbar.iter().sum();
        let variance = c * (sq - k * dbar_sq) / (k - 1.0);
        let variance_c = c * (sq_c - k * (dbar_sq - dbar_sum * dbar_sum / n as f64)) / (k - 1.0);
        let within: Vec<f64> = self
            .groups
            .iter()
            .map(|gr| {
                let s2 = dot(&gr.sum, &gr.sum);
                c * (gr.sq - s2 / kg as f64) / (kg as f64 - 1.0)
            })
            .collect();
        let variance_se = mean_se(&within).1;
        // Bias vector b̂ = d̄ + Δ, Δ = h_V − h.
        let b: Vec<f64> = dbar.iter().zip(self.shift).zip(target).map(|((d, hv), h)| d + hv - h).collect();
        let bias2 = dot(&b, &b) - variance / m;
        // Group-mean deviations δ_g = ḡ_g − d̄ (target-free) and their Gram matrix.
        let dev: Vec<Vec<f64>> = self
            .groups
            .iter()
            .map(|gr| gr.sum.iter().zip(&dbar).map(|(s, d)| s / kg as f64 - d).collect())
            .collect();
        let mut gram = vec![0.0; g * g];
        for i in 0..g {
            for j in 0..=i {
                let x = dot(&dev[i], &dev[j]);
                gram[i * g + j] = x;
                gram[j * g + i] = x;
            }
        }
        let proj: f64 = dev.iter().map(|d| dot(&b, d).powi(2)).sum::<f64>() / (g as f64 - 1.0);
        let (mut tr_c2, mut pairs) = (0.0, 0usize);
        for i in 0..g {
            for j in i + 1..g {
                for p in 0..g {
                    for q in p + 1..g {
                        if p == i || p == j || q == i || q == j {
                            continue;
                        }
                        let x = gram[i * g + p] - gram[i * g + q] - gram[j * g + p] + gram[j * g + q];
                        tr_c2 += x * x / 4.0;
                        pairs += 1;
                    }
                }
            }
        }
        let tr_c2 = if pairs > 0 { tr_c2 / pairs as f64 } else { variance * variance / (m * m) };
        let gf = g as f64;
        let bias2_se = (4.0 * proj / gf + 2.0 * tr_c2 / (gf * gf)).sqrt();
        // Correlation model.
        let hc = centred(target);
        let mu: Vec<f64> = dbar.iter().zip(self.shift).map(|(d, hv)| d + hv).collect();
        let muc = centred(&mu);
        let hn = dot(&hc, &hc).sqrt().max(f64::MIN_POSITIVE);
        let corr = (dot(&hc, &muc) / hn, dot(&muc, &muc) - variance_c / m, variance_c);
        Parts { bias2, bias2_se, bias_se: (variance / m).sqrt(), variance, variance_se, corr }
    }
}

impl ValidStudy {
    /// The ε values of the decomposition: the ε grid, plus the N sweep's ε (for the
    /// predictions of Fig. 1 c) when it is not on the grid.
    pub fn biasvar_eps(&self) -> Vec<f64> {
        let mut e = self.eps.clone();
        if !e.contains(&self.n_sweep_eps) {
            e.push(self.n_sweep_eps);
        }
        e
    }

    /// Chunks per (trial, ε) point.
    pub(super) fn biasvar_chunks(&self) -> usize {
        self.biasvar_trajectories / self.biasvar_chunk
    }

    /// Work units (chunks) of the decomposition, for progress reporting (0 unless the sweep
    /// is `biasvar`).
    pub fn biasvar_units(&self) -> usize {
        if self.sweep == Sweep::Biasvar {
            self.trials * self.biasvar_eps().len() * self.biasvar_chunks()
        } else {
            0
        }
    }

    /// Runs the decomposition for every trial, ε, estimator, quantity and target, calling
    /// `progress` after each chunk. Rows are in a fixed order: trial, ε, estimator, quantity,
    /// target.
    pub fn run_biasvar(&self, progress: &(dyn Fn() + Sync)) -> Result<Vec<BiasVarRow>> {
        let eps = self.biasvar_eps();
        let points: Vec<(usize, usize)> =
            (0..self.trials).flat_map(|t| (0..eps.len()).map(move |e| (t, e))).collect();
        let results: Vec<Result<Vec<BiasVarRow>>> = points
            .into_par_iter()
            .map(|(trial, e)| {
                let setup = TrialSetup::draw(self, trial);
                self.biasvar_point(&setup, trial, e, eps[e], progress)
            })
            .collect();
        let mut rows = Vec::new();
        for r in results {
            rows.extend(r?);
        }
        Ok(rows)
    }

    /// The decomposition at one (trial, ε) point.
    pub fn biasvar_point(
        &self,
        setup: &TrialSetup,
        trial: usize,
        eps_index: usize,
        eps: f64,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Vec<BiasVarRow>> {
        let policy = setup.target(eps);
        let exact = oracle::softmax_derivatives(&setup.mdp, &policy);
        let critic = match &setup.critic {
            Critic::StateValues(v) => v.as_slice(),
            Critic::ActionValues(_) => return Err(invalid("critic", "the study uses a state-value critic")),
        };
        let finite = |b| oracle::finite_horizon_softmax_derivatives(&setup.mdp, &policy, self.horizon, b);
        let (jt_zero, jt_critic) = (finite(Bootstrap::Zero), finite(Bootstrap::StateValues(critic)));
        let (d, chunks) = (exact.gradient.len(), self.biasvar_chunks());
        let per_group = chunks / GROUPS;
        let groups: Vec<Result<Vec<[GroupSums; 2]>>> = (0..GROUPS)
            .into_par_iter()
            .map(|g| {
                let mut sums: Vec<[GroupSums; 2]> =
                    self.estimators.iter().map(|_| [GroupSums::new(d), GroupSums::new(d * d)]).collect();
                for k in g * per_group..(g + 1) * per_group {
                    crate::stop::check()?;
                    let mut rng =
                        stream(self.seed, &[STREAM_BIASVAR, trial as u64, eps_index as u64, k as u64]);
                    let data = setup.sample(self.biasvar_chunk, self.horizon, &mut rng);
                    for (&e, s) in self.estimators.iter().zip(&mut sums) {
                        let est = setup.estimate(e, &data, &policy)?;
                        s[0].add(&est.gradient, &exact.gradient);
                        s[1].add(&est.hessian, &exact.hessian);
                    }
                    progress();
                }
                Ok(sums)
            })
            .collect();
        let groups = groups.into_iter().collect::<Result<Vec<_>>>()?;
        let mut rows = Vec::new();
        for (i, &e) in self.estimators.iter().enumerate() {
            let jt = if e.bootstraps() { &jt_critic } else { &jt_zero };
            for (q, quantity) in [Quantity::Gradient, Quantity::Hessian].into_iter().enumerate() {
                let sums: Vec<GroupSums> = groups.iter().map(|g| g[i][q].clone()).collect();
                let (shift, jt_h) = match quantity {
                    Quantity::Gradient => (&exact.gradient, &jt.gradient),
                    Quantity::Hessian => (&exact.hessian, &jt.hessian),
                };
                let dec = Decomposition { groups: &sums, shift, chunk: self.biasvar_chunk };
                for (target, h) in [(Target::FiniteHorizon, jt_h), (Target::Value, shift)] {
                    rows.push(self.row(e, eps, quantity, target, Some(trial), dec.parts(h)));
                }
            }
        }
        Ok(rows)
    }

    pub(super) fn row(
        &self,
        e: Estimator,
        eps: f64,
        quantity: Quantity,
        target: Target,
        trial: Option<usize>,
        p: Parts,
    ) -> BiasVarRow {
        let detectable = p.bias2 > 2.0 * p.bias2_se;
        BiasVarRow {
            estimator: e.name(),
            eps,
            quantity,
            target,
            trial,
            trajectories: self.biasvar_trajectories,
            detectable_trials: usize::from(detectable),
            bias2_estimate: p.bias2,
            bias2_se: p.bias2_se,
            bias_detectable: detectable,
            bias2_bound: p.bias2.max(0.0) + 2.0 * p.bias2_se,
            bias_se: p.bias_se,
            variance: p.variance,
            variance_se: p.variance_se,
            mse: self.n_grid.iter().map(|&n| p.bias2 + p.variance / n as f64).collect(),
            corr_model: CorrModel { terms: vec![p.corr] },
        }
    }
}
