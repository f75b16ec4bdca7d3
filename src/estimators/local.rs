//! Per-trajectory estimator kernels: value and derivatives w.r.t. the trajectory's rows.
//!
//! Each kernel is a pure function of the trajectory's rows (likelihood ratios ρ_t and, for
//! DR with an action-value critic, critic means c_t) and θ-independent inputs (`v0`, a
//! per-step `signal`, γ). It returns V̂ and writes ∂V̂/∂ℓ_t (ℓ_t = log π_θ(a_t|x_t); note
//! ∂ρ_t/∂ℓ_t = ρ_t) and ∂V̂/∂c_t. The kernels are written once, generic over the scalar type:
//! with `f64` they give the gradient in O(T·K); with [`num_dual::Dual64`] rows carrying
//! the tangent of a direction u they also give the row-space Hessian-vector product F·u
//! as the tangent of the gradient (forward-over-reverse), exactly.
//!
//! Notation: P_t = Π_{s≤t} ρ_s, d_t = ρ_t − 1.

use num_dual::DualNum;

/// Scalars the kernels run on: `f64`, or dual numbers for directional derivatives.
pub trait Scalar: DualNum<Primitive = f64> + Copy {}
impl<S: DualNum<Primitive = f64> + Copy> Scalar for S {}

/// How TayPO-K discounts a product of ratios at steps t_1 < … < t_k.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaylorDiscount {
    /// γ^{t_k}: the paper's Eq. (6) (docs/theory.md#taypo-k), an estimate of the value V^π(x_0).
    Absolute,
    /// γ^{t_k − t_1}: ProMP's convention for per-step losses (docs/theory.md#taypo-discount).
    FromFirst,
}

/// How TayPO-2's pair term is weighted against its first-order term (a meta-RL setting;
/// the paper's estimator is [`Taylor2Pairs::Discounted`]; the scale of
/// [`Taylor2Pairs::Normalised`] is [`taylor2_pair_scale`]).
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Taylor2Pairs {
    /// The paper's Eq. (6): every pair t_1 < t_2 with its discount w(t_1, t_2).
    #[default]
    Discounted,
    /// The pair term of each path scaled by c = W_1/W_2, its total first-order weight
    /// W_1 = Σ_t w(t) over its total pair weight W_2 = Σ_{t_1<t_2} w(t_1, t_2)
    /// (computed by `taylor2_pair_scale`), so that first- and second-order terms have the
    /// same scale (for T = 100, γ = 0.99 and γ^{t_2−t_1}: c ≈ 1/37).
    Normalised,
}

/// The shape of TayPO-2's second-order term, per trajectory: with the pair scale c and
/// the ratio clip κ, V̂ = v_0 + Σ_t a_t d̃_t (1 + c H_t) with d̃_t = clip(ρ_t − 1, −κ, κ)
/// and H_t the discounted prefix sum of d̃ ([`taylor2`]). A clipped step contributes its
/// clipped constant and no derivative (as PPO's clip). With a pair clip κ_p ≠ κ the pair
/// term takes p̃_t = clip(ρ_t − 1, −κ_p, κ_p) in place of d̃_t:
/// V̂ = v_0 + Σ_t a_t (d̃_t + c p̃_t P_t), P_t the discounted prefix sum of p̃.
/// [`Taylor2Shape::PAPER`] (c = 1, κ = κ_p = ∞) is the paper's estimator, computed with the
/// same floating-point operations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Taylor2Shape {
    /// c, the weight of the pair term.
    pub pair_scale: f64,
    /// κ > 0, the bound on |ρ_t − 1| in the first-order term (∞: no clipping).
    pub ratio_clip: f64,
    /// κ_p > 0, the bound on |ρ_t − 1| in the pair term (∞: no clipping).
    pub pair_clip: f64,
}

impl Taylor2Shape {
    /// The paper's TayPO-2.
    pub const PAPER: Self = Self { pair_scale: 1.0, ratio_clip: f64::INFINITY, pair_clip: f64::INFINITY };

    /// The shape with one clip κ for both terms.
    pub const fn clipped(pair_scale: f64, clip: f64) -> Self {
        Self { pair_scale, ratio_clip: clip, pair_clip: clip }
    }

    /// clip(ρ − 1, −bound, bound) and whether ρ lies inside (the derivative passes).
    fn clip<S: Scalar>(ratio: S, bound: f64) -> (S, bool) {
        let d = ratio - 1.0;
        if d.re() > bound {
            (S::from(bound), false)
        } else if d.re() < -bound {
            (S::from(-bound), false)
        } else {
            (d, true)
        }
    }

    /// d̃ = clip(ρ − 1, −κ, κ), the first-order term's factor, and whether it passes.
    fn deviation<S: Scalar>(&self, ratio: S) -> (S, bool) {
        Self::clip(ratio, self.ratio_clip)
    }

    /// p̃ = clip(ρ − 1, −κ_p, κ_p), the pair term's factor, and whether it passes.
    fn pair_deviation<S: Scalar>(&self, ratio: S) -> (S, bool) {
        Self::clip(ratio, self.pair_clip)
    }

    /// ρ where the pair term's factor passes its clip, 0 where it does not:
    /// ∂p̃/∂ℓ = ∂²p̃/∂ℓ². The off-diagonal row Hessian entries are products of these.
    pub(crate) fn passed(&self, ratio: f64) -> f64 {
        // Written so that a NaN ratio passes (and shows) rather than vanishing.
        if (ratio - 1.0).abs() > self.pair_clip { 0.0 } else { ratio }
    }
}

/// The pair scale c = W_1/W_2 of [`Taylor2Pairs::Normalised`] for a path of T steps:
/// W_1 = Σ_{t<T} γ^t (absolute) or T (from first); W_2 = Σ_{t_2<T} t_2 γ^{t_2} (absolute)
/// or Σ_{t_2<T} Σ_{t_1<t_2} γ^{t_2−t_1} (from first). 1 when the path has no
/// discounted pair (T ≤ 1 or γ = 0).
pub fn taylor2_pair_scale(discount: TaylorDiscount, gamma: f64, t: usize) -> f64 {
    let (mut first, mut pairs) = (0.0, 0.0);
    // `prefix` = Σ_{t_1<t_2} of the pair weights ending at t_2 (from first: γ(1 + prefix)).
    let (mut power, mut prefix) = (1.0, 0.0);
    for t2 in 0..t {
        match discount {
            TaylorDiscount::Absolute => {
                first += power;
                pairs += t2 as f64 * power;
            }
            TaylorDiscount::FromFirst => {
                first += 1.0;
                pairs += prefix;
                prefix = gamma * (1.0 + prefix);
            }
        }
        power *= gamma;
    }
    if pairs > 0.0 { first / pairs } else { 1.0 }
}

/// Doubly robust (docs/theory.md#doubly-robust), unrolled:
/// V̂ = v_0 + Σ_t γ^t P_t δ_t with a state-value critic (δ_t = `signal[t]` =
/// r_t + γV̂(x_{t+1}) − V̂(x_t), v_0 = V̂(x_0)); step-wise IS is the case V̂ ≡ 0 (δ_t = r_t).
/// With an action-value critic (`means` = c_0..c_T, c_t = Σ_b π(b|x_t)Q̂(x_t,b)):
/// V̂ = c_0 + Σ_t γ^t P_t (b_t + γ c_{t+1}) with b_t = `signal[t]` = r_t − Q̂(x_t,a_t).
///
/// Gradient: ∂V̂/∂ℓ_k = Σ_{t≥k} (term t) (a suffix sum); ∂V̂/∂c_0 = 1, ∂V̂/∂c_{t+1} = γ^{t+1}P_t.
pub fn doubly_robust<S: Scalar>(
    gamma: f64,
    v0: f64,
    signal: &[f64],
    ratios: &[S],
    means: Option<(&[S], &mut [S])>,
    grad: &mut [S],
) -> S {
    let n = ratios.len();
    let mut p = S::one();
    let mut disc = 1.0;
    let mut total;
    match means {
        None => {
            total = S::from(v0);
            for t in 0..n {
                p *= ratios[t];
                let term = p * (disc * signal[t]);
                grad[t] = term;
                total += term;
                disc *= gamma;
            }
        }
        Some((c, grad_c)) => {
            total = c[0];
            grad_c[0] = S::one();
            for t in 0..n {
                p *= ratios[t];
                let boot = p * (disc * gamma);
                let term = p * (disc * signal[t]) + boot * c[t + 1];
                grad_c[t + 1] = boot;
                grad[t] = term;
                total += term;
                disc *= gamma;
            }
        }
    }
    let mut acc = S::zero();
    for g in grad[..n].iter_mut().rev() {
        acc += *g;
        *g = acc;
    }
    total
}

/// Relative tolerance under which a ratio equal to its truncation level counts as a tie.
pub const TIE_TOLERANCE: f64 = 1e-12;

/// Truncated doubly robust (V-trace style, docs/theory.md#truncated-dr), with ρ̄_t = min(ρ_t, ρ̄) and
/// c̄_t = min(ρ_t, c̄): V̂ = v_0 + Σ_t γ^t (Π_{s<t} c̄_s) ρ̄_t δ_t.
///
/// A truncated factor has derivative ρ_t·1[ρ_t ≤ bound] w.r.t. ℓ_t (the tie counts as
/// untruncated), so ∂V̂/∂ℓ_k = 1[ρ_k ≤ ρ̄](term k) + 1[ρ_k ≤ c̄] Σ_{t>k}(term t).
/// With ρ̄ = c̄ = ∞ this is [`doubly_robust`] with a state-value critic.
///
/// A ratio within [`TIE_TOLERANCE`] (relative) of its bound counts as a tie, so that an
/// on-policy ratio computed as exp(log π − log μ), which may round to 1 + 2⁻⁵², still
/// passes its derivative at ρ̄ = 1.
#[allow(clippy::too_many_arguments)]
pub fn truncated_doubly_robust<S: Scalar>(
    gamma: f64,
    rho_bar: f64,
    c_bar: f64,
    v0: f64,
    signal: &[f64],
    ratios: &[S],
    grad: &mut [S],
    scratch: &mut Vec<S>,
) -> S {
    let n = ratios.len();
    let (rho_tie, c_tie) = (rho_bar * (1.0 + TIE_TOLERANCE), c_bar * (1.0 + TIE_TOLERANCE));
    scratch.clear();
    let mut prod = S::one();
    let mut disc = 1.0;
    let mut total = S::from(v0);
    for t in 0..n {
        let r = ratios[t];
        let rb = if r.re() <= rho_tie { r } else { S::from(rho_bar) };
        let term = prod * rb * (disc * signal[t]);
        scratch.push(term);
        total += term;
        prod *= if r.re() <= c_tie { r } else { S::from(c_bar) };
        disc *= gamma;
    }
    let mut after = S::zero();
    for k in (0..n).rev() {
        let r = ratios[k].re();
        let mut g = S::zero();
        if r <= rho_tie {
            g += scratch[k];
        }
        if r <= c_tie {
            g += after;
        }
        grad[k] = g;
        after += scratch[k];
    }
    total
}

/// TayPO-K (docs/theory.md#taypo-k) in O(T·K) (docs/theory.md#taypo-k-recursion):
/// V̂_K = v_0 + Σ_{k=1..K} Σ_{t_1<…<t_k} w(t_1, t_k) Π_i d_{t_i} Â_{t_k}, with Â_t = `signal[t]`
/// and w = γ^{t_k} ([`TaylorDiscount::Absolute`]) or γ^{t_k−t_1} ([`TaylorDiscount::FromFirst`]).
///
/// Grouping by the last index, V̂_K = v_0 + Σ_t a_t d_t Σ_{j<K} h_j(t), where h_0 = 1 and
/// h_j(t+1) = β (h_j(t) + d_t h_{j−1}(t)) (discounted elementary symmetric sums of the
/// prefix d_0..d_{t−1}); a_t = γ^t Â_t, β = 1 (absolute) or a_t = Â_t, β = γ (from first).
/// The gradient follows by the adjoint recursion
/// λ_j(t) = a_t d_t + β λ_j(t+1) + β d_t λ_{j+1}(t+1),
/// ∂V̂/∂d_t = a_t Σ_{j<K} h_j(t) + β Σ_{j≥1} λ_j(t+1) h_{j−1}(t), and ∂V̂/∂ℓ_t = ρ_t ∂V̂/∂d_t.
///
/// A product of k ratios needs k distinct steps, so the terms of order k > T are empty:
/// K > T is computed as K = T (same value and derivatives, in O(T·min(K, T))).
#[allow(clippy::too_many_arguments)]
pub fn taylor<S: Scalar>(
    order: usize,
    discount: TaylorDiscount,
    gamma: f64,
    v0: f64,
    signal: &[f64],
    ratios: &[S],
    grad: &mut [S],
    scratch: &mut Vec<S>,
) -> S {
    let n = ratios.len();
    let order = order.min(n).max(1);
    let km = order - 1; // number of h_j with j ≥ 1
    let beta = match discount {
        TaylorDiscount::Absolute => 1.0,
        TaylorDiscount::FromFirst => gamma,
    };
    // scratch = [h(0) … h(n−1) | a_0 … a_{n−1} | h_cur | λ], each h of length km.
    scratch.clear();
    scratch.resize(n * km + n + 2 * km, S::zero());
    let (hs, rest) = scratch.split_at_mut(n * km);
    let (a_s, rest) = rest.split_at_mut(n);
    let (hcur, lam) = rest.split_at_mut(km);
    let mut total = S::from(v0);
    let mut disc = 1.0;
    for t in 0..n {
        let a = match discount {
            TaylorDiscount::Absolute => disc * signal[t],
            TaylorDiscount::FromFirst => signal[t],
        };
        a_s[t] = S::from(a);
        let d = ratios[t] - 1.0;
        hs[t * km..(t + 1) * km].copy_from_slice(hcur);
        let e = hcur.iter().fold(S::one(), |acc, h| acc + *h);
        total += d * e * a;
        for j in (1..=km).rev() {
            let prev = if j == 1 { S::one() } else { hcur[j - 2] };
            hcur[j - 1] = (hcur[j - 1] + d * prev) * beta;
        }
        disc *= gamma;
    }
    for t in (0..n).rev() {
        let a = a_s[t].re();
        let d = ratios[t] - 1.0;
        let h = &hs[t * km..(t + 1) * km];
        let e = h.iter().fold(S::one(), |acc, x| acc + *x);
        let mut dl = e * a;
        for j in 1..=km {
            let prev = if j == 1 { S::one() } else { h[j - 2] };
            dl += lam[j - 1] * prev * beta;
        }
        for j in 1..=km {
            let next = if j < km { lam[j] } else { S::zero() };
            lam[j - 1] = d * a + lam[j - 1] * beta + next * d * beta;
        }
        grad[t] = ratios[t] * dl;
    }
    total
}

/// [`taylor`] for K = 2 without the general-K bookkeeping: with H_0 = 0,
/// H_{t+1} = β(H_t + d_t), V̂ = v_0 + Σ_t a_t d_t (1 + H_t), and the adjoint
/// Λ_t = a_t d_t + βΛ_{t+1} gives ∂V̂/∂d_t = a_t (1 + H_t) + βΛ_{t+1}. Same result as
/// `taylor(2, …)` (tested), about twice as fast.
///
/// With a [`Taylor2Shape`] (pair scale c, clip κ): d_t → d̃_t = clip(d_t, ±κ),
/// V̂ = v_0 + Σ_t a_t d̃_t (1 + c H_t), ∂V̂/∂d̃_t = a_t (1 + c H_t) + cβΛ_{t+1}, and
/// ∂V̂/∂ℓ_t = ρ_t ∂V̂/∂d̃_t inside the clip, 0 outside.
#[allow(clippy::too_many_arguments)]
pub fn taylor2<S: Scalar>(
    discount: TaylorDiscount,
    gamma: f64,
    powers: &[f64],
    v0: f64,
    signal: &[f64],
    ratios: &[S],
    shape: Taylor2Shape,
    grad: &mut [S],
) -> S {
    let n = ratios.len();
    // a_t = γ^t Â_t (absolute, β = 1) or Â_t (from first, β = γ); `powers[t]` = γ^t.
    let (beta, absolute) = match discount {
        TaylorDiscount::Absolute => (1.0, true),
        TaylorDiscount::FromFirst => (gamma, false),
    };
    let c = shape.pair_scale;
    let a = |t: usize| if absolute { powers[t] * signal[t] } else { signal[t] };
    if shape.pair_clip.to_bits() != shape.ratio_clip.to_bits() {
        return taylor2_pair_clip(beta, c, a, v0, ratios, shape, grad);
    }
    let mut total = S::from(v0);
    let mut h = S::zero();
    // Forward: store H_t in grad[t]. (With c = 1 every product by c is exact: the paper's
    // estimator keeps its bits.)
    for t in 0..n {
        let (d, _) = shape.deviation(ratios[t]);
        grad[t] = h;
        total += d * (h * c + 1.0) * a(t);
        h = (h + d) * beta;
    }
    let mut lam = S::zero();
    for t in (0..n).rev() {
        let at = a(t);
        let (d, passed) = shape.deviation(ratios[t]);
        let dl = (grad[t] * c + 1.0) * at + lam * (beta * c);
        lam = d * at + lam * beta;
        grad[t] = if passed { ratios[t] * dl } else { S::zero() };
    }
    total
}

/// [`taylor2`] with its own clip κ_p for the pair term:
/// V̂ = v_0 + Σ_t a_t (d̃_t + c p̃_t P_t), P_{t+1} = β(P_t + p̃_t), so with the adjoint
/// Λ_t = a_t p̃_t + βΛ_{t+1}, ∂V̂/∂ℓ_t = 1[d̃_t passes] ρ_t a_t + 1[p̃_t passes] ρ_t c (a_t P_t + βΛ_{t+1}).
fn taylor2_pair_clip<S: Scalar>(
    beta: f64,
    c: f64,
    a: impl Fn(usize) -> f64,
    v0: f64,
    ratios: &[S],
    shape: Taylor2Shape,
    grad: &mut [S],
) -> S {
    let mut total = S::from(v0);
    let mut h = S::zero();
    // Forward: store P_t in grad[t].
    for t in 0..ratios.len() {
        let (d, _) = shape.deviation(ratios[t]);
        let (p, _) = shape.pair_deviation(ratios[t]);
        grad[t] = h;
        total += (d + p * h * c) * a(t);
        h = (h + p) * beta;
    }
    let mut lam = S::zero();
    for t in (0..ratios.len()).rev() {
        let at = a(t);
        let (_, first_passed) = shape.deviation(ratios[t]);
        let (p, pair_passed) = shape.pair_deviation(ratios[t]);
        let first = if first_passed { ratios[t] * at } else { S::zero() };
        let pair = if pair_passed { ratios[t] * (grad[t] * at + lam * beta) * c } else { S::zero() };
        lam = p * at + lam * beta;
        grad[t] = first + pair;
    }
    total
}

/// TMAML (Liu, Socher & Xiong, 2019; docs/theory.md#tmaml): step-wise IS (DiCE) plus TMAML's
/// control variate, with the state critic's values b_t = V̂(x_t) (`baseline`) as its
/// baselines and rewards r_t (`signal`):
/// V̂ = Σ_t γ^t P_t r_t + Σ_t γ^t b_t (1 − ρ_t)(1 − Q_t),
/// Q_t = P_t = Π_{s≤t} ρ_s (`through_t`, TMAML's form) or Q_t = P_{t−1} = Π_{s<t} ρ_s.
/// The control variate is 0 on-policy (ρ = 1) with a zero gradient there; its Hessian there
/// is Σ_t γ^t b_t (g_t G_tᵀ + G_t g_tᵀ), g_t = ∇ log π_t, G_t = Σ_s g_s over the steps of
/// Q_t. Through t, its s = t part 2 Σ_t γ^t b_t g_t g_tᵀ does not have mean zero: the bias of
/// the paper's App. B; over past steps only it has mean zero.
///
/// Gradient, with e = 0 (through t) or 1:
/// ∂V̂/∂ℓ_k = Σ_{t≥k} γ^t P_t r_t − γ^k b_k ρ_k (1 − Q_k) − Σ_{t≥k+e} γ^t b_t (1 − ρ_t) Q_t.
pub fn tmaml<S: Scalar>(
    gamma: f64,
    through_t: bool,
    signal: &[f64],
    baseline: &[f64],
    ratios: &[S],
    grad: &mut [S],
    scratch: &mut Vec<S>,
) -> S {
    let n = ratios.len();
    // scratch[2t] = P_t, scratch[2t + 1] = Q_t.
    scratch.clear();
    let mut p = S::one();
    let mut total = S::zero();
    for t in 0..n {
        let disc = gamma.powi(t as i32);
        let before = p;
        p *= ratios[t];
        let q = if through_t { p } else { before };
        scratch.push(p);
        scratch.push(q);
        total += p * (disc * signal[t]) + (-ratios[t] + 1.0) * (-q + 1.0) * (disc * baseline[t]);
    }
    // `rewards` = Σ_{t≥k} γ^t P_t r_t; `cv` = Σ_{t≥k+e} γ^t b_t (1 − ρ_t) Q_t.
    let (mut rewards, mut cv) = (S::zero(), S::zero());
    for t in (0..n).rev() {
        let disc = gamma.powi(t as i32);
        let (p, q) = (scratch[2 * t], scratch[2 * t + 1]);
        let cb = disc * baseline[t];
        rewards += p * (disc * signal[t]);
        let own = q * (-ratios[t] + 1.0) * cb;
        if through_t {
            cv += own;
        }
        grad[t] = rewards - ratios[t] * (-q + 1.0) * cb - cv;
        if !through_t {
            cv += own;
        }
    }
    total
}

/// The naive score-function surrogate of MAML's inner loss, V̂ = v_0 + Σ_t a_t log ρ_t
/// (a_t = γ^t Â_t or Â_t by `discount`). Its gradient ∂V̂/∂ℓ_t = a_t is the usual
/// policy-gradient estimate; its Hessian lacks the score outer products (F = 0), which is
/// the bias of MAML's second-order term that the paper discusses.
pub fn naive_score<S: Scalar>(
    discount: TaylorDiscount,
    gamma: f64,
    v0: f64,
    signal: &[f64],
    ratios: &[S],
    grad: &mut [S],
) -> S {
    let mut total = S::from(v0);
    let mut disc = 1.0;
    for t in 0..ratios.len() {
        let a = match discount {
            TaylorDiscount::Absolute => disc * signal[t],
            TaylorDiscount::FromFirst => signal[t],
        };
        total += ratios[t].ln() * a;
        grad[t] = S::from(a);
        disc *= gamma;
    }
    total
}

/// Dense ℓ/c-space second derivatives of [`doubly_robust`] from its gradient: with
/// k = T (+ T + 1 critic-mean rows), F[ℓ_j, ℓ_l] = g_{max(j,l)} (every term is a product of
/// e^{ℓ}'s over a prefix), F[ℓ_j, c_{t+1}] = ∂V̂/∂c_{t+1}·1[j ≤ t], and F is 0 elsewhere.
pub fn doubly_robust_row_hessian(grad: &[f64], grad_c: Option<&[f64]>, f: &mut [f64]) {
    let t = grad.len();
    let k = t + grad_c.map_or(0, <[f64]>::len);
    f[..k * k].iter_mut().for_each(|x| *x = 0.0);
    for j in 0..t {
        for l in 0..t {
            f[j * k + l] = grad[j.max(l)];
        }
    }
    if let Some(gc) = grad_c {
        for s in 0..t {
            // c_{s+1} is row t + s + 1; ℓ_j with j ≤ s couples to it.
            let c_row = t + s + 1;
            for j in 0..=s {
                f[j * k + c_row] = gc[s + 1];
                f[c_row * k + j] = gc[s + 1];
            }
        }
    }
}

/// Dense ℓ-space second derivatives of [`taylor`] for K = 2 in O(T²): F_kk = g_k (V̂ is
/// affine in each ρ_k and ∂²ρ/∂ℓ² = ρ), F_jk = ρ_j ρ_k w(j, k) Â_k for j < k with
/// w = γ^k (absolute) or γ^{k−j} (from first). With a [`Taylor2Shape`]: F_jk is scaled
/// by c, and ρ_j, ρ_k are 0 outside the pair term's clip.
pub fn taylor2_row_hessian(
    discount: TaylorDiscount,
    gamma: f64,
    signal: &[f64],
    ratios: &[f64],
    shape: Taylor2Shape,
    grad: &[f64],
    f: &mut [f64],
) {
    let t = ratios.len();
    let mut pow = Vec::with_capacity(t + 1);
    let mut p = 1.0;
    for _ in 0..=t {
        pow.push(p);
        p *= gamma;
    }
    for j in 0..t {
        f[j * t + j] = grad[j];
        for l in j + 1..t {
            let w = match discount {
                TaylorDiscount::Absolute => pow[l],
                TaylorDiscount::FromFirst => pow[l - j],
            };
            let v = shape.passed(ratios[j]) * shape.passed(ratios[l]) * w * signal[l] * shape.pair_scale;
            f[j * t + l] = v;
            f[l * t + j] = v;
        }
    }
}

/// Row-space Hessian-vector product of [`doubly_robust`] in O(T), from its gradient: with
/// F[ℓ_j, ℓ_k] = g_max(j,k) and F[ℓ_j, c_{t+1}] = ∂V̂/∂c_{t+1}·1[j ≤ t],
/// (Fu)_{ℓ_k} = g_k Σ_{j≤k} u_j + Σ_{j>k} g_j u_j + Σ_{t≥k} (∂V̂/∂c_{t+1}) u_{c_{t+1}} and
/// (Fu)_{c_{t+1}} = (∂V̂/∂c_{t+1}) Σ_{j≤t} u_j, (Fu)_{c_0} = 0.
pub fn doubly_robust_row_hvp(
    grad: &[f64],
    means: Option<(&[f64], &[f64], &mut [f64])>,
    u: &[f64],
    out: &mut [f64],
) {
    let t = grad.len();
    // Prefix sums U_k = Σ_{j≤k} u_j, kept in `out` for now.
    let mut acc = 0.0;
    for k in 0..t {
        acc += u[k];
        out[k] = acc;
    }
    if let Some((grad_c, u_c, out_c)) = means {
        out_c[0] = 0.0;
        for s in 0..t {
            out_c[s + 1] = grad_c[s + 1] * out[s];
        }
        let mut suffix = 0.0;
        let mut suffix_c = 0.0;
        for k in (0..t).rev() {
            suffix_c += grad_c[k + 1] * u_c[k + 1];
            out[k] = grad[k] * out[k] + suffix + suffix_c;
            suffix += grad[k] * u[k];
        }
    } else {
        let mut suffix = 0.0;
        for k in (0..t).rev() {
            out[k] = grad[k] * out[k] + suffix;
            suffix += grad[k] * u[k];
        }
    }
}

/// Row-space Hessian-vector product of [`taylor2`] in O(T): with F_kk = g_k and
/// F_jl = ρ_j ρ_l w(j, l) Â_l (j < l), (Fu)_k = g_k u_k + ρ_k a_k P_k + ρ_k S_k, where
/// P_k = Σ_{j<k} w'(j,k) ρ_j u_j and S_k = Σ_{l>k} w'(k,l) ρ_l a_l u_l with a_l = γ^l Â_l and
/// w' = 1 (absolute), or a_l = Â_l and w' = γ^{l−j} (from first, as running discounts).
/// With a [`Taylor2Shape`]: the off-diagonal terms are scaled by c, and ρ is 0 outside
/// the clip.
#[allow(clippy::too_many_arguments)]
pub fn taylor2_row_hvp(
    discount: TaylorDiscount,
    gamma: f64,
    powers: &[f64],
    signal: &[f64],
    ratios: &[f64],
    shape: Taylor2Shape,
    grad: &[f64],
    u: &[f64],
    out: &mut [f64],
) {
    let t = ratios.len();
    let (absolute, beta) = match discount {
        TaylorDiscount::Absolute => (true, 1.0),
        TaylorDiscount::FromFirst => (false, gamma),
    };
    let c = shape.pair_scale;
    let a = |l: usize| if absolute { powers[l] * signal[l] } else { signal[l] };
    let mut prefix = 0.0;
    for k in 0..t {
        let r = shape.passed(ratios[k]);
        out[k] = grad[k] * u[k] + r * a(k) * prefix * c;
        prefix = beta * (prefix + r * u[k]);
    }
    let mut suffix = 0.0;
    for k in (0..t).rev() {
        let r = shape.passed(ratios[k]);
        out[k] += r * suffix * c;
        suffix = beta * (suffix + r * a(k) * u[k]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_dual::Dual64;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn truncation_ties_pass_the_derivative_despite_rounding() {
        // On-policy ratios computed through logs may round just above 1.
        let ratios = [1.0 + f64::EPSILON, 1.0 - f64::EPSILON, 1.0];
        let signal = [0.5, -0.25, 1.0];
        let (mut g_trunc, mut g_dr) = ([0.0; 3], [0.0; 3]);
        let mut scratch = Vec::new();
        let v = truncated_doubly_robust(0.9, 1.0, 1.0, 0.1, &signal, &ratios, &mut g_trunc, &mut scratch);
        let w = doubly_robust(0.9, 0.1, &signal, &ratios, None, &mut g_dr);
        assert!((v - w).abs() < 1e-14);
        for (a, b) in g_trunc.iter().zip(&g_dr) {
            assert!((a - b).abs() < 1e-14);
        }
        // A clearly truncated ratio stops its derivative.
        let mut g = [0.0; 3];
        truncated_doubly_robust(0.9, 1.0, 1.0, 0.1, &signal, &[1.5, 1.0, 1.0], &mut g, &mut scratch);
        assert_eq!(g[0], 0.0);
    }

    #[test]
    fn specialised_taylor2_equals_general_kernel() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for gamma in [0.0, 0.5, 0.99] {
            for discount in [TaylorDiscount::Absolute, TaylorDiscount::FromFirst] {
                let t = 13;
                let signal: Vec<f64> = (0..t).map(|_| rng.random::<f64>() - 0.5).collect();
                let ratios: Vec<Dual64> = (0..t)
                    .map(|_| Dual64::new(0.2 + 2.0 * rng.random::<f64>(), rng.random::<f64>() - 0.5))
                    .collect();
                let (mut g1, mut g2) = (vec![Dual64::from(0.0); t], vec![Dual64::from(0.0); t]);
                let mut scratch = Vec::new();
                let powers: Vec<f64> = (0..t).map(|i| gamma.powi(i as i32)).collect();
                let v1 =
                    taylor2(discount, gamma, &powers, 0.3, &signal, &ratios, Taylor2Shape::PAPER, &mut g1);
                let v2 = taylor(2, discount, gamma, 0.3, &signal, &ratios, &mut g2, &mut scratch);
                assert!((v1.re - v2.re).abs() < 1e-13 && (v1.eps - v2.eps).abs() < 1e-13);
                for (a, b) in g1.iter().zip(&g2) {
                    assert!(
                        (a.re - b.re).abs() < 1e-13 && (a.eps - b.eps).abs() < 1e-13,
                        "{gamma} {discount:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn pair_scale_is_first_order_weight_over_pair_weight() {
        for discount in [TaylorDiscount::Absolute, TaylorDiscount::FromFirst] {
            for (gamma, t) in [(0.99, 100usize), (0.5, 7), (1.0, 4), (0.9, 1), (0.0, 5)] {
                // Brute force over all pairs.
                let w1: f64 = (0..t)
                    .map(|k| if discount == TaylorDiscount::Absolute { gamma.powi(k as i32) } else { 1.0 })
                    .sum();
                let mut w2 = 0.0;
                for t2 in 0..t {
                    for t1 in 0..t2 {
                        w2 += match discount {
                            TaylorDiscount::Absolute => gamma.powi(t2 as i32),
                            TaylorDiscount::FromFirst => gamma.powi((t2 - t1) as i32),
                        };
                    }
                }
                let want = if w2 > 0.0 { w1 / w2 } else { 1.0 };
                let got = taylor2_pair_scale(discount, gamma, t);
                assert!(
                    (got - want).abs() <= 1e-12 * want,
                    "{discount:?} γ = {gamma} T = {t}: {got} vs {want}"
                );
            }
        }
        // ProMP's setting: about one pair-term unit per 37 first-order ones.
        let c = taylor2_pair_scale(TaylorDiscount::FromFirst, 0.99, 100);
        assert!((1.0 / c - 37.0).abs() < 1.0, "1/c = {}", 1.0 / c);
    }

    #[test]
    fn the_paper_shape_keeps_the_bits_and_a_clip_stops_derivatives() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let t = 20;
        let signal: Vec<f64> = (0..t).map(|_| rng.random::<f64>() - 0.5).collect();
        let ratios: Vec<f64> = (0..t).map(|_| 0.3 + 1.4 * rng.random::<f64>()).collect();
        let powers: Vec<f64> = (0..t).map(|i| 0.9f64.powi(i as i32)).collect();
        let wide = Taylor2Shape::clipped(1.0, 1e300);
        let (mut g1, mut g2, mut g3) = (vec![0.0; t], vec![0.0; t], vec![0.0; t]);
        let d = TaylorDiscount::FromFirst;
        let v1 = taylor2(d, 0.9, &powers, 0.1, &signal, &ratios, Taylor2Shape::PAPER, &mut g1);
        let v2 = taylor2(d, 0.9, &powers, 0.1, &signal, &ratios, wide, &mut g2);
        assert_eq!((v1.to_bits(), &g1), (v2.to_bits(), &g2));
        // Clipped steps have no derivative and contribute ±κ.
        let clip = Taylor2Shape::clipped(1.0, 0.2);
        taylor2(d, 0.9, &powers, 0.1, &signal, &ratios, clip, &mut g3);
        let outside: Vec<usize> = (0..t).filter(|&k| (ratios[k] - 1.0).abs() > 0.2).collect();
        assert!(!outside.is_empty() && outside.len() < t);
        for k in 0..t {
            assert_eq!(g3[k] == 0.0, outside.contains(&k), "step {k}");
        }
        let clamped: Vec<f64> = ratios.iter().map(|r| 1.0 + (r - 1.0).clamp(-0.2, 0.2)).collect();
        let v_clamped = taylor2(d, 0.9, &powers, 0.1, &signal, &clamped, Taylor2Shape::PAPER, &mut g2);
        let v_clip = taylor2(d, 0.9, &powers, 0.1, &signal, &ratios, clip, &mut g3);
        assert!((v_clip - v_clamped).abs() < 1e-14);
    }

    /// The pair clip's own kernel: with κ_p = κ it is the one-clip kernel (to rounding);
    /// a pair clip alone leaves the first-order term and, inside the clip, the value as the
    /// paper's; a first-order clip alone (κ_p = ∞) leaves the pair term.
    #[test]
    fn a_pair_clip_acts_on_the_pair_term_only() {
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        let t = 30;
        let signal: Vec<f64> = (0..t).map(|_| rng.random::<f64>() - 0.5).collect();
        let ratios: Vec<f64> = (0..t).map(|_| 0.3 + 1.4 * rng.random::<f64>()).collect();
        let powers: Vec<f64> = (0..t).map(|i| 0.9f64.powi(i as i32)).collect();
        let d = TaylorDiscount::FromFirst;
        let value = |shape: Taylor2Shape, r: &[f64]| {
            let mut g = vec![0.0; t];
            (taylor2(d, 0.9, &powers, 0.1, &signal, r, shape, &mut g), g)
        };
        // κ_p = κ, through the split kernel (κ_p one ulp above κ changes no step here).
        let one = Taylor2Shape::clipped(0.5, 0.2);
        let split = Taylor2Shape { pair_clip: f64::from_bits(0.2f64.to_bits() + 1), ..one };
        let ((v1, g1), (v2, g2)) = (value(one, &ratios), value(split, &ratios));
        assert!((v1 - v2).abs() < 1e-13);
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() < 1e-13, "{a} vs {b}");
        }
        // Pair clip only: ρ − 1 clamped in the pair term, as written out.
        let pair_only = Taylor2Shape { pair_clip: 0.2, ..Taylor2Shape::PAPER };
        let (v, _) = value(pair_only, &ratios);
        let mut expect = 0.1;
        for s in 0..t {
            let ps = (ratios[s] - 1.0).clamp(-0.2, 0.2);
            expect += signal[s] * (ratios[s] - 1.0);
            for u in s + 1..t {
                expect += 0.9f64.powi((u - s) as i32) * ps * (ratios[u] - 1.0).clamp(-0.2, 0.2) * signal[u];
            }
        }
        assert!((v - expect).abs() < 1e-12, "{v} vs {expect}");
        // Inside the clip it is the paper's estimator.
        let near: Vec<f64> = ratios.iter().map(|r| 1.0 + 0.15 * (r - 1.0)).collect();
        let ((v1, g1), (v2, g2)) = (value(Taylor2Shape::PAPER, &near), value(pair_only, &near));
        assert!((v1 - v2).abs() < 1e-13 && g1.iter().zip(&g2).all(|(a, b)| (a - b).abs() < 1e-13));
        // First-order clip only: the first-order term clamped, the pair term as the paper's.
        let first_only = Taylor2Shape { ratio_clip: 0.2, ..Taylor2Shape::PAPER };
        let (v, _) = value(first_only, &ratios);
        let (paper, _) = value(Taylor2Shape::PAPER, &ratios);
        let first_change: f64 =
            (0..t).map(|s| signal[s] * ((ratios[s] - 1.0).clamp(-0.2, 0.2) - (ratios[s] - 1.0))).sum();
        assert!(first_change.abs() > 1e-3 && (v - (paper + first_change)).abs() < 1e-12);
    }

    #[test]
    fn orders_above_the_horizon_equal_order_t() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for discount in [TaylorDiscount::Absolute, TaylorDiscount::FromFirst] {
            for t in [0usize, 1, 5] {
                let signal: Vec<f64> = (0..t).map(|_| rng.random::<f64>() - 0.5).collect();
                let ratios: Vec<Dual64> = (0..t)
                    .map(|_| Dual64::new(0.2 + 2.0 * rng.random::<f64>(), rng.random::<f64>() - 0.5))
                    .collect();
                let mut scratch = Vec::new();
                let mut g_ref = vec![Dual64::from(0.0); t];
                let v_ref = taylor(t.max(1), discount, 0.9, 0.3, &signal, &ratios, &mut g_ref, &mut scratch);
                for k in [t + 1, 1000, usize::MAX] {
                    let mut g = vec![Dual64::from(0.0); t];
                    let v = taylor(k, discount, 0.9, 0.3, &signal, &ratios, &mut g, &mut scratch);
                    assert_eq!((v.re, v.eps), (v_ref.re, v_ref.eps), "K = {k}, T = {t}");
                    for (a, b) in g.iter().zip(&g_ref) {
                        assert_eq!((a.re, a.eps), (b.re, b.eps), "K = {k}, T = {t}");
                    }
                    assert!(scratch.len() <= t * t + 3 * t + 2, "scratch {} for T = {t}", scratch.len());
                }
            }
        }
    }

    use proptest::prelude::*;

    /// Value and ℓ-gradient of one kernel on dual rows (`kind`: 0 DR, 1 truncated DR,
    /// 2 TayPO-K general, 3 TayPO-2 specialised, 4 naive score, 5 DR with critic means,
    /// 6 TayPO-2 with a pair scale and a ratio clip, 7 with a pair clip only, 8 with a pair
    /// scale, a ratio clip and another pair clip).
    fn run(
        kind: u8,
        k: usize,
        discount: TaylorDiscount,
        gamma: f64,
        signal: &[f64],
        r: &[Dual64],
        c: &[Dual64],
    ) -> (Dual64, Vec<Dual64>) {
        let mut g = vec![Dual64::from(0.0); r.len() + c.len()];
        let mut scratch = Vec::new();
        let (gr, gc) = g.split_at_mut(r.len());
        let v = match kind {
            0 => doubly_robust(gamma, 0.3, signal, r, None, gr),
            1 => truncated_doubly_robust(gamma, 1.2, 0.8, 0.3, signal, r, gr, &mut scratch),
            2 => taylor(k, discount, gamma, 0.3, signal, r, gr, &mut scratch),
            3 => {
                let powers: Vec<f64> = (0..r.len()).map(|i| gamma.powi(i as i32)).collect();
                taylor2(discount, gamma, &powers, 0.3, signal, r, Taylor2Shape::PAPER, gr)
            }
            4 => naive_score(discount, gamma, 0.3, signal, r, gr),
            6 => {
                // Pair scale and clip (ratios drawn in 0.05..3 are often clipped at ±0.4).
                let powers: Vec<f64> = (0..r.len()).map(|i| gamma.powi(i as i32)).collect();
                let shape = Taylor2Shape::clipped(0.37, 0.4);
                taylor2(discount, gamma, &powers, 0.3, signal, r, shape, gr)
            }
            7 | 8 => {
                // The pair term's own clip: alone (7), or beside another first-order clip (8).
                let powers: Vec<f64> = (0..r.len()).map(|i| gamma.powi(i as i32)).collect();
                let shape = if kind == 7 {
                    Taylor2Shape { pair_clip: 0.4, ..Taylor2Shape::PAPER }
                } else {
                    Taylor2Shape { pair_scale: 0.37, ratio_clip: 0.6, pair_clip: 0.3 }
                };
                taylor2(discount, gamma, &powers, 0.3, signal, r, shape, gr)
            }
            _ => doubly_robust(gamma, 0.3, signal, r, Some((c, gc)), gr),
        };
        (v, g)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// The hand-written adjoints are the derivatives of the kernels' own values
        /// (forward mode, exact), and the row Hessians they induce are symmetric.
        #[test]
        fn adjoints_equal_forward_mode_derivatives(
            kind in 0u8..9,
            k in 1usize..6,
            from_first in any::<bool>(),
            gamma in 0.0f64..1.0,
            rows in prop::collection::vec((0.05f64..3.0, -2.0f64..2.0, -2.0f64..2.0), 1..9),
        ) {
            let discount = if from_first { TaylorDiscount::FromFirst } else { TaylorDiscount::Absolute };
            let t = rows.len();
            let signal: Vec<f64> = rows.iter().map(|x| x.1).collect();
            let ratio_vals: Vec<f64> = rows.iter().map(|x| x.0).collect();
            let mean_vals: Vec<f64> = if kind == 5 { (0..=t).map(|i| rows[i.min(t - 1)].2 + i as f64 * 0.1).collect() } else { vec![] };
            let m = t + mean_vals.len();
            let lift = |j: usize| -> (Vec<Dual64>, Vec<Dual64>) {
                // Unit tangent on row j in ℓ/c space: dρ = ρ, dc = 1.
                let r = ratio_vals.iter().enumerate().map(|(a, &x)| Dual64::new(x, if a == j { x } else { 0.0 })).collect();
                let c = mean_vals.iter().enumerate().map(|(a, &x)| Dual64::new(x, if a + t == j { 1.0 } else { 0.0 })).collect();
                (r, c)
            };
            let mut f = vec![0.0; m * m];
            for j in 0..m {
                let (r, c) = lift(j);
                let (v, g) = run(kind, k, discount, gamma, &signal, &r, &c);
                // Forward-mode derivative of the value along row j = adjoint j.
                prop_assert!((v.eps - g[j].re).abs() <= 1e-10 * (1.0 + g[j].re.abs()), "row {j}: {} vs {}", v.eps, g[j].re);
                for a in 0..m {
                    f[a * m + j] = g[a].eps;
                }
            }
            for a in 0..m {
                for b in 0..m {
                    prop_assert!((f[a * m + b] - f[b * m + a]).abs() <= 1e-9 * (1.0 + f[a * m + b].abs()));
                }
            }
        }
    }
}
