//! The bias–variance decomposition of every estimator against the exact derivatives
//! (`metagrad tabular --sweep biasvar`).
//!
//! For an estimator, a quantity (gradient or Hessian, flattened to n entries) and a target h
//! (the derivative of the finite-horizon value J_T that the estimator sees, or of the
//! infinite-horizon V of the paper's figures), the N-trajectory estimate ĥ_N (the mean of
//! the per-trajectory estimates ĥ) has
//!
//! MSE(N) = E‖ĥ_N − h‖² = ‖E\[ĥ\] − h‖² + tr Var(ĥ)/N = bias² + σ²/N.
//!
//! **Estimation.** Per (trial, ε) point, M trajectories from μ are drawn in K chunks of c
//! (M = Kc; chunk k from its own stream `[3, trial, ε index, k]`, so results do not depend
//! on the thread count) and every estimator's chunk mean m_k is computed by the library's
//! batch estimator, on the same data (common random numbers). The chunks form G = [`GROUPS`]
//! groups of K/G consecutive chunks. Only O(G·n) numbers are kept: per group the sum of
//! d_k = m_k − h_V and the sums of ‖d_k‖² (plain and entry-centred). With d̄ = Σ_k d_k/K,
//! Δ = h_V − h and b̂ = d̄ + Δ (the estimated bias vector):
//!
//! * σ̂² = c Σ_k ‖d_k − d̄‖²/(K − 1) (batch means: Var(m_k) = Σ/c), unbiased for σ² = tr Var(ĥ);
//!   its standard error from the spread of the G within-group estimates;
//! * bias² = ‖b̂‖² − σ̂²/M, unbiased for ‖E\[ĥ\] − h‖² (E‖b̂‖² = bias² + σ²/M);
//! * its Monte-Carlo standard error s from se² = 4 b̂ᵀΣb̂/M + 2 tr(Σ²)/M² (the variance of a
//!   squared norm of a mean), with b̂ᵀΣb̂/M = b̂ᵀCb̂/G and tr(Σ²)/M² = tr(C²)/G² where C =
//!   Σ/(M/G) is the covariance of a group mean ḡ_g: b̂ᵀCb̂ from the spread of b̂·ḡ_g, and
//!   tr(C²) = E[((ḡ_g − ḡ_h)·(ḡ_k − ḡ_l))²]/4 over disjoint pairs (exact for any
//!   distribution), both from the G×G Gram matrix of the group means;
//! * the bias is *detectable* when bias² > 2s; otherwise only the bound bias² ≤ max(bias², 0) + 2s
//!   is reported (column `bias2` is then empty);
//! * `bias_se` = √(σ̂²/M), the root-mean-square Monte-Carlo error of the bias vector b̂
//!   (it falls as 1/√M);
//! * the predicted Pearson correlation of Fig. 1 with the exact derivative h at N, for
//!   entry-centred vectors (subscript c): ρ(N) ≈ ⟨h_c, μ_c⟩ / (‖h_c‖ √(‖μ_c‖² + σ_c²/N)),
//!   μ = E\[ĥ\], with ‖μ_c‖² estimated without bias as ‖μ̂_c‖² − σ̂_c²/M (the noise of a mean
//!   of N trajectories concentrates on a sphere of radius σ_c/√N, nearly orthogonal to h).
//!
//! Targets: J_T is computed with the bootstrap the estimator uses (the critic V̂ at x_T; 0
//! for IS); IS and DR are unbiased for its derivatives, TayPO-K for those of order ≤ K
//! on-policy. The difference between the two targets is the truncation at T.

use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use super::tabular_study::{SummaryRow, TrialSetup, ValidStudy};
use crate::error::{Result, invalid};
use crate::estimators::Estimator;
use crate::rng::stream;
use crate::tabular::Critic;
use crate::tabular::oracle::{self, Bootstrap};

/// Number of groups of chunks behind the Monte-Carlo standard errors (fixed, so results do
/// not depend on the thread count). M must be a multiple of `GROUPS` × chunk size, with at
/// least two chunks per group.
pub const GROUPS: usize = 20;

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
    fn name(self) -> &'static str {
        match self {
            Quantity::Gradient => "gradient",
            Quantity::Hessian => "hessian",
        }
    }
}

impl Target {
    fn name(self) -> &'static str {
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
    corr_model: CorrModel,
}

/// ρ(N) = a / √(b + v/N) (see the module documentation), averaged over trials when several.
#[derive(Clone, Debug, PartialEq, Default)]
struct CorrModel {
    /// Per trial: (⟨h_c, μ_c⟩/‖h_c‖, ‖μ_c‖², σ_c²).
    terms: Vec<(f64, f64, f64)>,
}

impl CorrModel {
    fn at(&self, n: f64) -> f64 {
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
struct GroupSums {
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
    fn new(n: usize) -> Self {
        Self { sum: vec![0.0; n], sq: 0.0, sq_centred: 0.0, chunks: 0 }
    }

    fn add(&mut self, mean: &[f64], shift: &[f64]) {
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

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn centred(v: &[f64]) -> Vec<f64> {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| x - m).collect()
}

/// Mean and standard error of a sample.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let (m, _, se) = super::metrics::mean_std_se(xs);
    (m, se)
}

/// The decomposition of one estimator × quantity at one point, for every target.
struct Decomposition<'a> {
    groups: &'a [GroupSums],
    /// h_V, the shift of the sums.
    shift: &'a [f64],
    /// Trajectories per chunk.
    chunk: usize,
}

/// Numbers of one decomposition against one target.
struct Parts {
    bias2: f64,
    bias2_se: f64,
    bias_se: f64,
    variance: f64,
    variance_se: f64,
    corr: (f64, f64, f64),
}

impl Decomposition<'_> {
    fn parts(&self, target: &[f64]) -> Parts {
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
    fn biasvar_chunks(&self) -> usize {
        self.biasvar_trajectories / self.biasvar_chunk
    }

    /// Work units (chunks) of the decomposition, for progress reporting (0 unless the sweep
    /// is `biasvar`).
    pub fn biasvar_units(&self) -> usize {
        if self.sweep == super::tabular_study::Sweep::Biasvar {
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
            let jt = if e.needs_critic() { &jt_critic } else { &jt_zero };
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

    fn row(
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

/// Means over trials of the per-trial rows, per (estimator, ε, quantity, target) in
/// first-appearance order. Monte-Carlo standard errors combine as √(Σ s_t²)/trials; the
/// mean bias² is detectable when it exceeds twice its standard error.
pub fn summarise_biasvar(rows: &[BiasVarRow]) -> Vec<BiasVarRow> {
    let mut out: Vec<BiasVarRow> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let same = |a: &BiasVarRow, b: &BiasVarRow| {
        a.estimator == b.estimator && a.eps == b.eps && a.quantity == b.quantity && a.target == b.target
    };
    for r in rows {
        if let Some(i) = out.iter().position(|o| same(o, r)) {
            let o = &mut out[i];
            counts[i] += 1;
            o.detectable_trials += r.detectable_trials;
            o.bias2_estimate += r.bias2_estimate;
            o.bias2_se += r.bias2_se.powi(2);
            o.bias_se += r.bias_se.powi(2);
            o.variance += r.variance;
            o.variance_se += r.variance_se.powi(2);
            o.mse.iter_mut().zip(&r.mse).for_each(|(a, b)| *a += b);
            o.corr_model.terms.extend_from_slice(&r.corr_model.terms);
        } else {
            let mut o = r.clone();
            o.trial = None;
            o.bias2_se = r.bias2_se.powi(2);
            o.bias_se = r.bias_se.powi(2);
            o.variance_se = r.variance_se.powi(2);
            out.push(o);
            counts.push(1);
        }
    }
    for (o, &k) in out.iter_mut().zip(&counts) {
        let k = k as f64;
        o.bias2_estimate /= k;
        o.bias2_se = o.bias2_se.sqrt() / k;
        o.bias_se = o.bias_se.sqrt() / k;
        o.variance /= k;
        o.variance_se = o.variance_se.sqrt() / k;
        o.mse.iter_mut().for_each(|m| *m /= k);
        o.bias_detectable = o.bias2_estimate > 2.0 * o.bias2_se;
        o.bias2_bound = o.bias2_estimate.max(0.0) + 2.0 * o.bias2_se;
    }
    out
}

/// A table with named columns whose set depends on the settings (one MSE column per N),
/// written as CSV or handed out as JSON records.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of JSON values (`null` is an empty CSV cell).
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// Writes the table as CSV (atomically).
    pub fn write_csv(&self, path: &std::path::Path) -> Result<()> {
        let cell = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        crate::atomic::write_with(path, |out| {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(&self.columns).map_err(super::csv_io)?;
            for r in &self.rows {
                w.write_record(r.iter().map(cell)).map_err(super::csv_io)?;
            }
            w.flush()
        })
    }

    /// The rows as a JSON list of objects.
    pub fn to_json(&self) -> String {
        let records: Vec<serde_json::Map<String, Value>> =
            self.rows.iter().map(|r| self.columns.iter().cloned().zip(r.iter().cloned()).collect()).collect();
        serde_json::to_string(&records).expect("records serialise")
    }
}

/// A finite number as JSON, `null` otherwise.
fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// `biasvar.csv` (per trial) or `biasvar_summary.csv` (means over trials): estimator, ε,
/// quantity, target, (trial or detectable_trials) bias² (empty when not detectable), its estimate, s.e. and
/// bound, the bias vector's RMS error, variance per trajectory with its s.e., then
/// `mse_n<N>` and `corr_n<N>` per N of the grid.
pub fn biasvar_table(rows: &[BiasVarRow], n_grid: &[usize]) -> Table {
    let per_trial = rows.first().is_some_and(|r| r.trial.is_some());
    let mut columns: Vec<String> = ["estimator", "eps", "quantity", "target"].map(String::from).to_vec();
    if per_trial {
        columns.push("trial".into());
    } else {
        columns.push("detectable_trials".into());
    }
    columns.extend(
        [
            "trajectories",
            "bias2",
            "bias2_estimate",
            "bias2_se",
            "bias2_bound",
            "bias_detectable",
            "bias_se",
            "variance",
            "variance_se",
        ]
        .map(String::from),
    );
    columns.extend(n_grid.iter().map(|n| format!("mse_n{n}")));
    columns.extend(n_grid.iter().map(|n| format!("corr_n{n}")));
    let rows = rows
        .iter()
        .map(|r| {
            let mut v =
                vec![json!(r.estimator), num(r.eps), json!(r.quantity.name()), json!(r.target.name())];
            v.push(match r.trial {
                Some(t) => json!(t),
                None => json!(r.detectable_trials),
            });
            v.extend([
                json!(r.trajectories),
                r.bias2().map_or(Value::Null, num),
                num(r.bias2_estimate),
                num(r.bias2_se),
                num(r.bias2_bound),
                json!(r.bias_detectable),
                num(r.bias_se),
                num(r.variance),
                num(r.variance_se),
            ]);
            v.extend(r.mse.iter().map(|&m| num(m)));
            v.extend(n_grid.iter().map(|&n| num(r.predicted_corr(n as f64))));
            v
        })
        .collect();
    Table { columns, rows }
}

/// Where TayPO-2 overtakes TayPO-1 (Fig. 1 c), predicted from the decomposition and
/// observed in the N sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Crossover {
    /// Gradient or Hessian.
    pub quantity: Quantity,
    /// `mse` (bias² + σ²/N against V, mean over trials: N* = (σ₂² − σ₁²)/(bias₁² − bias₂²)) or
    /// `corr` (the mean predicted correlation; observed: the N sweep's mean correlation).
    pub criterion: String,
    /// Predicted N* (`None`: no crossover).
    pub predicted_n: Option<f64>,
    /// Observed N* (log-linear interpolation between grid points; `None`: not in the grid
    /// or not observable for this criterion).
    pub observed_n: Option<f64>,
}

/// One row of `biasvar_predictions.csv`: at ε = the N sweep's ε, against V, mean over
/// trials.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// Gradient or Hessian.
    pub quantity: Quantity,
    /// Estimator.
    pub estimator: String,
    /// N.
    pub n: usize,
    /// Predicted MSE, bias² + σ²/N.
    pub mse: f64,
    /// Predicted correlation.
    pub predicted_corr: f64,
    /// Observed mean correlation in the N sweep.
    pub observed_corr: Option<f64>,
    /// Its standard error over trials.
    pub observed_se: Option<f64>,
}

/// First N where `diff(N)` turns from ≤ 0 to > 0 on the points `(n, diff)`, interpolated
/// linearly in log N.
fn first_crossing(points: &[(f64, f64)]) -> Option<f64> {
    points.windows(2).find(|w| w[0].1 <= 0.0 && w[1].1 > 0.0).map(|w| {
        let (l0, l1) = (w[0].0.ln(), w[1].0.ln());
        let t = if w[1].1 == w[0].1 { 0.0 } else { -w[0].1 / (w[1].1 - w[0].1) };
        (l0 + t * (l1 - l0)).exp()
    })
}

/// Predictions at each N of the grid, and the TayPO-2 / TayPO-1 crossover, from the
/// summary rows at ε = `eps` against V and the N sweep's `n_summary`.
pub fn predictions(
    summary: &[BiasVarRow],
    n_summary: &[SummaryRow],
    eps: f64,
    n_grid: &[usize],
) -> (Vec<Prediction>, Vec<Crossover>) {
    let at = |q: Quantity| {
        summary.iter().filter(move |r| r.eps == eps && r.target == Target::Value && r.quantity == q)
    };
    let observed = |q: Quantity, est: &str, n: usize| {
        n_summary.iter().find(|s| s.sweep == "n" && s.estimator == est && s.n == n).map(|s| match q {
            Quantity::Gradient => (s.grad_mean, s.grad_se),
            Quantity::Hessian => (s.hess_mean, s.hess_se),
        })
    };
    let mut preds = Vec::new();
    let mut cross = Vec::new();
    for q in [Quantity::Gradient, Quantity::Hessian] {
        for r in at(q) {
            for (i, &n) in n_grid.iter().enumerate() {
                let obs = observed(q, &r.estimator, n);
                preds.push(Prediction {
                    quantity: q,
                    estimator: r.estimator.clone(),
                    n,
                    mse: r.mse[i],
                    predicted_corr: r.predicted_corr(n as f64),
                    observed_corr: obs.map(|o| o.0),
                    observed_se: obs.map(|o| o.1),
                });
            }
        }
        let find = |name: &str| at(q).find(|r| r.estimator == name);
        let (Some(t1), Some(t2)) = (find("taypo-1"), find("taypo-2")) else { continue };
        let mse_n = {
            let (db, dv) = (t1.bias2_estimate - t2.bias2_estimate, t2.variance - t1.variance);
            (db > 0.0 && dv > 0.0).then(|| dv / db)
        };
        let dense: Vec<(f64, f64)> = (0..=280)
            .map(|i| {
                let n = 10f64.powf(i as f64 / 40.0);
                (n, t2.predicted_corr(n) - t1.predicted_corr(n))
            })
            .collect();
        let obs: Option<Vec<(f64, f64)>> = n_grid
            .iter()
            .map(|&n| Some((n as f64, observed(q, "taypo-2", n)?.0 - observed(q, "taypo-1", n)?.0)))
            .collect();
        cross.push(Crossover { quantity: q, criterion: "mse".into(), predicted_n: mse_n, observed_n: None });
        cross.push(Crossover {
            quantity: q,
            criterion: "corr".into(),
            predicted_n: first_crossing(&dense),
            observed_n: obs.and_then(|o| first_crossing(&o)),
        });
    }
    (preds, cross)
}

/// Everything the biasvar sweep produces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BiasVarOutput {
    /// Per trial.
    pub rows: Vec<BiasVarRow>,
    /// Means over trials.
    pub summary: Vec<BiasVarRow>,
    /// Predicted vs observed at each N of the N sweep.
    pub predictions: Vec<Prediction>,
    /// TayPO-2 / TayPO-1 crossovers.
    pub crossovers: Vec<Crossover>,
}

impl BiasVarOutput {
    /// Summarises `rows` and predicts the N sweep summarised in `n_summary`.
    pub fn new(study: &ValidStudy, rows: Vec<BiasVarRow>, n_summary: &[SummaryRow]) -> Self {
        let summary = summarise_biasvar(&rows);
        let (predictions, crossovers) = predictions(&summary, n_summary, study.n_sweep_eps, &study.n_grid);
        Self { rows, summary, predictions, crossovers }
    }

    /// Writes `biasvar.csv`, `biasvar_summary.csv`, `biasvar_predictions.csv`,
    /// `biasvar_crossover.csv` and the figures of [`Self::plot`] to `dir`; returns the
    /// figures' stems.
    pub fn write(&self, dir: &std::path::Path, study: &ValidStudy) -> Result<Vec<String>> {
        biasvar_table(&self.rows, &study.n_grid).write_csv(&dir.join("biasvar.csv"))?;
        biasvar_table(&self.summary, &study.n_grid).write_csv(&dir.join("biasvar_summary.csv"))?;
        super::write_csv(&dir.join("biasvar_predictions.csv"), &self.predictions)?;
        super::write_csv(&dir.join("biasvar_crossover.csv"), &self.crossovers)?;
        self.plot(dir, study.n_sweep_eps)
    }

    /// Figures (PNG and SVG): `biasvar_gradient` and `biasvar_hessian` (log₁₀ bias² against
    /// log₁₀ variance per trajectory, against V, mean over trials, one point per ε along
    /// each estimator's line; a bias that is not detectable is drawn at its bound),
    /// `biasvar_mse_vs_n` (Hessian MSE against N at the N sweep's ε, with the
    /// TayPO-2 / TayPO-1 crossover marked) and `biasvar_corr_vs_n` (predicted against
    /// observed Hessian correlation, Fig. 1 c).
    pub fn plot(&self, dir: &std::path::Path, n_eps: f64) -> Result<Vec<String>> {
        use crate::plot::{Figure, Series, save_or_skip};
        let mut written = Vec::new();
        let mut save = |fig: Figure, stem: &str| -> Result<()> {
            if save_or_skip(&fig, &dir.join(stem))? {
                written.push(stem.to_string());
            }
            Ok(())
        };
        let names = |rows: &mut dyn Iterator<Item = &str>| {
            let mut v: Vec<String> = Vec::new();
            for n in rows {
                if !v.iter().any(|x| x == n) {
                    v.push(n.to_string());
                }
            }
            v
        };
        let estimators = names(&mut self.summary.iter().map(|r| r.estimator.as_str()));
        for q in [Quantity::Gradient, Quantity::Hessian] {
            let series = estimators
                .iter()
                .map(|name| {
                    let pts: Vec<&BiasVarRow> = self
                        .summary
                        .iter()
                        .filter(|r| &r.estimator == name && r.quantity == q && r.target == Target::Value)
                        .collect();
                    Series {
                        name: name.clone(),
                        x: pts.iter().map(|r| r.variance.log10()).collect(),
                        y: pts.iter().map(|r| r.bias2().unwrap_or(r.bias2_bound).log10()).collect(),
                        err: None,
                    }
                })
                .collect();
            let fig = Figure {
                title: format!(
                    "{} bias² vs variance against ∇{}V, one point per ε (undetectable: at the bound)",
                    if q == Quantity::Hessian { "Hessian" } else { "Gradient" },
                    if q == Quantity::Hessian { "²" } else { "" }
                ),
                x_label: "log₁₀ variance per trajectory tr Var(ĥ)".into(),
                y_label: "log₁₀ bias² ‖E ĥ − h‖²".into(),
                log_x: false,
                series,
            };
            save(fig, &format!("biasvar_{}", q.name()))?;
        }
        let at_n =
            |r: &&BiasVarRow| r.eps == n_eps && r.quantity == Quantity::Hessian && r.target == Target::Value;
        let rows: Vec<&BiasVarRow> = self.summary.iter().filter(at_n).collect();
        let ns: Vec<f64> =
            self.predictions.iter().filter(|p| p.quantity == Quantity::Hessian).map(|p| p.n as f64).collect();
        let mut ns_sorted = ns.clone();
        ns_sorted.sort_by(f64::total_cmp);
        ns_sorted.dedup();
        let (lo, hi) = (ns_sorted.first().copied().unwrap_or(1.0), ns_sorted.last().copied().unwrap_or(1.0));
        let dense: Vec<f64> = (0..=12).map(|i| lo * (hi / lo).powf(i as f64 / 12.0)).collect();
        let mut series: Vec<Series> = rows
            .iter()
            .map(|r| Series {
                name: r.estimator.clone(),
                x: dense.clone(),
                y: dense.iter().map(|n| (r.bias2_estimate + r.variance / n).log10()).collect(),
                err: None,
            })
            .collect();
        let cross = self.crossovers.iter().find(|c| c.quantity == Quantity::Hessian && c.criterion == "mse");
        if let Some(n_star) = cross.and_then(|c| c.predicted_n) {
            let ys: Vec<f64> =
                series.iter().flat_map(|s| s.y.iter().copied()).filter(|y| y.is_finite()).collect();
            let (y0, y1) =
                ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
            series.push(Series {
                name: format!("taypo-2 overtakes taypo-1: N* ≈ {n_star:.0}"),
                x: vec![n_star, n_star],
                y: vec![y0, y1],
                err: None,
            });
        }
        if !rows.is_empty() {
            save(
                Figure {
                    title: format!("Hessian MSE = bias² + σ²/N against ∇²V (ε = {n_eps})"),
                    x_label: "trajectories N".into(),
                    y_label: "log₁₀ MSE".into(),
                    log_x: true,
                    series,
                },
                "biasvar_mse_vs_n",
            )?;
        }
        let mut series = Vec::new();
        for name in &estimators {
            let pts: Vec<&Prediction> = self
                .predictions
                .iter()
                .filter(|p| p.quantity == Quantity::Hessian && &p.estimator == name)
                .collect();
            if pts.is_empty() {
                continue;
            }
            series.push(Series {
                name: format!("{name} predicted"),
                x: pts.iter().map(|p| p.n as f64).collect(),
                y: pts.iter().map(|p| p.predicted_corr).collect(),
                err: None,
            });
            if pts.iter().all(|p| p.observed_corr.is_some()) {
                series.push(Series {
                    name: format!("{name} observed"),
                    x: pts.iter().map(|p| p.n as f64).collect(),
                    y: pts.iter().map(|p| p.observed_corr.unwrap_or(f64::NAN)).collect(),
                    err: Some(pts.iter().map(|p| p.observed_se.unwrap_or(0.0)).collect()),
                });
            }
        }
        if !series.is_empty() {
            save(
                Figure {
                    title: format!(
                        "Hessian correlation: predicted from bias and variance vs observed (ε = {n_eps})"
                    ),
                    x_label: "trajectories N".into(),
                    y_label: "correlation with ∇²V".into(),
                    log_x: true,
                    series,
                },
                "biasvar_corr_vs_n",
            )?;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::tabular_study::{StudyParams, Sweep};
    use crate::tabular::RandomMdpParams;

    /// A biasvar study: `estimators` at `eps`, M trajectories in chunks of `chunk`, on the
    /// default MDPs or small ones (6 states × 3 actions, T = 10).
    fn study(estimators: &str, eps: &[f64], m: usize, chunk: usize, small: bool) -> ValidStudy {
        let mut p = StudyParams {
            sweep: Sweep::Biasvar,
            eps: eps.to_vec(),
            n_sweep_eps: eps[0],
            trials: 1,
            seed: 5,
            estimators: Estimator::parse_list(estimators, 1.0).unwrap(),
            biasvar_trajectories: m,
            biasvar_chunk: chunk,
            ..StudyParams::default()
        };
        if small {
            p.mdp = RandomMdpParams { n_states: 6, n_actions: 3, ..p.mdp };
            p.horizon = 10;
        }
        p.validate().unwrap()
    }

    fn point(s: &ValidStudy, eps_index: usize) -> Vec<BiasVarRow> {
        let setup = TrialSetup::draw(s, 0);
        s.biasvar_point(&setup, 0, eps_index, s.eps[eps_index], &|| ()).unwrap()
    }

    fn find<'a>(rows: &'a [BiasVarRow], est: &str, q: Quantity, t: Target) -> &'a BiasVarRow {
        rows.iter().find(|r| r.estimator == est && r.quantity == q && r.target == t).unwrap()
    }

    #[test]
    fn on_policy_hessian_bias_is_undetectable_for_dr_and_taypo2_but_not_taypo1() {
        // The default MDPs (D = 100), ε = 0, M = 40 000.
        let s = study("dr,taypo-1,taypo-2", &[0.0], 40_000, 1000, false);
        let rows = point(&s, 0);
        for est in ["dr", "taypo-2"] {
            let r = find(&rows, est, Quantity::Hessian, Target::FiniteHorizon);
            assert!(!r.bias_detectable && r.bias2().is_none(), "{est}: {}", r.bias2_text());
            assert!(r.bias2_bound > 0.0 && r.bias2_text().starts_with("not detectable"));
            // The gradient too (every estimator here is unbiased for ∇J_T on-policy).
            assert!(!find(&rows, est, Quantity::Gradient, Target::FiniteHorizon).bias_detectable);
        }
        // Negative control: TayPO-1 drops a second-order term, so its Hessian is biased
        // on-policy (by far more than the bound of the others).
        let t1 = find(&rows, "taypo-1", Quantity::Hessian, Target::FiniteHorizon);
        assert!(t1.bias_detectable, "{}", t1.bias2_text());
        let dr = find(&rows, "dr", Quantity::Hessian, Target::FiniteHorizon);
        assert!(t1.bias2_estimate - 3.0 * t1.bias2_se > dr.bias2_bound);
        assert!(!find(&rows, "taypo-1", Quantity::Gradient, Target::FiniteHorizon).bias_detectable);
    }

    #[test]
    fn importance_sampling_variance_grows_with_eps() {
        // ε where the variance is small enough to estimate: on |A| = 3 actions E_μ[ρ²] per
        // step is 1 + 2ε², so the per-trajectory variance grows like (1 + 2ε²)^T (T = 10).
        let eps = [0.0, 0.3, 0.6];
        let s = study("is", &eps, 80_000, 1000, true);
        for q in [Quantity::Gradient, Quantity::Hessian] {
            let v: Vec<(f64, f64)> = (0..eps.len())
                .map(|e| {
                    let r = find(&point(&s, e), "is", q, Target::FiniteHorizon).clone();
                    (r.variance, r.variance_se)
                })
                .collect();
            for w in v.windows(2) {
                assert!(w[1].0 - w[0].0 > 3.0 * (w[0].1.hypot(w[1].1)), "{q:?}: {v:?}");
            }
        }
    }

    #[test]
    fn monte_carlo_standard_error_falls_as_one_over_sqrt_m() {
        let (a, b) =
            (study("dr,taypo-1", &[0.0], 20_000, 250, true), study("dr,taypo-1", &[0.0], 80_000, 250, true));
        let (ra, rb) = (point(&a, 0), point(&b, 0));
        for q in [Quantity::Gradient, Quantity::Hessian] {
            let (x, y) = (find(&ra, "dr", q, Target::Value), find(&rb, "dr", q, Target::Value));
            // bias_se is σ/√M by definition; what is tested is that the σ² behind it, from
            // two independent runs of M and 4M trajectories, agrees within its s.e.
            let rel = (x.variance - y.variance).abs() / y.variance;
            assert!(rel < 3.0 * (x.variance_se.hypot(y.variance_se)) / y.variance, "{q:?}: {rel}");
        }
        // A detectable bias (TayPO-1's Hessian on-policy): its s.e. falls as 1/√M too.
        let (x, y) = (
            find(&ra, "taypo-1", Quantity::Hessian, Target::Value),
            find(&rb, "taypo-1", Quantity::Hessian, Target::Value),
        );
        assert!(x.bias_detectable && y.bias_detectable);
        let ratio = x.bias2_se / y.bias2_se;
        assert!((1.5..2.7).contains(&ratio), "bias² s.e. ratio {ratio}");
        assert!((x.bias2_estimate - y.bias2_estimate).abs() < 3.0 * x.bias2_se.hypot(y.bias2_se));
    }

    #[test]
    fn decomposition_adds_up_to_the_measured_mse() {
        // bias² + σ²/N against the mean squared error of R independent N-trajectory
        // estimates, measured directly, within 3 combined standard errors.
        let s = study("dr,taypo-1", &[0.5], 40_000, 500, true);
        let setup = TrialSetup::draw(&s, 0);
        let rows = s.biasvar_point(&setup, 0, 0, 0.5, &|| ()).unwrap();
        let policy = setup.target(0.5);
        let exact = oracle::softmax_derivatives(&setup.mdp, &policy);
        for (n, reps) in [(5, 2000), (50, 400)] {
            let mut errs: Vec<[Vec<f64>; 2]> = vec![Default::default(); s.estimators.len()];
            for r in 0..reps {
                let data = setup.sample(n, s.horizon, &mut stream(99, &[n as u64, r as u64]));
                for (i, &e) in s.estimators.iter().enumerate() {
                    let est = setup.estimate(e, &data, &policy).unwrap();
                    let sq =
                        |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
                    errs[i][0].push(sq(&est.gradient, &exact.gradient));
                    errs[i][1].push(sq(&est.hessian, &exact.hessian));
                }
            }
            for (i, e) in s.estimators.iter().enumerate() {
                for (q, quantity) in [Quantity::Gradient, Quantity::Hessian].into_iter().enumerate() {
                    let (direct, direct_se) = mean_se(&errs[i][q]);
                    let r = find(&rows, &e.name(), quantity, Target::Value);
                    let predicted = r.bias2_estimate + r.variance / n as f64;
                    let se = direct_se.hypot(r.bias2_se).hypot(r.variance_se / n as f64);
                    assert!(
                        (direct - predicted).abs() < 3.0 * se,
                        "{e} {quantity:?} N = {n}: measured {direct} ± {direct_se}, predicted {predicted} ± {se}"
                    );
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let s = study("is,taypo-2", &[0.0, 0.5], 8_000, 200, true);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| s.run_biasvar(&|| ()).unwrap())
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one.len(), 2 * 2 * 2 * 2);
        let table = biasvar_table(&summarise_biasvar(&one), &s.n_grid);
        assert_eq!(table.columns.len(), 14 + 2 * s.n_grid.len());
        assert_eq!(table.rows.len(), one.len());
    }

    #[test]
    fn crossings_interpolate_in_log_n() {
        assert!((first_crossing(&[(10.0, -1.0), (1000.0, 1.0)]).unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(first_crossing(&[(10.0, 1.0), (100.0, 2.0)]), None);
        assert_eq!(first_crossing(&[(10.0, -1.0), (100.0, -0.5)]), None);
    }
}
