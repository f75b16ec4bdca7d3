//! Every estimator derivative against finite differences, the identities of docs/theory.md#identities,
//! brute-force reference values, and unbiasedness against the exact J_T.

use metagrad::estimators::{BatchObjective, Estimator, TaylorDiscount};
use metagrad::policy::{Policy, TabularSoftmax};
use metagrad::tabular::mdp::sample_dirichlet;
use metagrad::tabular::oracle::{self, Bootstrap, Derivatives};
use metagrad::tabular::{Critic, RandomMdpParams, TabularBatch, TabularMdp, Trajectory};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Instance {
    mdp: TabularMdp,
    mu: Vec<f64>,
    theta: Vec<f64>,
    trajs: Vec<Trajectory>,
    state_critic: Critic,
    action_critic: Critic,
}

fn instance(seed: u64, ns: usize, na: usize, horizon: usize, n: usize) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let params =
        RandomMdpParams { n_states: ns, n_actions: na, dirichlet: 0.5, gamma: 0.9, ..Default::default() };
    let mdp = TabularMdp::random(&params, &mut rng);
    let mu: Vec<f64> = (0..ns).flat_map(|_| sample_dirichlet(2.0, na, &mut rng)).collect();
    let theta: Vec<f64> = (0..ns * na).map(|_| rng.random::<f64>() - 0.5).collect();
    let trajs = (0..n).map(|_| mdp.sample_trajectory(&mu, horizon, &mut rng)).collect();
    let state_critic = Critic::StateValues((0..ns).map(|_| rng.random::<f64>() * 2.0).collect());
    let action_critic = Critic::ActionValues((0..ns * na).map(|_| rng.random::<f64>() * 2.0).collect());
    Instance { mdp, mu, theta, trajs, state_critic, action_critic }
}

impl Instance {
    fn dims(&self) -> (usize, usize) {
        (self.mdp.n_states(), self.mdp.n_actions())
    }
    fn estimate(&self, est: Estimator, theta: &[f64], critic: Option<&Critic>, hessian: bool) -> Derivatives {
        let (ns, na) = self.dims();
        let pol = TabularSoftmax::new(ns, na, theta.to_vec());
        TabularBatch::new(&self.trajs, &self.mu, na)
            .estimate(est, self.mdp.gamma(), &pol, critic, hessian)
            .unwrap()
    }
    fn hvp(&self, est: Estimator, critic: Option<&Critic>, v: &[f64]) -> Vec<f64> {
        let (ns, na) = self.dims();
        let pol = TabularSoftmax::new(ns, na, self.theta.clone());
        let batch = TabularBatch::new(&self.trajs, &self.mu, na);
        let prepared = batch.prepare(est, self.mdp.gamma(), critic).unwrap();
        let rows = batch.rows(&pol, &prepared, critic);
        BatchObjective::new(&prepared, &rows).unwrap().hvp(v)
    }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn scale(a: &[f64]) -> f64 {
    a.iter().map(|x| x.abs()).fold(1.0, f64::max)
}

/// Every (estimator, critic) pair of the family.
fn cases(inst: &Instance) -> Vec<(Estimator, Option<&Critic>)> {
    let sc = Some(&inst.state_critic);
    let ac = Some(&inst.action_critic);
    let p = |s: &str| s.parse::<Estimator>().unwrap();
    vec![
        (p("is"), None),
        (p("dr"), sc),
        (p("dr"), ac),
        (Estimator::TruncatedDr { rho_bar: 1.1, c_bar: 0.9 }, sc),
        (p("taypo-1"), sc),
        (p("taypo-2"), sc),
        (p("taypo-3"), sc),
        (p("taypo-2"), ac),
        (Estimator::TayPo { order: 2, discount: TaylorDiscount::FromFirst }, sc),
        (Estimator::TayPo { order: 3, discount: TaylorDiscount::FromFirst }, ac),
        (p("maml"), sc),
        (p("tmaml"), sc),
        (p("tmaml-past"), sc),
    ]
}

#[test]
fn gradients_hessians_and_hvps_match_finite_differences() {
    let inst = instance(11, 4, 3, 6, 7);
    let d = inst.theta.len();
    let h = 1e-5;
    for (est, critic) in cases(&inst) {
        let ex = inst.estimate(est, &inst.theta, critic, true);
        let at = |i: usize, s: f64| {
            let mut th = inst.theta.clone();
            th[i] += s;
            inst.estimate(est, &th, critic, false)
        };
        let mut fd_grad = vec![0.0; d];
        let mut fd_hess = vec![0.0; d * d];
        for i in 0..d {
            let (p, m) = (at(i, h), at(i, -h));
            fd_grad[i] = (p.value - m.value) / (2.0 * h);
            for j in 0..d {
                fd_hess[j * d + i] = (p.gradient[j] - m.gradient[j]) / (2.0 * h);
            }
        }
        let (eg, eh) = (max_abs_diff(&ex.gradient, &fd_grad), max_abs_diff(&ex.hessian, &fd_hess));
        assert!(eg < 1e-7 * scale(&fd_grad), "{est} {critic:?}: gradient error {eg}");
        assert!(eh < 1e-6 * scale(&fd_hess), "{est} {critic:?}: Hessian error {eh}");
        for i in 0..d {
            for j in 0..d {
                assert!((ex.hessian[i * d + j] - ex.hessian[j * d + i]).abs() < 1e-12 * scale(&ex.hessian));
            }
        }
        // HVP = H v.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let v: Vec<f64> = (0..d).map(|_| rng.random::<f64>() - 0.5).collect();
        let hv: Vec<f64> = (0..d).map(|i| (0..d).map(|j| ex.hessian[i * d + j] * v[j]).sum()).collect();
        let got = inst.hvp(est, critic, &v);
        assert!(max_abs_diff(&got, &hv) < 1e-12 * scale(&hv) * d as f64, "{est}: hvp");
    }
}

/// Brute-force TayPO-K by enumerating all ordered index tuples (docs/theory.md#taypo-k, Eq. 6).
fn taylor_brute_force(k_max: usize, gamma: f64, v0: f64, adv: &[f64], rho: &[f64]) -> f64 {
    fn rec(start: usize, k_left: usize, prod: f64, gamma: f64, adv: &[f64], rho: &[f64], acc: &mut f64) {
        for t in start..rho.len() {
            let p = prod * (rho[t] - 1.0);
            *acc += gamma.powi(t as i32) * p * adv[t];
            if k_left > 1 {
                rec(t + 1, k_left - 1, p, gamma, adv, rho, acc);
            }
        }
    }
    let mut acc = v0;
    rec(0, k_max, 1.0, gamma, adv, rho, &mut acc);
    acc
}

#[test]
fn values_match_reference_definitions() {
    let inst = instance(12, 4, 3, 5, 1);
    let (ns, na) = inst.dims();
    let g = inst.mdp.gamma();
    let tr = &inst.trajs[0];
    let pol = TabularSoftmax::new(ns, na, inst.theta.clone());
    let rho: Vec<f64> = (0..5)
        .map(|t| pol.prob(tr.states[t], tr.actions[t]) / inst.mu[tr.states[t] * na + tr.actions[t]])
        .collect();
    let Critic::StateValues(v) = &inst.state_critic else { unreachable!() };
    let Critic::ActionValues(q) = &inst.action_critic else { unreachable!() };
    // DR by the recursion of docs/theory.md#doubly-robust (Eq. 2, 3), both critics; IS by its definition.
    let (mut dr_s, mut dr_a) =
        (v[tr.states[5]], (0..na).map(|b| pol.prob(tr.states[5], b) * q[tr.states[5] * na + b]).sum::<f64>());
    for t in (0..5).rev() {
        let x = tr.states[t];
        dr_s = v[x] + rho[t] * (tr.rewards[t] + g * dr_s - v[x]);
        let qpi: f64 = (0..na).map(|b| pol.prob(x, b) * q[x * na + b]).sum();
        dr_a = qpi + rho[t] * (tr.rewards[t] + g * dr_a - q[x * na + tr.actions[t]]);
    }
    let is: f64 = (0..5).map(|t| g.powi(t as i32) * rho[..=t].iter().product::<f64>() * tr.rewards[t]).sum();
    let est = |e: &str, c: Option<&Critic>| inst.estimate(e.parse().unwrap(), &inst.theta, c, false).value;
    assert!((est("dr", Some(&inst.state_critic)) - dr_s).abs() < 1e-12);
    assert!((est("dr", Some(&inst.action_critic)) - dr_a).abs() < 1e-12);
    assert!((est("is", None) - is).abs() < 1e-12);
    // TayPO-K against enumeration; advantages Â_t = G_t − V̂(x_t).
    let mut adv = vec![0.0; 5];
    let mut ret = v[tr.states[5]];
    for t in (0..5).rev() {
        ret = tr.rewards[t] + g * ret;
        adv[t] = ret - v[tr.states[t]];
    }
    for k in 1..=6 {
        let want = taylor_brute_force(k, g, v[tr.states[0]], &adv, &rho);
        assert!((est(&format!("taypo-{k}"), Some(&inst.state_critic)) - want).abs() < 1e-12, "taypo-{k}");
    }
    // Truncated DR by the V-trace recursion.
    let (rb, cb) = (1.1, 0.9);
    let mut vt = v[tr.states[5]];
    for t in (0..5).rev() {
        let (x, x1) = (tr.states[t], tr.states[t + 1]);
        vt = v[x] + rho[t].min(rb) * (tr.rewards[t] + g * v[x1] - v[x]) + g * rho[t].min(cb) * (vt - v[x1]);
    }
    // TMAML: IS plus Σ_t γ^t V̂(x_t)(1 − ρ_t)(1 − P_t), P_t = Π_{s≤t} ρ_s.
    let cv: f64 = (0..5)
        .map(|t| {
            g.powi(t as i32) * v[tr.states[t]] * (1.0 - rho[t]) * (1.0 - rho[..=t].iter().product::<f64>())
        })
        .sum();
    assert!((est("tmaml", Some(&inst.state_critic)) - (is + cv)).abs() < 1e-12);
    assert!(cv.abs() > 1e-3);
    // Its variant over past steps: (1 − ρ_t)(1 − P_{t−1}).
    let past: f64 = (0..5)
        .map(|t| {
            g.powi(t as i32) * v[tr.states[t]] * (1.0 - rho[t]) * (1.0 - rho[..t].iter().product::<f64>())
        })
        .sum();
    assert!((est("tmaml-past", Some(&inst.state_critic)) - (is + past)).abs() < 1e-12);
    assert!((past - cv).abs() > 1e-3);
    let got = inst.estimate(
        Estimator::TruncatedDr { rho_bar: rb, c_bar: cb },
        &inst.theta,
        Some(&inst.state_critic),
        false,
    );
    assert!((got.value - vt).abs() < 1e-12);
}

#[test]
fn identities_of_the_family() {
    let inst = instance(13, 4, 3, 5, 9);
    let sc = Some(&inst.state_critic);
    let p = |s: &str| s.parse::<Estimator>().unwrap();
    let dr = inst.estimate(p("dr"), &inst.theta, sc, true);
    // (a) TayPO-K with K ≥ T has DR's derivatives.
    for k in [5, 6, 9] {
        let t = inst.estimate(p(&format!("taypo-{k}")), &inst.theta, sc, true);
        assert!(max_abs_diff(&t.gradient, &dr.gradient) < 1e-11 * scale(&dr.gradient), "taypo-{k} gradient");
        assert!(max_abs_diff(&t.hessian, &dr.hessian) < 1e-11 * scale(&dr.hessian), "taypo-{k} hessian");
    }
    // Truncation at ∞ is DR; IS is DR with a zero critic.
    let inf = Estimator::TruncatedDr { rho_bar: f64::INFINITY, c_bar: f64::INFINITY };
    let tr = inst.estimate(inf, &inst.theta, sc, true);
    assert!(max_abs_diff(&tr.hessian, &dr.hessian) < 1e-12 * scale(&dr.hessian));
    assert!((tr.value - dr.value).abs() < 1e-12);
    let zero = Critic::StateValues(vec![0.0; inst.mdp.n_states()]);
    let is = inst.estimate(p("is"), &inst.theta, None, true);
    let dr0 = inst.estimate(p("dr"), &inst.theta, Some(&zero), true);
    assert!(max_abs_diff(&is.hessian, &dr0.hessian) < 1e-12 * scale(&is.hessian));
    // (b) On-policy (θ = log μ): TayPO-K keeps DR's derivatives up to order K; TayPO-1's
    // Hessian differs (it drops a term); truncation at 1 is DR (ties let ratios flow).
    let on: Vec<f64> = inst.mu.iter().map(|m| m.ln()).collect();
    let dr_on = inst.estimate(p("dr"), &on, sc, true);
    let t1 = inst.estimate(p("taypo-1"), &on, sc, true);
    let t2 = inst.estimate(p("taypo-2"), &on, sc, true);
    let tr1 = inst.estimate(p("dr-trunc"), &on, sc, true);
    assert!(max_abs_diff(&t1.gradient, &dr_on.gradient) < 1e-12 * scale(&dr_on.gradient));
    assert!(max_abs_diff(&t2.gradient, &dr_on.gradient) < 1e-12 * scale(&dr_on.gradient));
    assert!(max_abs_diff(&t2.hessian, &dr_on.hessian) < 1e-12 * scale(&dr_on.hessian));
    assert!(max_abs_diff(&t1.hessian, &dr_on.hessian) > 1e-3 * scale(&dr_on.hessian));
    assert!(max_abs_diff(&tr1.hessian, &dr_on.hessian) < 1e-12 * scale(&dr_on.hessian));
}

/// Mean and standard error of each component over groups of trajectories.
fn grouped(
    inst: &Instance,
    est: Estimator,
    theta: &[f64],
    critic: Option<&Critic>,
    groups: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (ns, na) = inst.dims();
    let pol = TabularSoftmax::new(ns, na, theta.to_vec());
    let per = inst.trajs.len() / groups;
    let samples: Vec<Vec<f64>> = inst
        .trajs
        .chunks(per)
        .map(|c| {
            let d = TabularBatch::new(c, &inst.mu, na)
                .estimate(est, inst.mdp.gamma(), &pol, critic, true)
                .unwrap();
            d.gradient.into_iter().chain(d.hessian).collect()
        })
        .collect();
    let m = samples[0].len();
    let b = samples.len() as f64;
    let mean: Vec<f64> = (0..m).map(|i| samples.iter().map(|s| s[i]).sum::<f64>() / b).collect();
    let se: Vec<f64> = (0..m)
        .map(|i| (samples.iter().map(|s| (s[i] - mean[i]).powi(2)).sum::<f64>() / (b - 1.0) / b).sqrt())
        .collect();
    (mean, se)
}

fn assert_unbiased(name: &str, mean: &[f64], se: &[f64], exact: &Derivatives) {
    let want: Vec<f64> = exact.gradient.iter().chain(&exact.hessian).cloned().collect();
    let mut worst = 0.0f64;
    for i in 0..want.len() {
        // 5 standard errors, plus rounding slack for components that are exactly zero.
        let z = (mean[i] - want[i]).abs() / (se[i] + 1e-12);
        worst = worst.max(z);
    }
    assert!(worst < 5.0, "{name}: worst component is {worst:.2} standard errors from the exact value");
}

#[test]
fn unbiased_for_the_finite_horizon_value() {
    // Off-policy data; IS and DR are unbiased for J_T's derivatives
    // (docs/theory.md#finite-horizon-value).
    let horizon = 4;
    let inst = instance(14, 3, 2, horizon, 200_000);
    let (ns, na) = inst.dims();
    let pol = TabularSoftmax::new(ns, na, inst.theta.clone());
    let Critic::StateValues(v) = &inst.state_critic else { unreachable!() };
    let Critic::ActionValues(q) = &inst.action_critic else { unreachable!() };
    let p = |s: &str| s.parse::<Estimator>().unwrap();
    let j_zero = oracle::finite_horizon_derivatives(&inst.mdp, &pol, horizon, Bootstrap::Zero);
    let j_state = oracle::finite_horizon_derivatives(&inst.mdp, &pol, horizon, Bootstrap::StateValues(v));
    let j_action = oracle::finite_horizon_derivatives(&inst.mdp, &pol, horizon, Bootstrap::ActionValues(q));
    let (m, s) = grouped(&inst, p("is"), &inst.theta, None, 100);
    assert_unbiased("is", &m, &s, &j_zero);
    let (m, s) = grouped(&inst, p("dr"), &inst.theta, Some(&inst.state_critic), 100);
    assert_unbiased("dr (state critic)", &m, &s, &j_state);
    let (m, s) = grouped(&inst, p("dr"), &inst.theta, Some(&inst.action_critic), 100);
    assert_unbiased("dr (action critic)", &m, &s, &j_action);
    // The test can fail: the truncated estimator is biased off-policy.
    let (m, s) = grouped(&inst, p("dr-trunc"), &inst.theta, Some(&inst.state_critic), 100);
    let want: Vec<f64> = j_state.gradient.iter().chain(&j_state.hessian).cloned().collect();
    let worst = (0..want.len()).map(|i| (m[i] - want[i]).abs() / (s[i] + 1e-12)).fold(0.0, f64::max);
    assert!(worst > 10.0, "truncated DR should be detectably biased off-policy ({worst:.1} SE)");
}

#[test]
fn on_policy_taylor_is_unbiased_up_to_its_order() {
    let horizon = 4;
    let mut inst = instance(15, 3, 2, horizon, 200_000);
    // Data from μ = π_θ.
    let (ns, na) = inst.dims();
    let pol = TabularSoftmax::new(ns, na, inst.theta.clone());
    inst.mu = pol.probs().to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    inst.trajs = (0..200_000).map(|_| inst.mdp.sample_trajectory(&inst.mu, horizon, &mut rng)).collect();
    let Critic::StateValues(v) = &inst.state_critic else { unreachable!() };
    let exact = oracle::finite_horizon_derivatives(&inst.mdp, &pol, horizon, Bootstrap::StateValues(v));
    let (m, s) = grouped(&inst, "taypo-2".parse().unwrap(), &inst.theta, Some(&inst.state_critic), 100);
    assert_unbiased("taypo-2 on-policy", &m, &s, &exact);
    // TayPO-1: gradient unbiased, Hessian biased.
    let (m, s) = grouped(&inst, "taypo-1".parse().unwrap(), &inst.theta, Some(&inst.state_critic), 100);
    let d = exact.gradient.len();
    assert_unbiased(
        "taypo-1 gradient",
        &m[..d],
        &s[..d],
        &Derivatives { value: 0.0, gradient: exact.gradient.clone(), hessian: vec![] },
    );
    let worst =
        (0..d * d).map(|i| (m[d + i] - exact.hessian[i]).abs() / (s[d + i] + 1e-12)).fold(0.0, f64::max);
    assert!(worst > 10.0, "TayPO-1's Hessian should be detectably biased ({worst:.1} SE)");
    let _ = Policy::params(&pol);
}

/// ∇ log π_θ(a|x) of the tabular softmax (a vector over θ).
fn score(pol: &TabularSoftmax, na: usize, x: usize, a: usize) -> Vec<f64> {
    let mut g = vec![0.0; pol.probs().len()];
    for b in 0..na {
        g[x * na + b] = f64::from(u8::from(a == b)) - pol.prob(x, b);
    }
    g
}

#[test]
fn tmaml_is_is_plus_its_control_variate_with_the_documented_on_policy_derivatives() {
    let mut inst = instance(17, 4, 3, 5, 6);
    let (ns, na) = inst.dims();
    let pol = TabularSoftmax::new(ns, na, inst.theta.clone());
    inst.mu = pol.probs().to_vec();
    let g = inst.mdp.gamma();
    let sc = Some(&inst.state_critic);
    let Critic::StateValues(v) = &inst.state_critic else { unreachable!() };
    let p = |s: &str| s.parse::<Estimator>().unwrap();
    let is = inst.estimate(p("is"), &inst.theta, None, true);
    for (name, through_t) in [("tmaml", true), ("tmaml-past", false)] {
        let tm = inst.estimate(p(name), &inst.theta, sc, true);
        // On-policy the control variate is 0 with a zero gradient: IS's value and gradient.
        assert!((is.value - tm.value).abs() < 1e-12);
        assert!(max_abs_diff(&is.gradient, &tm.gradient) < 1e-12 * scale(&is.gradient));
        // Its Hessian: (1/N) Σ_n Σ_t γ^t V̂(x_t) (g_t G_tᵀ + G_t g_tᵀ), G_t = Σ_{s≤t} g_s
        // (through t) or Σ_{s<t} g_s.
        let d = inst.theta.len();
        let mut want = vec![0.0; d * d];
        for tr in &inst.trajs {
            let mut big = vec![0.0; d];
            for t in 0..tr.actions.len() {
                let gt = score(&pol, na, tr.states[t], tr.actions[t]);
                if through_t {
                    big.iter_mut().zip(&gt).for_each(|(a, b)| *a += b);
                }
                let w = g.powi(t as i32) * v[tr.states[t]] / inst.trajs.len() as f64;
                for i in 0..d {
                    for j in 0..d {
                        want[i * d + j] += w * (gt[i] * big[j] + big[i] * gt[j]);
                    }
                }
                if !through_t {
                    big.iter_mut().zip(&gt).for_each(|(a, b)| *a += b);
                }
            }
        }
        let diff: Vec<f64> = tm.hessian.iter().zip(&is.hessian).map(|(a, b)| a - b).collect();
        assert!(max_abs_diff(&diff, &want) < 1e-12 * scale(&want), "{name}: {}", max_abs_diff(&diff, &want));
        assert!(want.iter().any(|x| x.abs() > 1e-3));
    }
}

#[test]
fn tmaml_gradient_is_unbiased_on_policy_and_its_hessian_is_not_unless_over_past_steps() {
    // The paper's App. B: the control variate leaves the gradient unbiased and biases the
    // Hessian by 2 Σ_t γ^t E[V̂(x_t) g_t g_tᵀ] (its t = s terms); the test can fail both ways.
    let horizon = 4;
    let mut inst = instance(18, 3, 2, horizon, 200_000);
    let (ns, na) = inst.dims();
    let pol = TabularSoftmax::new(ns, na, inst.theta.clone());
    inst.mu = pol.probs().to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    inst.trajs = (0..200_000).map(|_| inst.mdp.sample_trajectory(&inst.mu, horizon, &mut rng)).collect();
    let exact = oracle::finite_horizon_derivatives(&inst.mdp, &pol, horizon, Bootstrap::Zero);
    let (m, s) = grouped(&inst, "tmaml".parse().unwrap(), &inst.theta, Some(&inst.state_critic), 100);
    let d = exact.gradient.len();
    assert_unbiased(
        "tmaml gradient",
        &m[..d],
        &s[..d],
        &Derivatives { value: 0.0, gradient: exact.gradient.clone(), hessian: vec![] },
    );
    let worst =
        (0..d * d).map(|i| (m[d + i] - exact.hessian[i]).abs() / (s[d + i] + 1e-12)).fold(0.0, f64::max);
    assert!(worst > 10.0, "TMAML's Hessian should be detectably biased ({worst:.1} SE)");
    // Over past steps only, the control variate has mean zero: unbiased.
    let (m, s) = grouped(&inst, "tmaml-past".parse().unwrap(), &inst.theta, Some(&inst.state_critic), 100);
    assert_unbiased("tmaml-past", &m, &s, &exact);
    // With a zero critic the control variate vanishes and the Hessian is IS's, unbiased.
    let zero = Critic::StateValues(vec![0.0; ns]);
    let (m, s) = grouped(&inst, "tmaml".parse().unwrap(), &inst.theta, Some(&zero), 100);
    assert_unbiased("tmaml, zero critic", &m, &s, &exact);
}
