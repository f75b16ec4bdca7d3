//! Off-policy value estimates V̂(θ) and their exact derivatives (docs/theory.md#estimators).
//!
//! | estimator | name | docs/theory.md | prior work |
//! |---|---|---|---|
//! | step-wise importance sampling | `is` | `#importance-sampling`, Eq. 1 | DiCE |
//! | doubly robust | `dr` | `#doubly-robust`, Eq. 2–4 | Loaded DiCE |
//! | truncated doubly robust | `dr-trunc` | `#truncated-dr`, Eq. 5 | V-trace-style baseline |
//! | TayPO-K | `taypo-K` | `#taypo-k`, Eq. 6–9 | TayPO-1 = LVC (ProMP); TayPO-2 new |
//! | naive score surrogate | `maml` | `#naive-score`, Eq. 11 | MAML's inner loss |
//! | IS with TMAML's control variate | `tmaml`, `tmaml-past` | `#tmaml` | TMAML (biased Hessian); its unbiased variant |
//!
//! The design: [`local`] holds one pure kernel per estimator over a trajectory's *rows*
//! (likelihood ratios, critic means); [`PreparedBatch`] holds the θ-independent inputs of
//! a batch of trajectories; [`chain::BatchObjective`] maps the kernels' row derivatives
//! to parameter gradients, Hessian-vector products and Hessians through any policy's
//! [`crate::policy::ScoreRows`], one code path for all estimators. [`rows`] exposes the same
//! derivatives with the rows themselves as parameters (u = log π_θ(a_t|x_t) as padded
//! arrays), for policies that live in an autodiff framework.

pub mod chain;
pub mod local;
pub mod rows;

use std::fmt;
use std::str::FromStr;

pub use chain::BatchObjective;
pub use local::{Scalar, Taylor2Pairs, Taylor2Shape, TaylorDiscount};
pub use rows::{IdentityRows, Padded, RowCritic, RowData, RowGradient, RowHvp, RowObjective};

use crate::error::{Result, invalid};

/// Longest trajectory whose full Hessian is assembled from dense T×T row blocks (TayPO-K,
/// K ≥ 3: 8 MB per block and about T³ dual operations); longer ones get it from D
/// Hessian-vector products ([`BatchObjective::hessian`]), linear in T.
pub const DENSE_HESSIAN_MAX_T: usize = 1000;

/// An off-policy value estimator.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Estimator {
    /// Step-wise importance sampling (no critic).
    Is,
    /// Doubly robust with a state- or action-value critic.
    Dr,
    /// Truncated doubly robust with truncation levels ρ̄ and c̄ (state-value critic).
    TruncatedDr {
        /// ρ̄, truncation of the ratio multiplying the TD error.
        rho_bar: f64,
        /// c̄, truncation of the ratios in the trace.
        c_bar: f64,
    },
    /// TayPO-K, the K-th order Taylor expansion of the value around μ.
    TayPo {
        /// K ≥ 1.
        order: usize,
        /// Discount convention of the ratio products.
        discount: TaylorDiscount,
    },
    /// MAML's naive score-function surrogate.
    NaiveScore {
        /// Discount convention (γ^t weights or none).
        discount: TaylorDiscount,
    },
    /// Step-wise IS (DiCE) with TMAML's control variate (state-value critic as baselines).
    Tmaml {
        /// Whether the control variate's product of ratios runs over steps s ≤ t (`tmaml`,
        /// TMAML's form: a biased Hessian) or s < t only (`tmaml-past`: unbiased).
        through_t: bool,
    },
}

impl Estimator {
    /// The estimator's command-line name (`is`, `dr`, `dr-trunc`, `taypo-K`, `maml`).
    pub fn name(&self) -> String {
        match self {
            Estimator::Is => "is".into(),
            Estimator::Dr => "dr".into(),
            Estimator::TruncatedDr { .. } => "dr-trunc".into(),
            Estimator::TayPo { order, .. } => format!("taypo-{order}"),
            Estimator::NaiveScore { .. } => "maml".into(),
            Estimator::Tmaml { through_t: true } => "tmaml".into(),
            Estimator::Tmaml { through_t: false } => "tmaml-past".into(),
        }
    }

    /// The estimator names the command line and Python accept (`taypo-K` for any order
    /// K ≥ 1; the aliases `dice`, `loaded-dice` and `truncated-dr` are accepted too).
    pub const NAMES: [&'static str; 8] =
        ["is", "dr", "dr-trunc", "taypo-K", "lvc", "maml", "tmaml", "tmaml-past"];

    /// The estimators of the paper's Fig. 1: IS, DR, truncated DR (ρ̄ = c̄ = 1), TayPO-1, TayPO-2.
    pub fn paper_set() -> Vec<Estimator> {
        ["is", "dr", "dr-trunc", "taypo-1", "taypo-2"]
            .iter()
            .map(|s| s.parse().expect("valid name"))
            .collect()
    }

    /// Parses a comma-separated list of names, setting every truncated DR's levels to
    /// `truncation`.
    pub fn parse_list(list: &str, truncation: f64) -> Result<Vec<Estimator>> {
        if !(truncation.is_finite() || truncation == f64::INFINITY)
            || truncation.is_nan()
            || truncation <= 0.0
        {
            return Err(invalid("truncation", format!("must be > 0, got {truncation}")));
        }
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let mut e: Estimator = name.parse()?;
            if let Estimator::TruncatedDr { rho_bar, c_bar } = &mut e {
                *rho_bar = truncation;
                *c_bar = truncation;
            }
            if !out.contains(&e) {
                out.push(e);
            }
        }
        if out.is_empty() {
            return Err(invalid("estimators", format!("no estimator named in {list:?}")));
        }
        Ok(out)
    }

    /// Whether the full Hessian runs in time and memory linear in T (semiseparable row
    /// Hessians): every estimator but TayPO-K with K ≥ 3, whose row Hessians are dense
    /// (T dual passes of O(T·min(K, T)) each, a T×T block per trajectory).
    pub fn has_linear_hessian(&self) -> bool {
        !matches!(self, Estimator::TayPo { order, .. } if *order >= 3)
            && !matches!(self, Estimator::Tmaml { .. })
    }

    /// Whether the estimate of the finite-horizon value bootstraps with the critic at x_T
    /// (the critic-reading estimators but TMAML, whose value part is IS without bootstrap;
    /// IS and TMAML estimate J_T with bootstrap 0).
    pub fn bootstraps(&self) -> bool {
        !matches!(self, Estimator::Is | Estimator::Tmaml { .. })
    }

    /// Whether the estimator reads a critic.
    pub fn needs_critic(&self) -> bool {
        !matches!(self, Estimator::Is)
    }
}

impl fmt::Display for Estimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Estimator {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "is" | "dice" => Estimator::Is,
            "dr" | "loaded-dice" => Estimator::Dr,
            "dr-trunc" | "truncated-dr" => Estimator::TruncatedDr { rho_bar: 1.0, c_bar: 1.0 },
            "lvc" => Estimator::TayPo { order: 1, discount: TaylorDiscount::Absolute },
            "maml" => Estimator::NaiveScore { discount: TaylorDiscount::Absolute },
            "tmaml" => Estimator::Tmaml { through_t: true },
            "tmaml-past" => Estimator::Tmaml { through_t: false },
            _ => {
                if let Some(k) = lower.strip_prefix("taypo-") {
                    let order: usize = k.parse().map_err(|_| {
                        invalid("estimators", format!("{s:?}: the order K in taypo-K must be an integer ≥ 1"))
                    })?;
                    if order < 1 {
                        return Err(invalid(
                            "estimators",
                            format!("{s:?}: TayPO order K must be ≥ 1, got {order}"),
                        ));
                    }
                    Estimator::TayPo { order, discount: TaylorDiscount::Absolute }
                } else {
                    return Err(invalid(
                        "estimators",
                        format!(
                            "unknown estimator {s:?} (known: {}, with K ≥ 1 in taypo-K)",
                            Estimator::NAMES.join(", ")
                        ),
                    ));
                }
            }
        })
    }
}

/// A trajectory's critic values, as the estimators read them.
#[derive(Clone, Copy, Debug)]
pub enum PathCritic<'a> {
    /// No critic.
    None,
    /// V̂(x_0) … V̂(x_T).
    State(&'a [f64]),
    /// An action-value critic: Q̂(x_t, a_t) for t < T, and Σ_b μ(b|x_t) Q̂(x_t, b) for t ≤ T.
    Action {
        /// Q̂(x_t, a_t).
        taken: &'a [f64],
        /// Σ_b μ(b|x_t) Q̂(x_t, b).
        behaviour_mean: &'a [f64],
    },
}

/// θ-independent inputs of a batch of trajectories for one estimator: per trajectory the
/// constant v_0, per step the kernel's `signal`, and the row layout.
#[derive(Clone, Debug)]
pub struct PreparedBatch {
    /// The estimator.
    pub estimator: Estimator,
    /// γ.
    pub gamma: f64,
    /// Whether trajectories carry critic-mean rows (DR with an action-value critic).
    pub critic_means: bool,
    /// v_0 per trajectory.
    pub v0: Vec<f64>,
    /// Per-step signal, trajectories concatenated.
    pub signal: Vec<f64>,
    /// Trajectory n's steps are `step_start[n]..step_start[n+1]` (N + 1 entries).
    pub step_start: Vec<usize>,
    /// γ^0, γ^1, … up to the longest trajectory.
    powers: Vec<f64>,
    /// TayPO-2: weighting of the pair term ([`PreparedBatch::with_taylor2`]).
    pairs: Taylor2Pairs,
    /// TayPO-2: the bound κ on |ρ_t − 1| (∞: none).
    ratio_clip: f64,
    /// TayPO-2: the bound κ_p on |ρ_t − 1| in the pair term (κ unless set).
    pair_clip: f64,
    /// TayPO-2: the pair scale c of each trajectory (1 unless [`Taylor2Pairs::Normalised`]).
    pair_scale: Vec<f64>,
    /// TMAML: the control variate's baseline b_t = V̂(x_t) per step (empty otherwise).
    baseline: Vec<f64>,
}

impl PreparedBatch {
    /// An empty batch for `estimator`.
    pub fn new(estimator: Estimator, gamma: f64) -> Self {
        Self {
            estimator,
            gamma,
            critic_means: false,
            v0: Vec::new(),
            signal: Vec::new(),
            step_start: vec![0],
            powers: vec![1.0],
            pairs: Taylor2Pairs::Discounted,
            ratio_clip: f64::INFINITY,
            pair_clip: f64::INFINITY,
            pair_scale: Vec::new(),
            baseline: Vec::new(),
        }
    }

    /// TayPO-2 with another shape of its second-order term (meta-RL settings, see
    /// [`Taylor2Shape`]): the pair term weighted by `pairs`, |ρ_t − 1| clipped to
    /// `ratio_clip` (`None`: no clip), and in the pair term to `pair_clip` instead where
    /// given (∞: the pair term unclipped). The defaults give the paper's estimator; other
    /// estimators accept only the defaults.
    pub fn with_taylor2(
        mut self,
        pairs: Taylor2Pairs,
        ratio_clip: Option<f64>,
        pair_clip: Option<f64>,
    ) -> Result<Self> {
        let is_taylor2 = matches!(self.estimator, Estimator::TayPo { order: 2, .. });
        if !is_taylor2 && (pairs != Taylor2Pairs::Discounted || ratio_clip.is_some() || pair_clip.is_some()) {
            return Err(invalid(
                "estimator",
                format!("{}: pair weighting and ratio clipping are settings of taypo-2 only", self.estimator),
            ));
        }
        if let Some(k) = ratio_clip
            && !(k.is_finite() && k > 0.0)
        {
            return Err(invalid("ratio clip", format!("must be finite and > 0, got {k}")));
        }
        if let Some(k) = pair_clip
            && (k.is_nan() || k <= 0.0)
        {
            return Err(invalid("pair clip", format!("must be > 0 (inf: no clip), got {k}")));
        }
        self.pairs = pairs;
        self.ratio_clip = ratio_clip.unwrap_or(f64::INFINITY);
        self.pair_clip = pair_clip.unwrap_or(self.ratio_clip);
        self.pair_scale = (0..self.len()).map(|n| self.pair_scale_of(self.steps(n).len())).collect();
        Ok(self)
    }

    /// The pair scale c of a trajectory of `t` steps under this batch's settings.
    fn pair_scale_of(&self, t: usize) -> f64 {
        match (self.pairs, self.estimator) {
            (Taylor2Pairs::Normalised, Estimator::TayPo { discount, .. }) => {
                local::taylor2_pair_scale(discount, self.gamma, t)
            }
            _ => 1.0,
        }
    }

    /// The TayPO-2 shape of trajectory n.
    fn taylor2_shape(&self, n: usize) -> Taylor2Shape {
        Taylor2Shape {
            pair_scale: self.pair_scale[n],
            ratio_clip: self.ratio_clip,
            pair_clip: self.pair_clip,
        }
    }

    /// Records a new trajectory of `t` steps: its start, its pair scale, and the powers of γ.
    fn finish_trajectory(&mut self, t: usize) {
        self.step_start.push(self.signal.len());
        self.pair_scale.push(self.pair_scale_of(t));
        while self.powers.len() <= t {
            let last = *self.powers.last().expect("starts with γ^0");
            self.powers.push(last * self.gamma);
        }
    }

    /// Number of trajectories.
    pub fn len(&self) -> usize {
        self.v0.len()
    }
    /// Whether the batch holds no trajectory.
    pub fn is_empty(&self) -> bool {
        self.v0.is_empty()
    }
    /// Total number of steps.
    pub fn n_steps(&self) -> usize {
        self.signal.len()
    }
    /// Ratio rows of trajectory n.
    pub fn steps(&self, n: usize) -> std::ops::Range<usize> {
        self.step_start[n]..self.step_start[n + 1]
    }
    /// Critic-mean rows of trajectory n (T + 1 of them), offset by `n_steps()`.
    pub fn mean_rows(&self, n: usize) -> std::ops::Range<usize> {
        let ns = self.n_steps();
        ns + self.step_start[n] + n..ns + self.step_start[n + 1] + n + 1
    }
    /// Number of rows the policy must provide.
    pub fn n_rows(&self) -> usize {
        if self.critic_means { 2 * self.n_steps() + self.len() } else { self.n_steps() }
    }

    /// Appends a trajectory with rewards r_0..r_{T−1} and its critic values.
    ///
    /// Signals (docs/theory.md#estimators): IS r_t; DR (state) δ_t = r_t + γV̂(x_{t+1}) − V̂(x_t),
    /// v_0 = V̂(x_0);
    /// DR (action) r_t − Q̂(x_t, a_t) with critic-mean rows; TayPO-K and the naive score
    /// Â_t = G_t − V̂(x_t), G_t = r_t + γG_{t+1}, G_T = V̂(x_T), v_0 = V̂(x_0) (state), or
    /// Â_t = Q̂(x_t,a_t) − Σ_b μ(b|x_t)Q̂(x_t,b), v_0 = Σ_b μ(b|x_0)Q̂(x_0,b) (action).
    pub fn push(&mut self, rewards: &[f64], critic: PathCritic) -> Result<()> {
        let t = rewards.len();
        let g = self.gamma;
        let n = self.len();
        let state_len = |v: &[f64]| -> Result<()> {
            if v.len() != t + 1 {
                return Err(invalid(
                    format!("critic values of trajectory {n}"),
                    format!("expected {} (T + 1) state values, got {}", t + 1, v.len()),
                ));
            }
            Ok(())
        };
        let est = self.estimator;
        let no_critic =
            || invalid("critic", format!("estimator {est} needs a critic; only `is` works without one"));
        let (v0, means) = match (est, critic) {
            (Estimator::Is, _) => {
                self.signal.extend_from_slice(rewards);
                (0.0, false)
            }
            (_, PathCritic::None) => return Err(no_critic()),
            (Estimator::Dr | Estimator::TruncatedDr { .. }, PathCritic::State(v)) => {
                state_len(v)?;
                self.signal.extend((0..t).map(|i| rewards[i] + g * v[i + 1] - v[i]));
                (v[0], false)
            }
            (Estimator::Dr, PathCritic::Action { taken, behaviour_mean }) => {
                if taken.len() != t || behaviour_mean.len() != t + 1 {
                    return Err(invalid(format!("critic values of trajectory {n}"), "wrong lengths"));
                }
                self.signal.extend((0..t).map(|i| rewards[i] - taken[i]));
                (0.0, true)
            }
            (Estimator::TruncatedDr { .. }, PathCritic::Action { .. }) => {
                return Err(invalid(
                    "critic",
                    "dr-trunc is defined for a state-value critic (state_values), not action_values",
                ));
            }
            (Estimator::Tmaml { .. }, PathCritic::State(v)) => {
                state_len(v)?;
                self.signal.extend_from_slice(rewards);
                self.baseline.extend_from_slice(&v[..t]);
                (0.0, false)
            }
            (Estimator::Tmaml { .. }, PathCritic::Action { .. }) => {
                return Err(invalid(
                    "critic",
                    "tmaml is defined for a state-value critic (state_values), not action_values",
                ));
            }
            (Estimator::TayPo { .. } | Estimator::NaiveScore { .. }, PathCritic::State(v)) => {
                state_len(v)?;
                let start = self.signal.len();
                self.signal.resize(start + t, 0.0);
                let mut ret = v[t];
                for i in (0..t).rev() {
                    ret = rewards[i] + g * ret;
                    self.signal[start + i] = ret - v[i];
                }
                (v[0], false)
            }
            (
                Estimator::TayPo { .. } | Estimator::NaiveScore { .. },
                PathCritic::Action { taken, behaviour_mean },
            ) => {
                if taken.len() != t || behaviour_mean.len() != t + 1 {
                    return Err(invalid(format!("critic values of trajectory {n}"), "wrong lengths"));
                }
                self.signal.extend((0..t).map(|i| taken[i] - behaviour_mean[i]));
                (behaviour_mean[0], false)
            }
        };
        if n > 0 && means != self.critic_means {
            return Err(invalid("critic", "all trajectories of a batch need the same kind of critic"));
        }
        self.critic_means = means;
        self.v0.push(v0);
        self.finish_trajectory(t);
        Ok(())
    }

    /// Appends a trajectory whose per-step signal is given directly: the advantages
    /// Â_0..Â_{T−1} (e.g. GAE advantages, normalised per task), with v_0 = 0. For the
    /// estimators whose signal is an advantage (TayPO-K, the naive score), this is the
    /// meta-RL form of [`Self::push`]: the estimate is Σ_t … Â_t without a zeroth-order
    /// term (docs/theory.md#inner-objectives, ProMP's per-step losses). Other estimators (IS, DR)
    /// read rewards
    /// and a critic: use [`Self::push`].
    pub fn push_advantages(&mut self, advantages: &[f64]) -> Result<()> {
        if !matches!(self.estimator, Estimator::TayPo { .. } | Estimator::NaiveScore { .. }) {
            return Err(invalid(
                "estimator",
                format!(
                    "{}: given advantages are a signal only for taypo-K and maml; use push with rewards",
                    self.estimator
                ),
            ));
        }
        if let Some(i) = advantages.iter().position(|a| !a.is_finite()) {
            return Err(invalid(
                format!("advantages[{i}] of trajectory {}", self.len()),
                format!("must be finite, got {}", advantages[i]),
            ));
        }
        if self.critic_means {
            return Err(invalid("critic", "all trajectories of a batch need the same kind of critic"));
        }
        self.signal.extend_from_slice(advantages);
        self.v0.push(0.0);
        self.finish_trajectory(advantages.len());
        Ok(())
    }

    /// Runs the estimator's kernel on trajectory `n` given its rows; writes the gradient
    /// w.r.t. the ratio rows (and the critic-mean rows, if any) and returns V̂.
    pub fn kernel<S: Scalar>(
        &self,
        n: usize,
        ratios: &[S],
        means: Option<(&[S], &mut [S])>,
        grad: &mut [S],
        scratch: &mut Vec<S>,
    ) -> S {
        let signal = &self.signal[self.steps(n)];
        let (v0, g) = (self.v0[n], self.gamma);
        match self.estimator {
            Estimator::Is | Estimator::Dr => local::doubly_robust(g, v0, signal, ratios, means, grad),
            Estimator::TruncatedDr { rho_bar, c_bar } => {
                local::truncated_doubly_robust(g, rho_bar, c_bar, v0, signal, ratios, grad, scratch)
            }
            Estimator::TayPo { order: 2, discount } => {
                let shape = self.taylor2_shape(n);
                local::taylor2(discount, g, &self.powers[..ratios.len()], v0, signal, ratios, shape, grad)
            }
            Estimator::TayPo { order, discount } => {
                local::taylor(order, discount, g, v0, signal, ratios, grad, scratch)
            }
            Estimator::NaiveScore { discount } => local::naive_score(discount, g, v0, signal, ratios, grad),
            Estimator::Tmaml { through_t } => {
                local::tmaml(g, through_t, signal, &self.baseline[self.steps(n)], ratios, grad, scratch)
            }
        }
    }

    /// Whether [`PreparedBatch::closed_form_row_hvp`] applies to this estimator.
    pub fn has_closed_form_row_hvp(&self) -> bool {
        matches!(
            self.estimator,
            Estimator::Is | Estimator::Dr | Estimator::TayPo { order: 2, .. } | Estimator::NaiveScore { .. }
        )
    }

    /// Closed-form O(T) row Hessian-vector product F·u of trajectory n (ℓ/c-space
    /// direction `u`, written to `out`), from its rows and gradient; `false` when the
    /// estimator has none (then use dual passes of [`PreparedBatch::kernel`]).
    #[allow(clippy::too_many_arguments)]
    pub fn closed_form_row_hvp(
        &self,
        n: usize,
        ratios: &[f64],
        grad: &[f64],
        means: Option<(&[f64], &[f64], &mut [f64])>,
        u: &[f64],
        out: &mut [f64],
    ) -> bool {
        match self.estimator {
            Estimator::Is | Estimator::Dr => local::doubly_robust_row_hvp(grad, means, u, out),
            Estimator::TayPo { order: 2, discount } => local::taylor2_row_hvp(
                discount,
                self.gamma,
                &self.powers[..ratios.len()],
                &self.signal[self.steps(n)],
                ratios,
                self.taylor2_shape(n),
                grad,
                u,
                out,
            ),
            Estimator::NaiveScore { .. } => out.iter_mut().for_each(|x| *x = 0.0),
            _ => return false,
        }
        true
    }

    /// Row Hessian of trajectory n in semiseparable form (see
    /// [`crate::policy::SemiseparableBlocks`]), scaled by `scale`, appended to `out` as one
    /// block over the global rows `ratio_start..ratio_start + T` (and critic-mean rows
    /// `mean_start..mean_start + T + 1`), where the estimator has one; `false` otherwise.
    /// O(T) time and memory (the dense form is O(T²)).
    ///
    /// * IS/DR, state critic: F_jk = g_max(j,k): diag g, u = g, v = 1, β = 1.
    /// * DR, action critic: rows in the order c_0, ℓ_0, c_1, ℓ_1, …, ℓ_{T−1}, c_T with
    ///   diag (0 | g), u = (∂V̂/∂c | g), v = (0 | 1): F[ℓ_j, c_{t+1}] = ∂V̂/∂c_{t+1}·1[j ≤ t].
    /// * Truncated DR: F_jk = 1[ρ_j ≤ c̄] g_k (j < k), F_kk = g_k: v_j = 1[ρ_j ≤ c̄].
    /// * TayPO-2: F_kk = g_k, F_jk = ρ_j ρ_k w(j, k) Â_k: v = ρ, u_k = ρ_k a_k with
    ///   a_k = γ^k Â_k, β = 1 (absolute) or a_k = Â_k, β = γ (from first); with a
    ///   [`Taylor2Shape`], u_k is scaled by c and ρ is 0 outside the pair term's clip.
    /// * TayPO-1: F = diag(g) (V̂ is affine in each ρ_t and has no products).
    /// * The naive score: F = 0 (no block).
    #[allow(clippy::too_many_arguments)]
    pub fn semiseparable_row_hessian(
        &self,
        n: usize,
        ratios: &[f64],
        grad: &[f64],
        grad_c: Option<&[f64]>,
        (ratio_start, mean_start): (usize, usize),
        scale: f64,
        out: &mut crate::policy::SemiseparableBlocks,
    ) -> bool {
        let t = ratios.len();
        match (self.estimator, grad_c) {
            (Estimator::Is | Estimator::Dr, None) => {
                out.begin(1.0);
                for k in 0..t {
                    out.push_row(ratio_start + k, scale * grad[k], scale * grad[k], 1.0);
                }
            }
            (Estimator::Dr, Some(gc)) => {
                out.begin(1.0);
                out.push_row(mean_start, 0.0, scale * gc[0], 0.0);
                for k in 0..t {
                    out.push_row(ratio_start + k, scale * grad[k], scale * grad[k], 1.0);
                    out.push_row(mean_start + k + 1, 0.0, scale * gc[k + 1], 0.0);
                }
            }
            (Estimator::TruncatedDr { c_bar, .. }, None) => {
                let c_tie = c_bar * (1.0 + local::TIE_TOLERANCE);
                out.begin(1.0);
                for k in 0..t {
                    let v = if ratios[k] <= c_tie { 1.0 } else { 0.0 };
                    out.push_row(ratio_start + k, scale * grad[k], scale * grad[k], v);
                }
            }
            (Estimator::TayPo { order: 2, discount }, None) => {
                let signal = &self.signal[self.steps(n)];
                let beta = match discount {
                    TaylorDiscount::Absolute => 1.0,
                    TaylorDiscount::FromFirst => self.gamma,
                };
                let shape = self.taylor2_shape(n);
                out.begin(beta);
                for k in 0..t {
                    let a = match discount {
                        TaylorDiscount::Absolute => self.powers[k] * signal[k],
                        TaylorDiscount::FromFirst => signal[k],
                    };
                    let r = shape.passed(ratios[k]);
                    out.push_row(ratio_start + k, scale * grad[k], scale * r * a * shape.pair_scale, r);
                }
            }
            (Estimator::TayPo { order: 1, .. }, None) => {
                // V̂ = v_0 + Σ_t a_t (ρ_t − 1): F is diagonal, F_kk = g_k.
                out.begin(1.0);
                for k in 0..t {
                    out.push_row(ratio_start + k, scale * grad[k], 0.0, 0.0);
                }
            }
            (Estimator::NaiveScore { .. }, _) => {}
            _ => return false,
        }
        true
    }

    /// Closed-form dense row Hessian of trajectory n (k×k, ratio rows then critic-mean
    /// rows) from its rows and gradient, where one exists (IS, DR, TayPO-2, the naive
    /// score); `false` otherwise.
    pub fn closed_form_row_hessian(
        &self,
        n: usize,
        ratios: &[f64],
        grad: &[f64],
        grad_c: Option<&[f64]>,
        f: &mut [f64],
    ) -> bool {
        match self.estimator {
            Estimator::Is | Estimator::Dr => local::doubly_robust_row_hessian(grad, grad_c, f),
            Estimator::TayPo { order: 2, discount } => {
                let shape = self.taylor2_shape(n);
                local::taylor2_row_hessian(
                    discount,
                    self.gamma,
                    &self.signal[self.steps(n)],
                    ratios,
                    shape,
                    grad,
                    f,
                )
            }
            Estimator::NaiveScore { .. } => f.iter_mut().for_each(|x| *x = 0.0),
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod names_tests {
    use super::*;

    #[test]
    fn every_listed_name_parses() {
        for name in Estimator::NAMES {
            assert!(name.replace('K', "2").parse::<Estimator>().is_ok(), "{name}");
        }
        let msg = "nope".parse::<Estimator>().unwrap_err().to_string();
        assert!(msg.contains("is, dr, dr-trunc, taypo-K, lvc, maml, tmaml, tmaml-past"), "{msg}");
    }
}
