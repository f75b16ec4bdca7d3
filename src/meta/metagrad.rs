//! Meta-gradients through K inner steps by Hessian-vector products (paper Alg. 1,
//! docs/theory.md#k-step-recursion), never forming a Hessian.
//!
//! For one task with inner-loop data D_0 … D_{K−1} (D_k sampled by the policy at the
//! k-th adapted parameters) the adaptation is
//!
//! θ_0 = θ,  θ_{k+1} = θ_k + η ∇V̂_in(θ_k; D_k),
//!
//! with the data (and the behaviour probabilities inside the ratios) held fixed, so the
//! ratios are re-evaluated at every θ_k. Its Jacobian is
//! J_K = ∂θ_K/∂θ = (I + ηĤ_{K−1}) ⋯ (I + ηĤ_0), Ĥ_k = ∇²V̂_in(θ_k; D_k) (symmetric). For an
//! outer objective L(θ) = L_out(θ_K) + Σ_k E_k(θ_k) (E_k: per-step terms such as E-MAML's
//! exploration term or ProMP's inner KL penalty) reverse accumulation gives
//!
//! v ← ∇L_out(θ_K);  for k = K−1 … 0: v ← v + ηĤ_k v + ∇E_k(θ_k);  ∇L(θ) = v,
//!
//! one HVP per inner step ([`vjp`]). Forward accumulation J_K u ([`jvp`]) costs the same;
//! TRPO's Fisher-vector product through the adaptation is J_Kᵀ F' J_K u. The first-order
//! variant ([`Order::First`], FMAML) sets ∂θ_{k+1}/∂θ_k = I, i.e. drops the HVPs.
//!
//! [`jvp`] and [`vjp`] work on [`BatchObjective`]s of any policy (the tabular end-to-end
//! test uses the softmax); [`adapt`], [`chain_rows`] and [`meta_gradient`] wire them to
//! the Gaussian MLP and per-task [`InnerRound`]s.

use serde::{Deserialize, Serialize};

use super::objectives::{InnerObjective, TaskData};
use crate::error::{Error, Result, invalid};
use crate::estimators::{BatchObjective, PreparedBatch};
use crate::policy::{GaussianMlp, GaussianMlpRows, Policy, ScoreRows};

/// Whether the meta-gradient differentiates through the inner gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// ∂θ_{k+1}/∂θ_k = I (first-order MAML).
    First,
    /// ∂θ_{k+1}/∂θ_k = I + ηĤ_k.
    Second,
}

/// One inner step's data for one task with the inner objective's prepared inputs.
#[derive(Clone, Debug)]
pub struct InnerRound {
    /// The samples.
    pub data: TaskData,
    /// θ-independent estimator inputs.
    pub prepared: PreparedBatch,
}

impl InnerRound {
    /// Prepares `data` for `inner`.
    pub fn new(inner: &InnerObjective, data: TaskData) -> Result<Self> {
        let prepared = inner.prepare(&data)?;
        Ok(Self { data, prepared })
    }
}

/// θ + η∇V̂_in(θ; D) as a policy, with V̂_in(θ; D).
pub fn inner_step(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    round: &InnerRound,
    eta: f64,
) -> Result<(f64, GaussianMlp)> {
    let (value, grad) = inner.value_and_gradient(policy, &round.data, &round.prepared)?;
    Ok((value, step_policy(policy, &grad, eta)?))
}

/// The adapted policies θ_0 = `policy`, θ_1, …, θ_K for fixed data (K = `rounds.len()`).
pub fn adapt(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    rounds: &[InnerRound],
    eta: f64,
) -> Result<Vec<GaussianMlp>> {
    let mut out = Vec::with_capacity(rounds.len() + 1);
    out.push(policy.clone());
    for r in rounds {
        let (_, next) = inner_step(inner, out.last().expect("non-empty"), r, eta)?;
        out.push(next);
    }
    Ok(out)
}

/// The adaptation at fixed data with every step's rows kept: `rows[k]` holds π_{θ_k} on
/// D_k (and the backward pass of its inner gradient), `last` is θ_K. The same θ_k as
/// [`adapt`] bit for bit, with one forward pass per step for the adaptation, the
/// meta-gradient and any number of later Hessian-vector products.
pub struct AdaptedChain<'d> {
    /// π_{θ_k}'s rows on D_k, k = 0 … K−1.
    pub rows: Vec<GaussianMlpRows<'d>>,
    /// θ_K.
    pub last: GaussianMlp,
}

/// [`adapt`] keeping every step's rows ([`AdaptedChain`]).
pub fn adapt_chain<'d>(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    rounds: &'d [InnerRound],
    eta: f64,
) -> Result<AdaptedChain<'d>> {
    let mut rows = Vec::with_capacity(rounds.len());
    let mut current = policy.clone();
    for round in rounds {
        let r = round.data.into_rows(current)?;
        let (_, g) = inner.objective(&round.data, &round.prepared, &r)?.gradient();
        current = step_policy(r.policy(), &g, eta)?;
        rows.push(r);
    }
    Ok(AdaptedChain { rows, last: current })
}

/// θ + η g as a policy (the inner step's update).
fn step_policy(policy: &GaussianMlp, g: &[f64], eta: f64) -> Result<GaussianMlp> {
    let theta: Vec<f64> = policy.params().iter().zip(g).map(|(t, g)| t + eta * g).collect();
    policy.with_params(&theta).map_err(|e| {
        Error::Diverged(format!("an inner step gave parameters that are not finite ({e}); lower --inner-lr"))
    })
}

/// Rows of every inner round at its adapted policy (`policies[k]` on D_k).
pub fn chain_rows<'a>(
    policies: &'a [GaussianMlp],
    rounds: &'a [InnerRound],
) -> Result<Vec<GaussianMlpRows<'a>>> {
    rounds.iter().zip(policies).map(|(r, p)| r.data.rows(p)).collect()
}

/// The inner objectives on those rows (Ĥ_k = their Hessians).
pub fn chain_objectives<'a>(
    inner: &InnerObjective,
    rows: &'a [GaussianMlpRows<'a>],
    rounds: &'a [InnerRound],
) -> Result<Vec<BatchObjective<'a, GaussianMlpRows<'a>>>> {
    rows.iter().zip(rounds).map(|(r, round)| inner.objective(&round.data, &round.prepared, r)).collect()
}

/// J_K u: u ← u + ηĤ_k u for k = 0 … K−1 (identity for [`Order::First`]).
pub fn jvp<R: ScoreRows>(objs: &[BatchObjective<'_, R>], eta: f64, order: Order, u: &[f64]) -> Vec<f64> {
    let mut u = u.to_vec();
    if order == Order::Second {
        for o in objs {
            let hu = o.hvp(&u);
            u.iter_mut().zip(&hu).for_each(|(a, b)| *a += eta * b);
        }
    }
    u
}

/// J_Kᵀ w plus per-step terms: w ← w + ηĤ_k w + `extras[k]` for k = K−1 … 0 (`extras` empty
/// or of length K; HVPs dropped for [`Order::First`]).
pub fn vjp<R: ScoreRows>(
    objs: &[BatchObjective<'_, R>],
    eta: f64,
    order: Order,
    w: &[f64],
    extras: &[Vec<f64>],
) -> Result<Vec<f64>> {
    if !extras.is_empty() && extras.len() != objs.len() {
        return Err(invalid(
            "extras",
            format!("expected 0 or {} per-step terms, got {}", objs.len(), extras.len()),
        ));
    }
    let (_, w) =
        accumulate_back(objs, eta, order, (0.0, w.to_vec()), |k| Ok(extras.get(k).map(|e| (0.0, e))))?;
    Ok(w)
}

/// The reverse recursion shared by [`vjp`] and [`meta_gradient_on_chain`]: from (L, w),
/// for k = K−1 … 0: w ← w + ηĤ_k w, then (L, w) ← (L + E_k, w + ∇E_k) with
/// (E_k, ∇E_k) = `extra(k)` when it gives one.
fn accumulate_back<R: ScoreRows, E: AsRef<[f64]>>(
    objs: &[BatchObjective<'_, R>],
    eta: f64,
    order: Order,
    (mut value, mut w): (f64, Vec<f64>),
    mut extra: impl FnMut(usize) -> Result<Option<(f64, E)>>,
) -> Result<(f64, Vec<f64>)> {
    for k in (0..objs.len()).rev() {
        if order == Order::Second {
            let hw = objs[k].hvp(&w);
            w.iter_mut().zip(&hw).for_each(|(a, b)| *a += eta * b);
        }
        if let Some((e, ge)) = extra(k)? {
            value += e;
            w.iter_mut().zip(ge.as_ref()).for_each(|(a, b)| *a += b);
        }
    }
    Ok((value, w))
}

/// An outer objective at θ_K: given π_{θ_K}, (L_out, ∇L_out).
pub type OuterTerm<'f> = dyn FnMut(&GaussianMlp) -> Result<(f64, Vec<f64>)> + 'f;

/// A per-step term E_k of the outer objective: given k and π_{θ_k}'s rows on D_k,
/// (E_k, ∇E_k), or `None`.
pub type StepTerm<'f> = dyn Fn(usize, &GaussianMlpRows<'_>) -> Result<Option<(f64, Vec<f64>)>> + 'f;

/// The meta-gradient of L(θ) = L_out(θ_K(θ)) + Σ_k E_k(θ_k(θ)) for one task at fixed data:
/// adapts and accumulates back in one recursion that keeps step k's rows alive from the
/// inner gradient to the HVP (one forward pass per inner step). `outer(π_{θ_K})` gives
/// (L_out, ∇L_out); `extra` the per-step terms. Returns (L, ∇L).
pub fn meta_gradient_with(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    rounds: &[InnerRound],
    eta: f64,
    order: Order,
    outer: &mut OuterTerm<'_>,
    extra: &StepTerm<'_>,
) -> Result<(f64, Vec<f64>)> {
    let Some((round, rest)) = rounds.split_first() else {
        return outer(policy);
    };
    let k = 0;
    let rows = round.data.rows(policy)?;
    let obj = inner.objective(&round.data, &round.prepared, &rows)?;
    let (_, g_in) = obj.gradient();
    let next = step_policy(policy, &g_in, eta)?;
    let shifted = |j: usize, r: &GaussianMlpRows<'_>| extra(j + 1, r);
    let (mut value, mut v) = meta_gradient_with(inner, &next, rest, eta, order, outer, &shifted)?;
    if order == Order::Second {
        let hv = obj.hvp(&v);
        v.iter_mut().zip(&hv).for_each(|(a, b)| *a += eta * b);
    }
    if let Some((e, ge)) = extra(k, &rows)? {
        value += e;
        v.iter_mut().zip(&ge).for_each(|(a, b)| *a += b);
    }
    Ok((value, v))
}

/// [`meta_gradient_with`] without per-step terms: (L_out(θ_K), ∇_θ L_out(θ_K(θ))).
pub fn meta_gradient(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    rounds: &[InnerRound],
    eta: f64,
    order: Order,
    mut outer: impl FnMut(&GaussianMlp) -> Result<(f64, Vec<f64>)>,
) -> Result<(f64, Vec<f64>)> {
    meta_gradient_with(inner, policy, rounds, eta, order, &mut outer, &|_, _| Ok(None))
}

/// [`meta_gradient_with`] on an adaptation already taken ([`adapt_chain`]; `objs[k]` the
/// inner objective on `chain.rows[k]`): the same value and meta-gradient bit for bit,
/// without repeating the adaptation's forward and backward passes.
pub fn meta_gradient_on_chain<'d>(
    objs: &[BatchObjective<'_, GaussianMlpRows<'d>>],
    chain: &AdaptedChain<'d>,
    eta: f64,
    order: Order,
    outer: &mut OuterTerm<'_>,
    extra: &StepTerm<'_>,
) -> Result<(f64, Vec<f64>)> {
    if objs.len() != chain.rows.len() {
        return Err(invalid(
            "objectives",
            format!("expected one per adapted step ({}), got {}", chain.rows.len(), objs.len()),
        ));
    }
    let start = outer(&chain.last)?;
    accumulate_back(objs, eta, order, start, |k| extra(k, &chain.rows[k]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::objectives::InnerKind;
    use crate::meta::objectives::tests::{perturbed, rand_vec, small_setup};
    use crate::meta::optim::ratio_surrogate;

    /// L_out(θ_K) = −mean(ρ' Â') on a post-update task (the TRPO surrogate).
    fn outer(p: &GaussianMlp, post: &TaskData) -> Result<(f64, Vec<f64>)> {
        let rows = post.rows(p)?;
        let o = ratio_surrogate(rows.values(), &post.advantages)?;
        let mut g = vec![0.0; p.num_params()];
        rows.vjp_add(&o.d_log, &mut g);
        Ok((o.loss, g))
    }

    /// max_i |central difference of f along θ_i − g_i| / max_i |g_i| (step 1e-5).
    fn max_rel_fd_error(f: &dyn Fn(&[f64]) -> f64, theta: &[f64], g: &[f64]) -> f64 {
        let h = 1e-5;
        let scale = g.iter().map(|x| x.abs()).fold(0.0, f64::max);
        (0..theta.len())
            .map(|i| {
                let (mut a, mut b) = (theta.to_vec(), theta.to_vec());
                a[i] += h;
                b[i] -= h;
                ((f(&a) - f(&b)) / (2.0 * h) - g[i]).abs() / scale
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn meta_gradient_matches_finite_differences_of_the_adapted_objective() {
        // Four rounds of one task's data: three inner steps and the post-update round.
        let (p0, data) = small_setup(11, 4);
        let policy = perturbed(&p0, 0.1, 5);
        let eta = 0.3;
        for kind in [InnerKind::Maml, InnerKind::Lvc, InnerKind::Taypo2, InnerKind::Dr] {
            let inner = InnerObjective::new(kind, 0.99);
            let rounds: Vec<InnerRound> =
                data[..3].iter().map(|d| InnerRound::new(&inner, d.clone()).unwrap()).collect();
            let post = &data[3];
            let (val, g) =
                meta_gradient(&inner, &policy, &rounds, eta, Order::Second, |p| outer(p, post)).unwrap();
            let f = |th: &[f64]| {
                let q = policy.with_params(th).unwrap();
                let ps = adapt(&inner, &q, &rounds, eta).unwrap();
                outer(ps.last().unwrap(), post).unwrap().0
            };
            assert!((f(policy.params()) - val).abs() < 1e-12);
            let worst = max_rel_fd_error(&f, policy.params(), &g);
            assert!(worst < 1e-6, "{kind:?}: meta-gradient rel err {worst}");
            let scale = g.iter().map(|x| x.abs()).fold(0.0, f64::max);
            // First order differs (the Hessian term matters here) and equals ∇L_out(θ_K).
            let (_, g1) =
                meta_gradient(&inner, &policy, &rounds, eta, Order::First, |p| outer(p, post)).unwrap();
            let last = adapt(&inner, &policy, &rounds, eta).unwrap().pop().unwrap();
            assert_eq!(g1, outer(&last, post).unwrap().1);
            // The chain form gives the same meta-gradient.
            let pols = adapt(&inner, &policy, &rounds, eta).unwrap();
            let rows = chain_rows(&pols, &rounds).unwrap();
            let objs = chain_objectives(&inner, &rows, &rounds).unwrap();
            let g_chain = vjp(&objs, eta, Order::Second, &outer(&last, post).unwrap().1, &[]).unwrap();
            assert!(g_chain.iter().zip(&g).all(|(a, b)| (a - b).abs() <= 1e-12 * (1.0 + b.abs())));
            let diff = g1.iter().zip(&g).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff > 1e-3 * scale, "{kind:?}: second-order term negligible ({diff} vs {scale})");
        }
    }

    #[test]
    fn per_step_terms_are_differentiated_through_the_adaptation() {
        use crate::meta::objectives::exploration_term;
        let (p0, data) = small_setup(13, 3);
        let policy = perturbed(&p0, 0.1, 8);
        let (eta, w) = (0.3, 0.8);
        let inner = InnerObjective::new(InnerKind::Lvc, 0.99);
        let rounds: Vec<InnerRound> =
            data[..2].iter().map(|d| InnerRound::new(&inner, d.clone()).unwrap()).collect();
        let post = &data[2];
        // L = L_out(θ_2) + Σ_k [E-MAML term + KL(μ_k ‖ π_{θ_k})] on D_k.
        let extra = |k: usize, r: &GaussianMlpRows<'_>| -> Result<Option<(f64, Vec<f64>)>> {
            let (e, mut g) = exploration_term(r, &rounds[k].data, w)?;
            let kl = rounds[k].data.kl_from_behaviour(r, Some(&mut g))?;
            Ok(Some((e + kl, g)))
        };
        let (val, g) =
            meta_gradient_with(&inner, &policy, &rounds, eta, Order::Second, &mut |p| outer(p, post), &extra)
                .unwrap();
        let f = |th: &[f64]| {
            let q = policy.with_params(th).unwrap();
            let ps = adapt(&inner, &q, &rounds, eta).unwrap();
            let mut l = outer(ps.last().unwrap(), post).unwrap().0;
            for (k, p) in ps[..2].iter().enumerate() {
                l += extra(k, &rounds[k].data.rows(p).unwrap()).unwrap().unwrap().0;
            }
            l
        };
        assert!((f(policy.params()) - val).abs() < 1e-12);
        let worst = max_rel_fd_error(&f, policy.params(), &g);
        assert!(worst < 1e-6, "per-step terms: meta-gradient rel err {worst}");
    }

    /// The adaptation taken once ([`adapt_chain`]) gives [`adapt`]'s θ_K and, reused,
    /// [`meta_gradient_with`]'s value and meta-gradient bit for bit (per-step terms and
    /// both orders included), and its rows give the same HVPs as fresh ones.
    #[test]
    fn the_kept_adaptation_reproduces_the_recursion_bit_for_bit() {
        use crate::meta::objectives::exploration_term;
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (p0, data) = small_setup(15, 4);
        let policy = perturbed(&p0, 0.1, 10);
        let eta = 0.3;
        for kind in [InnerKind::Maml, InnerKind::Taypo2, InnerKind::Dr] {
            let inner = InnerObjective::new(kind, 0.99);
            let rounds: Vec<InnerRound> =
                data[..3].iter().map(|d| InnerRound::new(&inner, d.clone()).unwrap()).collect();
            let post = &data[3];
            let chain = adapt_chain(&inner, &policy, &rounds, eta).unwrap();
            let pols = adapt(&inner, &policy, &rounds, eta).unwrap();
            assert_eq!(bits(chain.last.params()), bits(pols[3].params()));
            for (r, p) in chain.rows.iter().zip(&pols) {
                assert_eq!(bits(r.policy().params()), bits(p.params()));
            }
            let objs = chain_objectives(&inner, &chain.rows, &rounds).unwrap();
            let extra = |k: usize, r: &GaussianMlpRows<'_>| -> Result<Option<(f64, Vec<f64>)>> {
                let (e, g) = exploration_term(r, &rounds[k].data, 0.7)?;
                Ok(Some((e, g)))
            };
            for order in [Order::Second, Order::First] {
                let (v1, g1) =
                    meta_gradient_with(&inner, &policy, &rounds, eta, order, &mut |p| outer(p, post), &extra)
                        .unwrap();
                let (v2, g2) =
                    meta_gradient_on_chain(&objs, &chain, eta, order, &mut |p| outer(p, post), &extra)
                        .unwrap();
                assert_eq!(v1.to_bits(), v2.to_bits(), "{kind:?} {order:?}");
                assert_eq!(bits(&g1), bits(&g2), "{kind:?} {order:?}");
            }
            // The kept rows (with their cached backward pass) and fresh rows: same HVPs.
            let fresh_rows = chain_rows(&pols, &rounds).unwrap();
            let fresh = chain_objectives(&inner, &fresh_rows, &rounds).unwrap();
            let u = rand_vec(policy.num_params(), 3);
            assert_eq!(bits(&jvp(&objs, eta, Order::Second, &u)), bits(&jvp(&fresh, eta, Order::Second, &u)));
            assert!(
                meta_gradient_on_chain(
                    &objs[..2],
                    &chain,
                    eta,
                    Order::Second,
                    &mut |p| outer(p, post),
                    &extra
                )
                .unwrap_err()
                .to_string()
                .contains("objectives")
            );
        }
    }

    /// TRPO's Fisher-vector product through the adaptation, J_Kᵀ F' J_K v, equals the
    /// Hessian of θ ↦ mean KL(π_{θ_K(θ0)} ‖ π_{θ_K(θ)}) at θ0 applied to v (finite
    /// differences of its gradient).
    #[test]
    fn fisher_through_the_adaptation_is_the_kl_hessian() {
        let (p0, data) = small_setup(14, 3);
        let policy = perturbed(&p0, 0.1, 9);
        let eta = 0.3;
        let inner = InnerObjective::new(InnerKind::Taypo2, 0.99);
        let rounds: Vec<InnerRound> =
            data[..2].iter().map(|d| InnerRound::new(&inner, d.clone()).unwrap()).collect();
        let post = &data[2];
        let pols = adapt(&inner, &policy, &rounds, eta).unwrap();
        let old = pols.last().unwrap().clone();
        let old_mean = old.mean_batch(&post.obs).unwrap();
        let kl_grad = |th: &[f64]| {
            let q = policy.with_params(th).unwrap();
            meta_gradient(&inner, &q, &rounds, eta, Order::Second, |last| {
                let mut g = vec![0.0; last.num_params()];
                let kl = last.batch(&post.obs)?.mean_kl_from(&old_mean, old.log_std(), Some(&mut g))?;
                Ok((kl, g))
            })
            .unwrap()
            .1
        };
        let rows = chain_rows(&pols, &rounds).unwrap();
        let objs = chain_objectives(&inner, &rows, &rounds).unwrap();
        let batch = old.batch(&post.obs).unwrap();
        let v = rand_vec(policy.num_params(), 4);
        let u = jvp(&objs, eta, Order::Second, &v);
        let mut fu = vec![0.0; u.len()];
        batch.fisher_vector_product(&u, &mut fu).unwrap();
        let fvp = vjp(&objs, eta, Order::Second, &fu, &[]).unwrap();
        let h = 1e-5;
        let th = policy.params();
        let plus: Vec<f64> = th.iter().zip(&v).map(|(t, x)| t + h * x).collect();
        let minus: Vec<f64> = th.iter().zip(&v).map(|(t, x)| t - h * x).collect();
        let fd: Vec<f64> =
            kl_grad(&plus).iter().zip(&kl_grad(&minus)).map(|(a, b)| (a - b) / (2.0 * h)).collect();
        let scale = fd.iter().map(|x| x.abs()).fold(0.0, f64::max);
        let err = fd.iter().zip(&fvp).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(scale > 1e-3 && err < 1e-5 * scale, "J'F'Jv vs KL Hessian: err {err}, scale {scale}");
    }

    #[test]
    fn jvp_and_vjp_are_transposes() {
        let (p0, data) = small_setup(12, 2);
        let policy = perturbed(&p0, 0.1, 6);
        let inner = InnerObjective::new(InnerKind::Taypo2, 0.99);
        let rounds: Vec<InnerRound> =
            data.iter().map(|d| InnerRound::new(&inner, d.clone()).unwrap()).collect();
        let policies = adapt(&inner, &policy, &rounds, 0.2).unwrap();
        let rows = chain_rows(&policies, &rounds).unwrap();
        let objs = chain_objectives(&inner, &rows, &rounds).unwrap();
        let d = policy.num_params();
        let (u, w) = (rand_vec(d, 1), rand_vec(d, 2));
        let ju = jvp(&objs, 0.2, Order::Second, &u);
        let jtw = vjp(&objs, 0.2, Order::Second, &w, &[]).unwrap();
        let a: f64 = w.iter().zip(&ju).map(|(x, y)| x * y).sum();
        let b: f64 = u.iter().zip(&jtw).map(|(x, y)| x * y).sum();
        assert!((a - b).abs() < 1e-10 * (1.0 + a.abs()), "{a} vs {b}");
        assert!(
            vjp(&objs, 0.2, Order::Second, &w, std::slice::from_ref(&w))
                .unwrap_err()
                .to_string()
                .contains("extras")
        );
    }

    /// End to end on a tabular task where the exact meta-gradient is known: with pre-update
    /// data from π_θ and post-update data from π_θ' (θ' = θ + η∇J_T(θ), the exact step), the
    /// mean of (I + ηĤ)ĝ' converges to (I + η∇²J_T(θ))∇J_T(θ') for DR and on-policy TayPO-2
    /// (both unbiased for the derivatives of the finite-horizon value J_T,
    /// docs/theory.md#finite-horizon-value).
    #[test]
    fn tabular_meta_gradient_estimates_converge_to_the_exact_one() {
        use crate::estimators::{Estimator, TaylorDiscount};
        use crate::policy::TabularSoftmax;
        use crate::tabular::oracle::{Bootstrap, finite_horizon_derivatives};
        use crate::tabular::{Critic, RandomMdpParams, TabularBatch, TabularMdp};
        use rand::{RngExt, SeedableRng};
        use rand_chacha::ChaCha8Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let params =
            RandomMdpParams { n_states: 4, n_actions: 3, dirichlet: 0.5, gamma: 0.8, ..Default::default() };
        let mdp = TabularMdp::random(&params, &mut rng);
        let theta: Vec<f64> = (0..12).map(|_| rng.random_range(-0.5..0.5)).collect();
        let policy = TabularSoftmax::new(4, 3, theta.clone());
        let critic_v: Vec<f64> = (0..4).map(|_| rng.random_range(0.0..2.0)).collect();
        let critic = Critic::StateValues(critic_v.clone());
        let (horizon, eta) = (5, 2.0);
        let boot = Bootstrap::StateValues(&critic_v);
        let ex = finite_horizon_derivatives(&mdp, &policy, horizon, boot);
        let theta_post: Vec<f64> = theta.iter().zip(&ex.gradient).map(|(t, g)| t + eta * g).collect();
        let post_policy = TabularSoftmax::new(4, 3, theta_post);
        let ex_post = finite_horizon_derivatives(&mdp, &post_policy, horizon, boot);
        let d = 12;
        let hg: Vec<f64> =
            (0..d).map(|i| (0..d).map(|j| ex.hessian[i * d + j] * ex_post.gradient[j]).sum()).collect();
        let exact: Vec<f64> = ex_post.gradient.iter().zip(&hg).map(|(g, h)| g + eta * h).collect();
        let (reps, n) = (300, 200);
        for est in [Estimator::Dr, Estimator::TayPo { order: 2, discount: TaylorDiscount::Absolute }] {
            let mut sum = vec![0.0; d];
            let mut sq = vec![0.0; d];
            let mut first = vec![0.0; d];
            for _ in 0..reps {
                let pre: Vec<_> =
                    (0..n).map(|_| mdp.sample_trajectory(policy.probs(), horizon, &mut rng)).collect();
                let post: Vec<_> =
                    (0..n).map(|_| mdp.sample_trajectory(post_policy.probs(), horizon, &mut rng)).collect();
                let post_batch = TabularBatch::new(&post, post_policy.probs(), 3);
                let g_post = post_batch
                    .estimate(Estimator::Dr, 0.8, &post_policy, Some(&critic), false)
                    .unwrap()
                    .gradient;
                let pre_batch = TabularBatch::new(&pre, policy.probs(), 3);
                let prepared = pre_batch.prepare(est, 0.8, Some(&critic)).unwrap();
                let rows = pre_batch.rows(&policy, &prepared, Some(&critic));
                let objs = [BatchObjective::new(&prepared, &rows).unwrap()];
                let m = vjp(&objs, eta, Order::Second, &g_post, &[]).unwrap();
                for i in 0..d {
                    first[i] += g_post[i];
                    sum[i] += m[i];
                    sq[i] += m[i] * m[i];
                }
            }
            let r = reps as f64;
            let (mut worst, mut worst_first): (f64, f64) = (0.0, 0.0);
            for i in 0..d {
                let mean = sum[i] / r;
                let se = ((sq[i] / r - mean * mean).max(0.0) / (r - 1.0)).sqrt();
                worst = worst.max((mean - exact[i]).abs() / (se + 1e-12));
                worst_first = worst_first.max((first[i] / r - exact[i]).abs() / (se + 1e-12));
            }
            assert!(worst < 5.0, "{est}: worst |mean − exact| = {worst:.2} standard errors");
            // The test has power: the first-order estimate ĝ' alone is clearly off.
            assert!(worst_first > 10.0, "{est}: first order only {worst_first:.2} standard errors off");
        }
    }
}
