//! Tests of the meta-gradients: against finite differences of the adapted objective, the
//! Fisher products through the adaptation, and the tabular oracle.

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
    for kind in [
        InnerKind::Maml,
        InnerKind::Lvc,
        InnerKind::Taypo2,
        InnerKind::Dr,
        InnerKind::Tmaml,
        InnerKind::TmamlPast,
    ] {
        // TMAML's inner step is IS's policy gradient without a baseline: at η = 0.3 its three
        // steps leave ratios of 1e-150 on the later rounds (a meta-gradient of 1e-158, where
        // central differences lose the comparison to their O(h²) error); η = 0.03 keeps
        // them O(1).
        let eta = if matches!(kind, InnerKind::Tmaml | InnerKind::TmamlPast) { 0.03 } else { 0.3 };
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
        let (_, g1) = meta_gradient(&inner, &policy, &rounds, eta, Order::First, |p| outer(p, post)).unwrap();
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
                meta_gradient_on_chain(&objs, &chain, eta, order, &mut |p| outer(p, post), &extra).unwrap();
            assert_eq!(v1.to_bits(), v2.to_bits(), "{kind:?} {order:?}");
            assert_eq!(bits(&g1), bits(&g2), "{kind:?} {order:?}");
        }
        // The kept rows (with their cached backward pass) and fresh rows: same HVPs.
        let fresh_rows = chain_rows(&pols, &rounds).unwrap();
        let fresh = chain_objectives(&inner, &fresh_rows, &rounds).unwrap();
        let u = rand_vec(policy.num_params(), 3);
        assert_eq!(bits(&jvp(&objs, eta, Order::Second, &u)), bits(&jvp(&fresh, eta, Order::Second, &u)));
        assert!(
            meta_gradient_on_chain(&objs[..2], &chain, eta, Order::Second, &mut |p| outer(p, post), &extra)
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
    let rounds: Vec<InnerRound> = data.iter().map(|d| InnerRound::new(&inner, d.clone()).unwrap()).collect();
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
            let g_post =
                post_batch.estimate(Estimator::Dr, 0.8, &post_policy, Some(&critic), false).unwrap().gradient;
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
