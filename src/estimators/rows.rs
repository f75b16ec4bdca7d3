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
use crate::error::{Result, invalid};
use crate::policy::{RowBlocks, ScoreRows};

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

    fn at(&self, n: usize, t: usize) -> f64 {
        self.values[n * self.shape[1] + t]
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
        for t in 0..len + extra {
            let x = a.at(n, t);
            if !x.is_finite() {
                return Err(invalid(format!("{field}[{n}][{t}]"), format!("must be finite, got {x}")));
            }
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
            for s in 0..len {
                let d = data.u.at(i, s) - data.log_mu.at(i, s);
                let rho = d.exp();
                if !(rho.is_finite() && rho > 0.0) {
                    return Err(invalid(
                        format!("u[{i}][{s}]"),
                        format!(
                            "u − log_mu = {d}: the likelihood ratio exp(u − log_mu) = {rho} is not a positive finite number"
                        ),
                    ));
                }
                values.push(rho);
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
mod tests {
    use super::*;
    use crate::policy::TabularSoftmax;
    use crate::tabular::{Critic, RandomMdpParams, TabularBatch, TabularMdp, Trajectory};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Random padded data: N trajectories, T columns, varied lengths (one full, one empty).
    struct Data {
        n: usize,
        t: usize,
        u: Vec<f64>,
        log_mu: Vec<f64>,
        rewards: Vec<f64>,
        lengths: Vec<usize>,
        values: Vec<f64>,
        taken: Vec<f64>,
        behaviour: Vec<f64>,
        means: Vec<f64>,
    }

    impl Data {
        fn random(seed: u64, n: usize, t: usize) -> Self {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut v = |k: usize, lo: f64, hi: f64| -> Vec<f64> {
                (0..k).map(|_| lo + (hi - lo) * rng.random::<f64>()).collect()
            };
            let u = v(n * t, -2.0, -0.2);
            // log μ near u: ratios in roughly [0.5, 2].
            let log_mu = u.iter().zip(v(n * t, -0.7, 0.7)).map(|(a, b)| a + b).collect();
            let mut lengths: Vec<usize> = v(n, 0.0, t as f64 + 0.99).iter().map(|x| *x as usize).collect();
            lengths[0] = t;
            if n > 2 {
                lengths[1] = 0;
            }
            Data {
                n,
                t,
                u,
                log_mu,
                rewards: v(n * t, -1.0, 1.0),
                lengths,
                values: v(n * (t + 1), -1.0, 1.0),
                taken: v(n * t, -1.0, 1.0),
                behaviour: v(n * (t + 1), -1.0, 1.0),
                means: v(n * (t + 1), -1.0, 1.0),
            }
        }

        fn critic(&self, kind: u8) -> RowCritic<'_> {
            let (n, t) = (self.n, self.t);
            match kind {
                0 => RowCritic::None,
                1 => RowCritic::State(Padded::new(&self.values, n, t + 1)),
                _ => RowCritic::Action {
                    taken: Padded::new(&self.taken, n, t),
                    behaviour_means: Padded::new(&self.behaviour, n, t + 1),
                    critic_means: Some(Padded::new(&self.means, n, t + 1)),
                },
            }
        }

        fn objective(
            &self,
            e: Estimator,
            kind: u8,
            u: &[f64],
            means: Option<&[f64]>,
        ) -> Result<RowObjective> {
            let (n, t) = (self.n, self.t);
            let mut critic = self.critic(kind);
            if let (RowCritic::Action { critic_means, .. }, Some(m)) = (&mut critic, means) {
                *critic_means = Some(Padded::new(m, n, t + 1));
            }
            let data = RowData {
                u: Padded::new(u, n, t),
                log_mu: Padded::new(&self.log_mu, n, t),
                rewards: Padded::new(&self.rewards, n, t),
                lengths: Some(&self.lengths),
                critic,
            };
            RowObjective::new(e, 0.85, &data)
        }
    }

    fn est(name: &str) -> Estimator {
        parse_estimator(name, 1.3, TaylorDiscount::Absolute).unwrap()
    }

    fn cases() -> Vec<(Estimator, u8)> {
        let mut out =
            vec![(est("is"), 0), (est("dr"), 1), (est("dr"), 2), (est("dr-trunc"), 1), (est("maml"), 1)];
        for k in 1..=4 {
            out.push((est(&format!("taypo-{k}")), 1));
            out.push((est(&format!("taypo-{k}")), 2));
        }
        out.push((parse_estimator("taypo-2", 1.0, TaylorDiscount::FromFirst).unwrap(), 1));
        out
    }

    /// Gradient against central differences of the value, HVP against central differences of
    /// the gradient, in u and in c; padding gets zeros.
    #[test]
    fn row_derivatives_equal_finite_differences() {
        let d = Data::random(1, 5, 6);
        let (n, t) = (d.n, d.t);
        let h = 1e-5;
        for (e, kind) in cases() {
            let obj = d.objective(e, kind, &d.u, None).unwrap();
            let g = obj.gradient();
            let w: Vec<f64> = (0..n * t).map(|i| (i * 7 % 11) as f64 / 5.0 - 1.0).collect();
            let wc: Vec<f64> = (0..n * (t + 1)).map(|i| (i * 5 % 7) as f64 / 3.0 - 1.0).collect();
            let wc_arg = obj.has_critic_means().then_some(&wc[..]);
            let (g2, hv) = obj.gradient_and_hvp(&w, wc_arg).unwrap();
            assert_eq!(g, g2);
            let shifted = |s: f64| {
                let u: Vec<f64> = d.u.iter().zip(&w).map(|(u, w)| u + s * w).collect();
                let m: Vec<f64> = d.means.iter().zip(&wc).map(|(c, w)| c + s * w).collect();
                d.objective(e, kind, &u, Some(&m)).unwrap().gradient()
            };
            let (plus, minus) = (shifted(h), shifted(-h));
            // Directional derivative of the value.
            let mut dir = g.u.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
            if let Some(gc) = &g.c {
                dir += gc.iter().zip(&wc).map(|(a, b)| a * b).sum::<f64>();
            }
            let fd = (plus.value - minus.value) / (2.0 * h);
            assert!((fd - dir).abs() < 1e-7 * (1.0 + dir.abs()), "{e} kind {kind}: value FD {fd} vs {dir}");
            for i in 0..n * t {
                let fd = (plus.u[i] - minus.u[i]) / (2.0 * h);
                assert!(
                    (fd - hv.u[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{e} kind {kind}: HVP[{i}] FD {fd} vs {}",
                    hv.u[i]
                );
                if i % t >= d.lengths[i / t] {
                    assert_eq!((g.u[i], hv.u[i]), (0.0, 0.0), "padding");
                }
            }
            if let (Some(pc), Some(mc), Some(hc)) = (&plus.c, &minus.c, &hv.c) {
                for i in 0..n * (t + 1) {
                    let fd = (pc[i] - mc[i]) / (2.0 * h);
                    assert!(
                        (fd - hc[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                        "{e}: c-HVP[{i}] FD {fd} vs {}",
                        hc[i]
                    );
                }
            }
            // Per-entry gradient FD in u on a few entries.
            for i in [0, 3, n * t - 1] {
                let bump = |s: f64| {
                    let mut u = d.u.clone();
                    u[i] += s;
                    d.objective(e, kind, &u, None).unwrap().value()
                };
                let fd = (bump(h) - bump(-h)) / (2.0 * h);
                assert!(
                    (fd - g.u[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                    "{e}: ∂V̂/∂u[{i}] FD {fd} vs {}",
                    g.u[i]
                );
            }
        }
    }

    /// On a tabular softmax problem, u = log π_θ(a_t|x_t) and c_t = Σ_b π(b|x_t)Q̂(x_t,b); the
    /// parameter gradient and HVP of the tabular path equal Jᵀ(row gradient) and
    /// Jᵀ(row HVP along Jv) + Σ g_i ∇²u_i v, with J the softmax rows' Jacobian.
    #[test]
    fn rows_compose_to_the_tabular_derivatives() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (ns, na, t_max) = (4, 3, 6);
        let params = RandomMdpParams { n_states: ns, n_actions: na, dirichlet: 0.5, ..Default::default() };
        let mdp = TabularMdp::random(&params, &mut rng);
        let mu: Vec<f64> = (0..ns).flat_map(|_| [0.2, 0.5, 0.3]).collect();
        let trajs: Vec<Trajectory> = (0..9)
            .map(|i| {
                let mut tr = mdp.sample_trajectory(&mu, t_max, &mut rng);
                let len = t_max - i % 4;
                tr.actions.truncate(len);
                tr.rewards.truncate(len);
                tr.states.truncate(len + 1);
                tr
            })
            .collect();
        let theta: Vec<f64> = (0..ns * na).map(|_| rng.random::<f64>() - 0.5).collect();
        let pol = TabularSoftmax::new(ns, na, theta);
        let sv: Vec<f64> = (0..ns).map(|x| x as f64 * 0.3 - 0.4).collect();
        let q: Vec<f64> = (0..ns * na).map(|i| (i as f64 * 0.37).sin()).collect();
        let n = trajs.len();
        let pad = |f: &dyn Fn(&Trajectory, usize) -> f64, cols: usize, extra: usize| -> Vec<f64> {
            let mut out = vec![0.0; n * cols];
            for (i, tr) in trajs.iter().enumerate() {
                for s in 0..tr.len() + extra {
                    out[i * cols + s] = f(tr, s);
                }
            }
            out
        };
        let u = pad(&|tr, s| pol.prob(tr.states[s], tr.actions[s]).ln(), t_max, 0);
        let log_mu = pad(&|tr, s| mu[tr.states[s] * na + tr.actions[s]].ln(), t_max, 0);
        let rewards = pad(&|tr, s| tr.rewards[s], t_max, 0);
        let values = pad(&|tr, s| sv[tr.states[s]], t_max + 1, 1);
        let taken = pad(&|tr, s| q[tr.states[s] * na + tr.actions[s]], t_max, 0);
        let qmean = |p: &[f64], x: usize| (0..na).map(|b| p[x * na + b] * q[x * na + b]).sum::<f64>();
        let behaviour = pad(&|tr, s| qmean(&mu, tr.states[s]), t_max + 1, 1);
        let means = pad(&|tr, s| qmean(pol.probs(), tr.states[s]), t_max + 1, 1);
        let lengths: Vec<usize> = trajs.iter().map(Trajectory::len).collect();
        let batch = TabularBatch::new(&trajs, &mu, na);
        let v: Vec<f64> = (0..ns * na).map(|i| (i as f64 * 0.9).cos()).collect();
        let (sc, ac) = (Critic::StateValues(sv.clone()), Critic::ActionValues(q.clone()));
        let mut worst: f64 = 0.0;
        for (e, critic) in [
            (est("is"), None),
            (est("dr"), Some(&sc)),
            (est("dr"), Some(&ac)),
            (est("dr-trunc"), Some(&sc)),
            (est("taypo-1"), Some(&sc)),
            (est("taypo-2"), Some(&sc)),
            (est("taypo-2"), Some(&ac)),
            (est("taypo-3"), Some(&sc)),
            (est("maml"), Some(&sc)),
        ] {
            let prepared = batch.prepare(e, 0.85, critic).unwrap();
            let srows = batch.rows(&pol, &prepared, critic);
            let (value, grad, hv) = BatchObjective::new(&prepared, &srows).unwrap().gradient_and_hvp(&v);

            let row_critic = match critic {
                None => RowCritic::None,
                Some(Critic::StateValues(_)) => RowCritic::State(Padded::new(&values, n, t_max + 1)),
                Some(Critic::ActionValues(_)) => RowCritic::Action {
                    taken: Padded::new(&taken, n, t_max),
                    behaviour_means: Padded::new(&behaviour, n, t_max + 1),
                    critic_means: Some(Padded::new(&means, n, t_max + 1)),
                },
            };
            let data = RowData {
                u: Padded::new(&u, n, t_max),
                log_mu: Padded::new(&log_mu, n, t_max),
                rewards: Padded::new(&rewards, n, t_max),
                lengths: Some(&lengths),
                critic: row_critic,
            };
            let obj = RowObjective::new(e, 0.85, &data).unwrap();
            // J v in the row layout, unpacked to padded directions.
            let mut jv = vec![0.0; srows.num_rows()];
            srows.jvp(&v, &mut jv);
            let (jv_u, jv_c) = obj.unpack(&jv);
            let (g, h) = obj.gradient_and_hvp(&jv_u, jv_c.as_deref()).unwrap();
            let (gr, hr) = (obj.pack(&g.u, g.c.as_deref()), obj.pack(&h.u, h.c.as_deref()));
            let (mut grad2, mut hv2) = (vec![0.0; ns * na], vec![0.0; ns * na]);
            srows.gradient_and_hvp_add(&gr, &hr, &v, &mut grad2, &mut hv2);
            assert!((g.value - value).abs() < 1e-12, "{e}: value {} vs {value}", g.value);
            for (a, b) in grad.iter().zip(&grad2).chain(hv.iter().zip(&hv2)) {
                worst = worst.max((a - b).abs());
                assert!((a - b).abs() < 1e-12 * (1.0 + a.abs()), "{e}: tabular {a} vs rows {b}");
            }
        }
        eprintln!("rows vs tabular: max abs difference {worst:e}");
    }

    /// Identity 1 of docs/theory.md#identities: TayPO-K with K ≥ T differs from DR (state critic)
    /// by a θ-independent
    /// constant, so its row gradient and HVP are DR's.
    #[test]
    fn taypo_k_with_k_at_least_t_has_dr_derivatives() {
        let d = Data::random(7, 6, 5);
        let w: Vec<f64> = (0..d.n * d.t).map(|i| (i as f64).sin()).collect();
        let (gd, hd) = d.objective(est("dr"), 1, &d.u, None).unwrap().gradient_and_hvp(&w, None).unwrap();
        for k in [5, 7] {
            let (gk, hk) = d
                .objective(est(&format!("taypo-{k}")), 1, &d.u, None)
                .unwrap()
                .gradient_and_hvp(&w, None)
                .unwrap();
            for (a, b) in gd.u.iter().zip(&gk.u).chain(hd.u.iter().zip(&hk.u)) {
                assert!((a - b).abs() < 1e-12, "taypo-{k}: {b} vs DR {a}");
            }
        }
        // Negative control: K < T differs.
        let g4 = d.objective(est("taypo-4"), 1, &d.u, None).unwrap().gradient();
        assert!(gd.u.iter().zip(&g4.u).any(|(a, b)| (a - b).abs() > 1e-6));
    }

    /// The dense Hessian through [`IdentityRows::outer_add`] (what `BatchObjective::hessian`
    /// gives with the public `prepared()` and `rows()`) equals HVPs with unit directions.
    #[test]
    fn dense_row_hessian_equals_unit_hvps() {
        let d = Data::random(3, 4, 5);
        for (e, kind) in [(est("dr"), 2), (est("taypo-2"), 1), (est("taypo-3"), 1), (est("dr-trunc"), 1)] {
            let obj = d.objective(e, kind, &d.u, None).unwrap();
            let (_, _, h) = BatchObjective::new(obj.prepared(), obj.rows()).unwrap().hessian();
            let k = obj.rows().num_rows();
            for j in 0..k {
                let mut unit = vec![0.0; k];
                unit[j] = 1.0;
                let (_, _, col) =
                    BatchObjective::new(obj.prepared(), obj.rows()).unwrap().gradient_and_hvp(&unit);
                for i in 0..k {
                    assert!(
                        (h[i * k + j] - col[i]).abs() < 1e-12,
                        "{e}: H[{i}][{j}] {} vs {}",
                        h[i * k + j],
                        col[i]
                    );
                }
            }
        }
    }

    #[test]
    fn bad_input_is_named() {
        let d = Data::random(2, 3, 4);
        let (n, t) = (d.n, d.t);
        let msg = |r: Result<RowObjective>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg(d.objective(est("dr"), 0, &d.u, None)).contains("invalid critic"));
        let mut u = d.u.clone();
        u[t + 1] = f64::NAN;
        // Trajectory 1 is empty (padding ignored); trajectory 0 is full.
        assert!(msg(d.objective(est("is"), 0, &u, None)).is_empty());
        u[1] = f64::INFINITY;
        assert!(msg(d.objective(est("is"), 0, &u, None)).contains("invalid u[0][1]: must be finite"));
        u[1] = 800.0;
        assert!(msg(d.objective(est("is"), 0, &u, None)).contains("invalid u[0][1]"));
        let short = &d.u[..n * t - 1];
        let data = RowData {
            u: Padded::new(&d.u, n, t),
            log_mu: Padded::new(short, n, t - 1),
            rewards: Padded::new(&d.rewards, n, t),
            lengths: None,
            critic: RowCritic::None,
        };
        assert!(
            msg(RowObjective::new(est("is"), 0.9, &data)).contains("invalid log_mu: expected shape (3, 4)")
        );
        let data = RowData { log_mu: Padded::new(&d.log_mu, n, t), lengths: Some(&[4, 5, 0][..]), ..data };
        assert!(
            msg(RowObjective::new(est("is"), 0.9, &data))
                .contains("invalid lengths[1]: must be in 0..=4, got 5")
        );
        let data = RowData { lengths: None, ..data };
        assert!(msg(RowObjective::new(est("is"), 1.0, &data)).contains("invalid gamma"));
        let data = RowData {
            critic: RowCritic::Action {
                taken: Padded::new(&d.taken, n, t),
                behaviour_means: Padded::new(&d.behaviour, n, t + 1),
                critic_means: None,
            },
            ..data
        };
        assert!(msg(RowObjective::new(est("dr"), 0.9, &data)).contains("invalid critic_means"));
        assert!(msg(RowObjective::new(est("dr-trunc"), 0.9, &data)).contains("dr-trunc"));
        assert!(msg(RowObjective::new(est("taypo-2"), 0.9, &data)).is_empty());
        let e = parse_estimator("taypo-x", 1.0, TaylorDiscount::Absolute).unwrap_err().to_string();
        assert!(e.starts_with("invalid estimator:"), "{e}");
        assert!(
            parse_estimator("nope", 1.0, TaylorDiscount::Absolute)
                .unwrap_err()
                .to_string()
                .contains("estimator")
        );
        assert!(parse_estimator("dr", f64::NAN, TaylorDiscount::Absolute).is_err());
        let obj = d.objective(est("dr"), 1, &d.u, None).unwrap();
        assert!(obj.hvp(&d.u[1..], None).unwrap_err().to_string().contains("invalid direction"));
        assert!(obj.hvp(&d.u, Some(&d.means)).unwrap_err().to_string().contains("direction_c"));
    }
}
