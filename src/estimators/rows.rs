//! The row interface: estimators as functions of per-step log-likelihoods, for any policy.
//!
//! Every estimator depends on θ only through its rows (see [`crate::policy`]): the
//! log-likelihoods u_t = log π_θ(a_t|x_t) of the taken actions and, for DR with an
//! action-value critic, the critic means c_t = Σ_b π_θ(b|x_t) Q̂(x_t, b). This module takes
//! those rows as the *parameters* — padded N×T arrays, as an autodiff framework holds them —
//! and returns the mean estimate V̂ = (1/N) Σ_n V̂_n, its row gradient and row
//! Hessian-vector products. A framework then maps them to its own parameters by its own
//! chain rule (∇_θ V̂ = Jᵀ g, ∇²_θ V̂ v = Jᵀ F J v + Σ_i g_i ∇²u_i v with J = ∂u/∂θ).
//!
//! In terms of the likelihood ratios ρ_t = exp(u_t − log μ_t), which the kernels of
//! [`super::local`] read,
//!
//! * g_t = ∂V̂/∂u_t = ρ_t ∂V̂/∂ρ_t;
//! * (∂²V̂/∂u²)_jk = ρ_j ρ_k ∂²V̂/∂ρ_j∂ρ_k + δ_jk ρ_j ∂V̂/∂ρ_j;
//! * critic-mean rows enter linearly in each ratio: ∂V̂/∂c_t and ∂²V̂/∂u_j∂c_t as written
//!   in [`super::local::doubly_robust`].
//!
//! V̂ depends on u and log μ only through u − log μ, so ∂V̂/∂log μ = −∂V̂/∂u (and the same for
//! second derivatives). Rewards and critic values are constants.
//!
//! Nothing here is a second chain rule: [`IdentityRows`] is a [`ScoreRows`] whose parameters
//! are the rows themselves (J = I, no row curvature), and [`RowObjective`] runs
//! [`BatchObjective`] on it, so the row gradient and HVP are the ones every policy gets
//! (closed-form O(T) row HVPs for IS, DR, TayPO-2 and the naive score; forward-over-reverse
//! dual passes for truncated DR and TayPO-K, K ≠ 2).

use super::{BatchObjective, Estimator, PathCritic, PreparedBatch, TaylorDiscount};
use crate::cpu::{level, multiversion};
use crate::error::{Result, invalid};
use crate::numeric::exp_reduced;
use crate::policy::{RowBlocks, ScoreRows};

/// |u − log μ| up to which [`ratios_into_at`] forms the ratios by [`exp_reduced`].
const RATIO_EXP_RANGE: f64 = 40.0;

multiversion! {
    /// out_i = e^{u_i − m_i} by the branch-free [`exp_reduced`] (so that the loop vectorises);
    /// false if some |u_i − m_i| exceeds [`RATIO_EXP_RANGE`] or is not a number, and then
    /// `out` is not meaningful.
    fn ratios_into_at(level: Level, u: &[f64], m: &[f64], out: &mut [f64]) -> bool {
        let mut in_range = true;
        for ((o, a), b) in out.iter_mut().zip(u).zip(m) {
            let d = a - b;
            in_range &= d.abs() <= RATIO_EXP_RANGE;
            *o = exp_reduced(d.clamp(-RATIO_EXP_RANGE, RATIO_EXP_RANGE));
        }
        in_range
    }
}

/// Appends the likelihood ratios e^{u − m} of one trajectory to `values`: vectorised within
/// ±[`RATIO_EXP_RANGE`] (relative error ≈ 2e-16; then every ratio is positive and finite,
/// and `true` is returned), by the platform's `exp` for a row with an entry outside it
/// (`false`: the caller checks the ratios).
fn push_ratios(values: &mut Vec<f64>, u: &[f64], m: &[f64]) -> bool {
    let start = values.len();
    values.resize(start + u.len(), 0.0);
    if ratios_into_at(level(), u, m, &mut values[start..]) {
        return true;
    }
    for ((o, a), b) in values[start..].iter_mut().zip(u).zip(m) {
        *o = (a - b).exp();
    }
    false
}

/// A padded row-major array of `shape[0]` trajectories × `shape[1]` columns.
#[derive(Clone, Copy, Debug)]
pub struct Padded<'a> {
    /// The entries, row-major (`shape[0] · shape[1]` of them).
    pub values: &'a [f64],
    /// (rows, columns).
    pub shape: [usize; 2],
}

impl<'a> Padded<'a> {
    /// An array of `rows` × `cols` entries.
    pub fn new(values: &'a [f64], rows: usize, cols: usize) -> Self {
        Self { values, shape: [rows, cols] }
    }

    /// The first `len` entries of row `n`.
    fn row(&self, n: usize, len: usize) -> &'a [f64] {
        let start = n * self.shape[1];
        &self.values[start..start + len]
    }
}

/// The critic of a padded batch (N trajectories, T columns of steps).
#[derive(Clone, Copy, Debug)]
pub enum RowCritic<'a> {
    /// No critic (IS only).
    None,
    /// A state-value critic: V̂(x_0) … V̂(x_{T_n}) per trajectory, N×(T+1).
    State(Padded<'a>),
    /// An action-value critic.
    Action {
        /// Q̂(x_t, a_t), N×T.
        taken: Padded<'a>,
        /// Σ_b μ(b|x_t) Q̂(x_t, b), N×(T+1).
        behaviour_means: Padded<'a>,
        /// The θ-dependent critic means c_t = Σ_b π_θ(b|x_t) Q̂(x_t, b), N×(T+1): rows of
        /// DR (which needs them); other estimators do not read them (their derivatives are 0).
        critic_means: Option<Padded<'a>>,
    },
}

/// A padded batch of N trajectories with at most T steps each. Entries past a
/// trajectory's length are ignored (steps t ≥ T_n; critic columns t > T_n).
#[derive(Clone, Copy, Debug)]
pub struct RowData<'a> {
    /// u_t = log π_θ(a_t|x_t), N×T.
    pub u: Padded<'a>,
    /// log μ(a_t|x_t) of the behaviour policy, N×T.
    pub log_mu: Padded<'a>,
    /// r_t, N×T.
    pub rewards: Padded<'a>,
    /// T_n per trajectory (each ≤ T); `None`: all T.
    pub lengths: Option<&'a [usize]>,
    /// The critic.
    pub critic: RowCritic<'a>,
}

/// Rows that are their own parameters: J = I and ∇²u_i = 0, with values ρ_i for ratio rows
/// and c_i for critic-mean rows (the layout of [`PreparedBatch::n_rows`]). With these,
/// [`BatchObjective`]'s parameter gradient and HVP are the row gradient and row HVP.
#[derive(Clone, Debug)]
pub struct IdentityRows {
    values: Vec<f64>,
}

impl IdentityRows {
    /// Rows with the given values (ratios first, then critic means).
    pub fn new(values: Vec<f64>) -> Self {
        Self { values }
    }
}

impl ScoreRows for IdentityRows {
    fn num_params(&self) -> usize {
        self.values.len()
    }
    fn num_rows(&self) -> usize {
        self.values.len()
    }
    fn values(&self) -> &[f64] {
        &self.values
    }
    fn jvp(&self, v: &[f64], out: &mut [f64]) {
        out.copy_from_slice(v);
    }
    fn vjp_add(&self, w: &[f64], out: &mut [f64]) {
        out.iter_mut().zip(w).for_each(|(o, w)| *o += w);
    }
    fn curvature_hvp_add(&self, _w: &[f64], _v: &[f64], _out: &mut [f64]) {}
    fn curvature_hessian_add(&self, _w: &[f64], _out: &mut [f64]) {}
    fn outer_add(&self, blocks: &RowBlocks, out: &mut [f64]) {
        let d = self.values.len();
        for (rows, f) in blocks.iter() {
            let k = rows.len();
            for (a, &i) in rows.iter().enumerate() {
                for (b, &j) in rows.iter().enumerate() {
                    out[i * d + j] += f[a * k + b];
                }
            }
        }
    }
}

/// The estimator named `name` (`is`, `dr`, `dr-trunc`, `taypo-K` for K ≥ 1, `lvc`, `maml`;
/// the command line's names), with `dr-trunc`'s levels ρ̄ = c̄ = `truncation` and the Taylor
/// discount of `taypo-K` and `maml` (other estimators have none). Errors name `estimator`
/// or `truncation`.
pub fn parse_estimator(name: &str, truncation: f64, discount: TaylorDiscount) -> Result<Estimator> {
    if truncation.is_nan() || truncation <= 0.0 {
        return Err(invalid("truncation", format!("must be > 0 (∞ allowed), got {truncation}")));
    }
    if name.contains(',') {
        return Err(invalid("estimator", format!("give one name, got {name:?}")));
    }
    let estimator: Estimator = name.parse().map_err(|e| match e {
        crate::Error::Invalid { reason, .. } => invalid("estimator", reason),
        other => other,
    })?;
    Ok(match estimator {
        Estimator::TruncatedDr { .. } => Estimator::TruncatedDr { rho_bar: truncation, c_bar: truncation },
        Estimator::TayPo { order, .. } => Estimator::TayPo { order, discount },
        Estimator::NaiveScore { .. } => Estimator::NaiveScore { discount },
        e => e,
    })
}

/// The row gradient of a [`RowObjective`].
#[derive(Clone, Debug, PartialEq)]
pub struct RowGradient {
    /// V̂ = (1/N) Σ_n V̂_n.
    pub value: f64,
    /// ∂V̂/∂u, N×T row-major, 0 in padding.
    pub u: Vec<f64>,
    /// ∂V̂/∂c, N×(T+1), when critic means were given (0 for estimators that do not read them).
    pub c: Option<Vec<f64>>,
}

/// A row Hessian-vector product (∂²V̂/∂(u, c)²)·(w_u, w_c) of a [`RowObjective`].
#[derive(Clone, Debug, PartialEq)]
pub struct RowHvp {
    /// The u part, N×T, 0 in padding.
    pub u: Vec<f64>,
    /// The c part, N×(T+1), when critic means were given.
    pub c: Option<Vec<f64>>,
}

/// One estimator on a validated padded batch: V̂ as a function of the rows (u, c).
#[derive(Clone, Debug)]
pub struct RowObjective {
    prepared: PreparedBatch,
    rows: IdentityRows,
    n: usize,
    t: usize,
    lengths: Vec<usize>,
    /// Whether critic means were given (then gradients and HVPs have a c part).
    has_c: bool,
}

/// Checks an array's shape, naming the field.
fn check_shape(field: &str, a: &Padded, expected: [usize; 2], what: &str) -> Result<()> {
    if a.shape != expected {
        return Err(invalid(
            field,
            format!(
                "expected shape ({}, {}) ({what}), got ({}, {})",
                expected[0], expected[1], a.shape[0], a.shape[1]
            ),
        ));
    }
    if a.values.len() != expected[0] * expected[1] {
        return Err(invalid(
            field,
            format!(
                "shape ({}, {}) needs {} entries, got {}",
                a.shape[0],
                a.shape[1],
                expected[0] * expected[1],
                a.values.len()
            ),
        ));
    }
    Ok(())
}

/// Checks that the first `len[n]` (+ `extra`) entries of every row are finite.
fn check_finite(field: &str, a: &Padded, lengths: &[usize], extra: usize) -> Result<()> {
    for (n, &len) in lengths.iter().enumerate() {
        let row = a.row(n, len + extra);
        // A branch-free pass over the row (vectorised); the position only on failure.
        if !row.iter().fold(true, |ok, x| ok & x.is_finite()) {
            let t = row.iter().position(|x| !x.is_finite()).expect("a non-finite entry");
            return Err(invalid(format!("{field}[{n}][{t}]"), format!("must be finite, got {}", row[t])));
        }
    }
    Ok(())
}

impl RowObjective {
    /// Validates `data` for `estimator` and γ, and prepares the batch.
    ///
    /// # Errors
    /// Naming the field and value: γ ∉ [0, 1); N = 0; shapes that do not match u's N×T
    /// (N×(T+1) for state values, behaviour and critic means); lengths > T; non-finite
    /// entries within a trajectory's length; a likelihood ratio exp(u − log μ) that is not
    /// positive and finite; a missing critic ([`Estimator::needs_critic`]); an action-value
    /// critic for `dr-trunc`; DR with an action-value critic but no critic means.
    pub fn new(estimator: Estimator, gamma: f64, data: &RowData) -> Result<Self> {
        if !(0.0..1.0).contains(&gamma) {
            return Err(invalid("gamma", format!("must be in [0, 1), got {gamma}")));
        }
        let [n, t] = data.u.shape;
        if n == 0 {
            return Err(invalid("u", "need at least one trajectory (N ≥ 1 rows)"));
        }
        check_shape("u", &data.u, [n, t], "N×T")?;
        check_shape("log_mu", &data.log_mu, [n, t], "the shape of u")?;
        check_shape("rewards", &data.rewards, [n, t], "the shape of u")?;
        let lengths = match data.lengths {
            None => vec![t; n],
            Some(l) => {
                if l.len() != n {
                    return Err(invalid(
                        "lengths",
                        format!("expected {n} entries (one per trajectory), got {}", l.len()),
                    ));
                }
                if let Some(i) = l.iter().position(|&len| len > t) {
                    return Err(invalid(
                        format!("lengths[{i}]"),
                        format!("must be in 0..={t}, got {}", l[i]),
                    ));
                }
                l.to_vec()
            }
        };
        let with_bootstrap = [n, t + 1];
        check_finite("u", &data.u, &lengths, 0)?;
        check_finite("log_mu", &data.log_mu, &lengths, 0)?;
        check_finite("rewards", &data.rewards, &lengths, 0)?;
        match data.critic {
            RowCritic::None => {}
            RowCritic::State(v) => {
                check_shape("state_values", &v, with_bootstrap, "N×(T+1): V̂(x_0) … V̂(x_T)")?;
                check_finite("state_values", &v, &lengths, 1)?;
            }
            RowCritic::Action { taken, behaviour_means, critic_means } => {
                check_shape("q_taken", &taken, [n, t], "the shape of u")?;
                check_finite("q_taken", &taken, &lengths, 0)?;
                check_shape("behaviour_means", &behaviour_means, with_bootstrap, "N×(T+1)")?;
                check_finite("behaviour_means", &behaviour_means, &lengths, 1)?;
                if let Some(c) = critic_means {
                    check_shape("critic_means", &c, with_bootstrap, "N×(T+1)")?;
                    check_finite("critic_means", &c, &lengths, 1)?;
                }
            }
        }
        if estimator.needs_critic() && matches!(data.critic, RowCritic::None) {
            return Err(invalid(
                "critic",
                format!("estimator {estimator} needs a critic: state_values, or q_taken and behaviour_means"),
            ));
        }

        // Ratio rows (packed: trajectory by trajectory), checked as the kernels read them.
        let mut values = Vec::with_capacity(lengths.iter().sum::<usize>());
        for (i, &len) in lengths.iter().enumerate() {
            let start = values.len();
            let in_range = push_ratios(&mut values, data.u.row(i, len), data.log_mu.row(i, len));
            let ratios = &values[start..];
            if !in_range && !ratios.iter().fold(true, |ok, &rho| ok & (rho.is_finite() & (rho > 0.0))) {
                let s = ratios.iter().position(|&rho| !(rho.is_finite() && rho > 0.0)).expect("a bad ratio");
                let d = data.u.row(i, len)[s] - data.log_mu.row(i, len)[s];
                return Err(invalid(
                    format!("u[{i}][{s}]"),
                    format!(
                        "u − log_mu = {d}: the likelihood ratio exp(u − log_mu) = {} is not a positive finite number",
                        ratios[s]
                    ),
                ));
            }
        }

        let mut prepared = PreparedBatch::new(estimator, gamma);
        for (i, &len) in lengths.iter().enumerate() {
            let rewards = &data.rewards.values[i * t..i * t + len];
            let path = match data.critic {
                RowCritic::None => PathCritic::None,
                RowCritic::State(v) => PathCritic::State(&v.values[i * (t + 1)..i * (t + 1) + len + 1]),
                RowCritic::Action { taken, behaviour_means, .. } => PathCritic::Action {
                    taken: &taken.values[i * t..i * t + len],
                    behaviour_mean: &behaviour_means.values[i * (t + 1)..i * (t + 1) + len + 1],
                },
            };
            prepared.push(rewards, path)?;
        }
        let critic_means = match data.critic {
            RowCritic::Action { critic_means, .. } => critic_means,
            _ => None,
        };
        if prepared.critic_means {
            let c = critic_means.ok_or_else(|| {
                invalid(
                    "critic_means",
                    format!(
                        "estimator {estimator} with an action-value critic reads the critic means \
                         c_t = Σ_b π(b|x_t) Q̂(x_t, b), N×(T+1); none were given"
                    ),
                )
            })?;
            for (i, &len) in lengths.iter().enumerate() {
                values.extend_from_slice(&c.values[i * (t + 1)..i * (t + 1) + len + 1]);
            }
        }
        Ok(Self { prepared, rows: IdentityRows::new(values), n, t, lengths, has_c: critic_means.is_some() })
    }

    /// The prepared batch (θ-independent inputs).
    pub fn prepared(&self) -> &PreparedBatch {
        &self.prepared
    }

    /// The rows as a [`ScoreRows`] (J = I).
    pub fn rows(&self) -> &IdentityRows {
        &self.rows
    }

    /// (N, T).
    pub fn shape(&self) -> (usize, usize) {
        (self.n, self.t)
    }

    /// Whether gradients and HVPs have a critic-mean part.
    pub fn has_critic_means(&self) -> bool {
        self.has_c
    }

    fn objective(&self) -> BatchObjective<'_, IdentityRows> {
        BatchObjective::new(&self.prepared, &self.rows).expect("rows and batch built together, N ≥ 1")
    }

    /// Packs padded (u-part, c-part) row vectors into the batch's row layout.
    fn pack(&self, u: &[f64], c: Option<&[f64]>) -> Vec<f64> {
        let (t, mut out) = (self.t, Vec::with_capacity(self.prepared.n_rows()));
        for (i, &len) in self.lengths.iter().enumerate() {
            out.extend_from_slice(&u[i * t..i * t + len]);
        }
        if self.prepared.critic_means {
            for (i, &len) in self.lengths.iter().enumerate() {
                match c {
                    Some(c) => out.extend_from_slice(&c[i * (t + 1)..i * (t + 1) + len + 1]),
                    None => out.extend(std::iter::repeat_n(0.0, len + 1)),
                }
            }
        }
        out
    }

    /// Unpacks a row-layout vector into padded (N×T, N×(T+1) if critic means were given).
    fn unpack(&self, rows: &[f64]) -> (Vec<f64>, Option<Vec<f64>>) {
        let (n, t) = (self.n, self.t);
        let mut u = vec![0.0; n * t];
        for i in 0..n {
            let s = self.prepared.steps(i);
            u[i * t..i * t + s.len()].copy_from_slice(&rows[s]);
        }
        let c = self.has_c.then(|| {
            let mut c = vec![0.0; n * (t + 1)];
            if self.prepared.critic_means {
                for i in 0..n {
                    let m = self.prepared.mean_rows(i);
                    c[i * (t + 1)..i * (t + 1) + m.len()].copy_from_slice(&rows[m]);
                }
            }
            c
        });
        (u, c)
    }

    /// V̂ = (1/N) Σ_n V̂_n.
    pub fn value(&self) -> f64 {
        self.objective().row_gradient().0
    }

    /// V̂ and its gradient ∂V̂/∂u (and ∂V̂/∂c).
    pub fn gradient(&self) -> RowGradient {
        let (value, g) = self.objective().row_gradient();
        let (u, c) = self.unpack(&g);
        RowGradient { value, u, c }
    }

    /// V̂, the gradient and the row Hessian-vector product along (`w_u`, `w_c`) (N×T and
    /// N×(T+1) padded; entries in padding are ignored, `w_c = None` is a zero c part).
    ///
    /// # Errors
    /// Wrong lengths, non-finite entries, or `w_c` without critic means (fields `direction`,
    /// `direction_c`).
    pub fn gradient_and_hvp(&self, w_u: &[f64], w_c: Option<&[f64]>) -> Result<(RowGradient, RowHvp)> {
        let (n, t) = (self.n, self.t);
        if w_u.len() != n * t {
            return Err(invalid(
                "direction",
                format!("expected {n}×{t} = {} entries, got {}", n * t, w_u.len()),
            ));
        }
        if let Some(i) = w_u.iter().position(|x| !x.is_finite()) {
            return Err(invalid(
                format!("direction[{}][{}]", i / t.max(1), i % t.max(1)),
                format!("must be finite, got {}", w_u[i]),
            ));
        }
        if let Some(c) = w_c {
            if !self.has_c {
                return Err(invalid("direction_c", "given, but no critic_means were given"));
            }
            if c.len() != n * (t + 1) {
                return Err(invalid(
                    "direction_c",
                    format!("expected {n}×{} = {} entries, got {}", t + 1, n * (t + 1), c.len()),
                ));
            }
            if let Some(i) = c.iter().position(|x| !x.is_finite()) {
                return Err(invalid(
                    format!("direction_c[{}][{}]", i / (t + 1), i % (t + 1)),
                    format!("must be finite, got {}", c[i]),
                ));
            }
        }
        let v = self.pack(w_u, w_c);
        let (value, g, hv) = self.objective().gradient_and_hvp(&v);
        let (gu, gc) = self.unpack(&g);
        let (hu, hc) = self.unpack(&hv);
        Ok((RowGradient { value, u: gu, c: gc }, RowHvp { u: hu, c: hc }))
    }

    /// The row Hessian-vector product alone (see [`Self::gradient_and_hvp`]).
    pub fn hvp(&self, w_u: &[f64], w_c: Option<&[f64]>) -> Result<RowHvp> {
        Ok(self.gradient_and_hvp(w_u, w_c)?.1)
    }
}

#[cfg(test)]
mod tests;
