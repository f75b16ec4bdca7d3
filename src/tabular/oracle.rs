//! Exact values and derivatives for tabular MDPs (docs/theory.md#exact-oracle).
//!
//! With P_π\[s,s'\] = Σ_a π(a|s) P\[s,a,s'\], r_π\[s\] = Σ_a π(a|s) r\[s,a\], M = (I − γP_π)⁻¹:
//! v = M r_π, Q(s,a) = r\[s,a\] + γ Σ_j P\[s,a,j\] v_j, A = Q − v, w(s,a) = π(a|s) A(s,a),
//! m = M\[x_0, ·\]. For the softmax policy:
//!
//! * ∂v_{x_0}/∂θ(s,a) = m_s w(s,a)  (policy gradient theorem);
//! * ∂²v_{x_0}/∂θ(s,a)∂θ(s',a') = T(s,a,s',a') + T(s',a',s,a) + 1\[(s,a)=(s',a')\] m_s w(s,a),
//!   with T(s,a,s',a') = m_s π(a|s) (γ Σ_j P\[s,a,j\] M\[j,s'\] − M\[s,s'\]) w(s',a').
//!
//! The second line is the direct differentiation of the first (docs/theory.md#exact-oracle)
//! rearranged with γ P_π M = M − I: the direct form's first term equals
//! T(s',a',s,a) + 1[s=s'] m_s π(a'|s) w(s,a), which cancels the off-diagonal part of its
//! second term. Cost O(|X|²|A| + (|X||A|)²).
//!
//! The finite-horizon value J_T(θ) = E_π[Σ_{t<T} γ^t r_t + γ^T b(x_T)]
//! (docs/theory.md#finite-horizon-value) is
//! computed by backward induction, generic over a dual-number type so that its exact
//! gradient and Hessian come from forward-mode automatic differentiation.

use nalgebra::{DMatrix, DVector, Dyn};
use num_dual::{Dual2Vec, DualNum};

use super::TabularMdp;
use crate::policy::{Policy, TabularSoftmax};

/// Exact value, gradient and Hessian (row-major D×D, D = |X|·|A|, index x·|A| + a).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Derivatives {
    /// The value.
    pub value: f64,
    /// Gradient w.r.t. θ.
    pub gradient: Vec<f64>,
    /// Hessian w.r.t. θ, row-major.
    pub hessian: Vec<f64>,
}

impl Derivatives {
    /// `Ok(())` when value, gradient and Hessian are all finite; otherwise an error naming
    /// `what` (e.g. `estimator dr`) and the first non-finite entry. Finite but huge inputs
    /// (rewards or critic values near f64::MAX) overflow here rather than in the file.
    pub fn ensure_finite(&self, what: &str) -> crate::error::Result<()> {
        let bad = |name: &str, i: Option<usize>, v: f64| {
            let at = i.map_or(String::new(), |i| format!("[{i}]"));
            Err(crate::error::invalid(
                what,
                format!(
                    "the result is not finite ({name}{at} = {v}): the inputs' magnitudes overflow \
                     float64; rescale rewards and critic values"
                ),
            ))
        };
        if !self.value.is_finite() {
            return bad("value", None, self.value);
        }
        if let Some(i) = self.gradient.iter().position(|g| !g.is_finite()) {
            return bad("gradient", Some(i), self.gradient[i]);
        }
        if let Some(i) = self.hessian.iter().position(|h| !h.is_finite()) {
            return bad("hessian", Some(i), self.hessian[i]);
        }
        Ok(())
    }
}

/// V^π, Q^π and the resolvent M = (I − γP_π)⁻¹ of a policy.
#[derive(Clone, Debug)]
pub struct PolicyEvaluation {
    /// V^π per state.
    pub v: Vec<f64>,
    /// Q^π, row-major |X|×|A|.
    pub q: Vec<f64>,
    /// M = (I − γ P_π)⁻¹.
    pub resolvent: DMatrix<f64>,
}

/// Evaluates the policy table `probs` (row-major |X|×|A|) exactly.
pub fn evaluate(mdp: &TabularMdp, probs: &[f64]) -> PolicyEvaluation {
    let (ns, na, g) = (mdp.n_states(), mdp.n_actions(), mdp.gamma());
    let mut a_mat = DMatrix::<f64>::identity(ns, ns);
    let mut r_pi = DVector::<f64>::zeros(ns);
    for s in 0..ns {
        for a in 0..na {
            let p = probs[s * na + a];
            r_pi[s] += p * mdp.reward(s, a);
            for (j, pj) in mdp.next_probs(s, a).iter().enumerate() {
                a_mat[(s, j)] -= g * p * pj;
            }
        }
    }
    // I − γP_π is strictly diagonally dominant for γ < 1, so LU succeeds.
    let resolvent = a_mat.lu().try_inverse().expect("I − γP_π is invertible for γ < 1");
    let v = &resolvent * r_pi;
    let mut q = vec![0.0; ns * na];
    for s in 0..ns {
        for a in 0..na {
            let next: f64 = mdp.next_probs(s, a).iter().zip(v.iter()).map(|(p, v)| p * v).sum();
            q[s * na + a] = mdp.reward(s, a) + g * next;
        }
    }
    PolicyEvaluation { v: v.iter().cloned().collect(), q, resolvent }
}

/// Exact V^{π_θ}(x_0), its gradient and its Hessian for a softmax policy.
pub fn softmax_derivatives(mdp: &TabularMdp, policy: &TabularSoftmax) -> Derivatives {
    let (ns, na, g) = (mdp.n_states(), mdp.n_actions(), mdp.gamma());
    let d = ns * na;
    let probs = policy.probs();
    let ev = evaluate(mdp, probs);
    let m = &ev.resolvent;
    let x0 = mdp.start_state();
    // w(s,a) = π(a|s) A(s,a)
    let w: Vec<f64> = (0..d).map(|i| probs[i] * (ev.q[i] - ev.v[i / na])).collect();
    let gradient: Vec<f64> = (0..d).map(|i| m[(x0, i / na)] * w[i]).collect();
    // R[(s,a), s'] = γ Σ_j P[s,a,j] M[j,s'] − M[s,s']
    let mut r = vec![0.0; d * ns];
    for i in 0..d {
        let (s, p) = (i / na, &mdp.transitions()[i * ns..(i + 1) * ns]);
        for s2 in 0..ns {
            let pm: f64 = (0..ns).map(|j| p[j] * m[(j, s2)]).sum();
            r[i * ns + s2] = g * pm - m[(s, s2)];
        }
    }
    let mut hessian = vec![0.0; d * d];
    for i in 0..d {
        let coef = m[(x0, i / na)] * probs[i];
        for k in 0..d {
            let t = coef * r[i * ns + k / na] * w[k];
            hessian[i * d + k] += t;
            hessian[k * d + i] += t;
        }
        hessian[i * d + i] += gradient[i];
    }
    Derivatives { value: ev.v[x0], gradient, hessian }
}

/// V^{π_θ}(x_0) alone (for finite-difference checks).
pub fn softmax_value(mdp: &TabularMdp, policy: &TabularSoftmax) -> f64 {
    evaluate(mdp, policy.probs()).v[mdp.start_state()]
}

/// What the finite-horizon value J_T adds at the last state x_T.
#[derive(Clone, Copy, Debug)]
pub enum Bootstrap<'a> {
    /// b(x) = 0 (the IS estimator's target).
    Zero,
    /// b(x) = V̂(x), a state-value critic.
    StateValues(&'a [f64]),
    /// b(x) = Σ_b π_θ(b|x) Q̂(x, b), an action-value critic (depends on θ).
    ActionValues(&'a [f64]),
}

/// J_T(θ) = E_{π_θ}[Σ_{t<T} γ^t r_t + γ^T b(x_T)] from x_0, by backward induction, for
/// softmax logits `theta` of any dual-number type.
pub fn finite_horizon_value<S: DualNum<Primitive = f64>>(
    mdp: &TabularMdp,
    theta: &[S],
    horizon: usize,
    bootstrap: Bootstrap,
) -> S {
    let (ns, na, g) = (mdp.n_states(), mdp.n_actions(), mdp.gamma());
    let probs: Vec<S> = theta
        .chunks(na)
        .flat_map(|th| {
            let mx = th.iter().map(|t| t.re()).fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<S> = th.iter().map(|t| (t.clone() - mx).exp()).collect();
            let z: S = e.iter().cloned().sum();
            e.into_iter().map(move |x| x / z.clone())
        })
        .collect();
    let mut v: Vec<S> = (0..ns)
        .map(|x| match bootstrap {
            Bootstrap::Zero => S::from(0.0),
            Bootstrap::StateValues(b) => S::from(b[x]),
            Bootstrap::ActionValues(q) => (0..na).map(|a| probs[x * na + a].clone() * q[x * na + a]).sum(),
        })
        .collect();
    for _ in 0..horizon {
        v = (0..ns)
            .map(|x| {
                (0..na)
                    .map(|a| {
                        let next: S =
                            mdp.next_probs(x, a).iter().zip(&v).map(|(p, vj)| vj.clone() * *p).sum();
                        probs[x * na + a].clone() * (next * g + mdp.reward(x, a))
                    })
                    .sum()
            })
            .collect();
    }
    v[mdp.start_state()].clone()
}

/// Exact J_T, its gradient and Hessian w.r.t. the softmax logits (forward-mode AD with
/// second-order dual vectors: for tests and small problems, cost O(T|X|²|A|·D²)).
pub fn finite_horizon_derivatives(
    mdp: &TabularMdp,
    policy: &TabularSoftmax,
    horizon: usize,
    bootstrap: Bootstrap,
) -> Derivatives {
    let theta = DVector::from_column_slice(policy.params());
    let (value, grad, hess) = num_dual::hessian(
        |th: DVector<Dual2Vec<f64, Dyn>>| {
            let th: Vec<_> = th.iter().cloned().collect();
            finite_horizon_value(mdp, &th, horizon, bootstrap)
        },
        &theta,
    );
    let d = theta.len();
    let mut hessian = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            hessian[i * d + j] = hess[(i, j)];
        }
    }
    Derivatives { value, gradient: grad.iter().cloned().collect(), hessian }
}

/// Exact J_T, its gradient and Hessian w.r.t. the softmax logits in closed form, for a
/// θ-independent bootstrap (`Zero`, `StateValues`; `ActionValues` falls back to
/// [`finite_horizon_derivatives`]). Cost O(T(|X|²|A|·D + D²)), against O(T|X|²|A|·D²) for
/// dual numbers: milliseconds at D = 100, T = 20.
///
/// With k steps to go: v_0 = b, v_k = r_π + γP_π v_{k−1}, A_k(s,a) = r(s,a) +
/// γ Σ_y P\[s,a,y\] v_{k−1}(y) − v_k(s), w_k = π ⊙ A_k; d_t the state distribution at time t
/// (d_0 = e_{x_0}, d_{t+1} = d_t P_π). Then J_T = v_T(x_0) and
///
/// * ∂J_T/∂θ(s,a) = Σ_{t<T} γ^t d_t(s) w_{T−t}(s,a)  (finite-horizon policy gradient);
/// * ∂²J_T/∂θ(s,a)∂θ_j = Σ_{t<T} γ^t \[∂_j d_t(s) w_{T−t}(s,a) + 1\[s=s'\] d_t(s) π(a|s)(1\[a=a'\] −
///   π(a'|s)) A_{T−t}(s,a) + d_t(s) π(a|s)(γ Σ_y P\[s,a,y\] ∂_j v_{T−t−1}(y) − ∂_j v_{T−t}(s))\],
///
/// for j = (s',a'), with ∂_j v_k = e_{s'} w_k(j) + γ P_π ∂_j v_{k−1} (∂v_0 = 0) and
/// ∂_j d_{t+1} = (∂_j d_t) P_π + d_t(s') π(a'|s') (P\[s',a',·\] − P_π\[s',·\]) (∂d_0 = 0).
pub fn finite_horizon_softmax_derivatives(
    mdp: &TabularMdp,
    policy: &TabularSoftmax,
    horizon: usize,
    bootstrap: Bootstrap,
) -> Derivatives {
    let (ns, na, g) = (mdp.n_states(), mdp.n_actions(), mdp.gamma());
    let b = match bootstrap {
        Bootstrap::Zero => vec![0.0; ns],
        Bootstrap::StateValues(v) => v.to_vec(),
        Bootstrap::ActionValues(_) => return finite_horizon_derivatives(mdp, policy, horizon, bootstrap),
    };
    let d = ns * na;
    let probs = policy.probs();
    let p = mdp.transitions();
    let mut p_pi = vec![0.0; ns * ns];
    for i in 0..d {
        for y in 0..ns {
            p_pi[(i / na) * ns + y] += probs[i] * p[i * ns + y];
        }
    }
    // Values v_k and advantages A_k (k = 1..T; index 0 unused for A).
    let mut v = vec![b];
    let mut adv = vec![Vec::new()];
    for k in 1..=horizon {
        let q: Vec<f64> = (0..d)
            .map(|i| mdp.rewards()[i] + g * (0..ns).map(|y| p[i * ns + y] * v[k - 1][y]).sum::<f64>())
            .collect();
        let vk: Vec<f64> =
            (0..ns).map(|s| (0..na).map(|a| probs[s * na + a] * q[s * na + a]).sum()).collect();
        adv.push((0..d).map(|i| q[i] - vk[i / na]).collect::<Vec<f64>>());
        v.push(vk);
    }
    // ∂v_k (|X|×D per k).
    let mut dv = vec![vec![0.0; ns * d]];
    for k in 1..=horizon {
        let prev = &dv[k - 1];
        let mut cur = vec![0.0; ns * d];
        for x in 0..ns {
            for y in 0..ns {
                add_scaled(&mut cur[x * d..(x + 1) * d], &prev[y * d..(y + 1) * d], g * p_pi[x * ns + y]);
            }
        }
        for j in 0..d {
            cur[(j / na) * d + j] += probs[j] * adv[k][j];
        }
        dv.push(cur);
    }
    let (mut grad, mut hess) = (vec![0.0; d], vec![0.0; d * d]);
    let mut dist = vec![0.0; ns];
    dist[mdp.start_state()] = 1.0;
    let mut ddist = vec![0.0; ns * d];
    let mut pdv = vec![0.0; d];
    let mut discount = 1.0;
    for t in 0..horizon {
        let k = horizon - t;
        for i in 0..d {
            let s = i / na;
            let w = probs[i] * adv[k][i];
            grad[i] += discount * dist[s] * w;
            // γ Σ_y P[i,y] ∂v_{k−1}(y) − ∂v_k(s), as a row over j.
            pdv.iter_mut().zip(&dv[k][s * d..(s + 1) * d]).for_each(|(x, dvk)| *x = -dvk);
            for y in 0..ns {
                add_scaled(&mut pdv, &dv[k - 1][y * d..(y + 1) * d], g * p[i * ns + y]);
            }
            let (c1, c3) = (discount * w, discount * dist[s] * probs[i]);
            let row = &mut hess[i * d..(i + 1) * d];
            for j in 0..d {
                row[j] += c1 * ddist[s * d + j] + c3 * pdv[j];
            }
            for a2 in 0..na {
                let j = s * na + a2;
                let delta = if j == i { 1.0 } else { 0.0 };
                row[j] += discount * dist[s] * probs[i] * (delta - probs[j]) * adv[k][i];
            }
        }
        // d_{t+1} and ∂d_{t+1}.
        let mut next = vec![0.0; ns];
        let mut dnext = vec![0.0; ns * d];
        for x in 0..ns {
            for y in 0..ns {
                let pxy = p_pi[x * ns + y];
                next[y] += dist[x] * pxy;
                add_scaled(&mut dnext[y * d..(y + 1) * d], &ddist[x * d..(x + 1) * d], pxy);
            }
        }
        for j in 0..d {
            let s2 = j / na;
            let c = dist[s2] * probs[j];
            for y in 0..ns {
                dnext[y * d + j] += c * (p[j * ns + y] - p_pi[s2 * ns + y]);
            }
        }
        (dist, ddist) = (next, dnext);
        discount *= g;
    }
    Derivatives { value: v[horizon][mdp.start_state()], gradient: grad, hessian: hess }
}

/// dst += c·src (skipped when c = 0: near-deterministic transitions make most c zero).
fn add_scaled(dst: &mut [f64], src: &[f64], c: f64) {
    if c != 0.0 {
        dst.iter_mut().zip(src).for_each(|(x, y)| *x += c * y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tabular::RandomMdpParams;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn instance(seed: u64, ns: usize, na: usize, alpha: f64) -> (TabularMdp, TabularSoftmax) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let params = RandomMdpParams { n_states: ns, n_actions: na, dirichlet: alpha, ..Default::default() };
        let mdp = TabularMdp::random(&params, &mut rng);
        let theta = (0..ns * na).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
        (mdp, TabularSoftmax::new(ns, na, theta))
    }

    fn value_at(mdp: &TabularMdp, p: &TabularSoftmax, i: usize, h: f64) -> f64 {
        let mut th = p.params().to_vec();
        th[i] += h;
        softmax_value(mdp, &TabularSoftmax::new(p.n_states(), p.n_actions(), th))
    }

    #[test]
    fn value_satisfies_bellman_equation() {
        let (mdp, p) = instance(1, 6, 3, 0.5);
        let ev = evaluate(&mdp, p.probs());
        for s in 0..6 {
            let v: f64 = (0..3).map(|a| p.prob(s, a) * ev.q[s * 3 + a]).sum();
            assert!((v - ev.v[s]).abs() < 1e-12);
        }
    }

    #[test]
    fn gradient_and_hessian_match_finite_differences() {
        for (seed, alpha) in [(2, 0.5), (3, 0.01), (4, 2.0)] {
            let (mdp, p) = instance(seed, 5, 3, alpha);
            let ex = softmax_derivatives(&mdp, &p);
            let d = 15;
            let h = 1e-5;
            for i in 0..d {
                let fd = (value_at(&mdp, &p, i, h) - value_at(&mdp, &p, i, -h)) / (2.0 * h);
                assert!((fd - ex.gradient[i]).abs() < 1e-8, "grad {i}: {fd} vs {}", ex.gradient[i]);
            }
            // Hessian column j by central differences of the exact gradient.
            for j in 0..d {
                let mut tp = p.params().to_vec();
                let mut tm = tp.clone();
                tp[j] += h;
                tm[j] -= h;
                let gp = softmax_derivatives(&mdp, &TabularSoftmax::new(5, 3, tp)).gradient;
                let gm = softmax_derivatives(&mdp, &TabularSoftmax::new(5, 3, tm)).gradient;
                for i in 0..d {
                    let fd = (gp[i] - gm[i]) / (2.0 * h);
                    assert!(
                        (fd - ex.hessian[i * d + j]).abs() < 1e-7,
                        "H[{i},{j}]: {fd} vs {}",
                        ex.hessian[i * d + j]
                    );
                    assert!((ex.hessian[i * d + j] - ex.hessian[j * d + i]).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn finite_horizon_converges_to_infinite_horizon_derivatives() {
        // With b = V^π (held constant), J_T = V^π exactly in value, and its derivatives
        // approach V^π's as γ^T → 0.
        let (mdp, p) = instance(5, 4, 3, 0.3);
        let ex = softmax_derivatives(&mdp, &p);
        let v = evaluate(&mdp, p.probs()).v;
        let jt = finite_horizon_derivatives(&mdp, &p, 150, Bootstrap::StateValues(&v));
        assert!((jt.value - ex.value).abs() < 1e-10);
        let err = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(err(&jt.gradient, &ex.gradient) < 1e-8);
        assert!(err(&jt.hessian, &ex.hessian) < 1e-8);
    }

    #[test]
    fn closed_form_finite_horizon_derivatives_equal_dual_numbers() {
        for (seed, ns, na, alpha, horizon) in [(7, 5, 3, 0.3, 6), (8, 4, 2, 0.01, 9), (9, 3, 4, 2.0, 1)] {
            let (mdp, p) = instance(seed, ns, na, alpha);
            let v: Vec<f64> = (0..ns).map(|x| (x as f64 * 0.7).sin()).collect();
            for b in [Bootstrap::Zero, Bootstrap::StateValues(&v)] {
                let fast = finite_horizon_softmax_derivatives(&mdp, &p, horizon, b);
                let dual = finite_horizon_derivatives(&mdp, &p, horizon, b);
                assert!((fast.value - dual.value).abs() < 1e-12);
                let err =
                    |a: &[f64], c: &[f64]| a.iter().zip(c).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                assert!(err(&fast.gradient, &dual.gradient) < 1e-12, "gradient");
                assert!(
                    err(&fast.hessian, &dual.hessian) < 1e-11,
                    "hessian: {}",
                    err(&fast.hessian, &dual.hessian)
                );
            }
        }
    }

    #[test]
    fn finite_horizon_gradient_matches_finite_differences() {
        let (mdp, p) = instance(6, 3, 2, 0.5);
        let q: Vec<f64> = (0..6).map(|i| i as f64 * 0.3).collect();
        for b in [Bootstrap::Zero, Bootstrap::StateValues(&[1.0, -2.0, 0.5]), Bootstrap::ActionValues(&q)] {
            let ex = finite_horizon_derivatives(&mdp, &p, 4, b);
            let h = 1e-6;
            for i in 0..6 {
                let mut tp = p.params().to_vec();
                let mut tm = tp.clone();
                tp[i] += h;
                tm[i] -= h;
                let fd = (finite_horizon_value(&mdp, &tp, 4, b) - finite_horizon_value(&mdp, &tm, 4, b))
                    / (2.0 * h);
                assert!((fd - ex.gradient[i]).abs() < 1e-8);
            }
        }
    }
}
