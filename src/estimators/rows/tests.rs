//! Tests of the row interface: row derivatives against finite differences, composition into
//! the tabular derivatives, and bad input.

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

    fn objective(&self, e: Estimator, kind: u8, u: &[f64], means: Option<&[f64]>) -> Result<RowObjective> {
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
                assert!((fd - hc[i]).abs() < 1e-6 * (1.0 + fd.abs()), "{e}: c-HVP[{i}] FD {fd} vs {}", hc[i]);
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
            assert!((fd - g.u[i]).abs() < 1e-7 * (1.0 + fd.abs()), "{e}: ∂V̂/∂u[{i}] FD {fd} vs {}", g.u[i]);
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
    let overflow = msg(d.objective(est("is"), 0, &u, None));
    assert!(
        overflow.contains("invalid u[0][1]: u − log_mu = ") && overflow.contains("exp(u − log_mu) = inf"),
        "{overflow}"
    );
    let short = &d.u[..n * t - 1];
    let data = RowData {
        u: Padded::new(&d.u, n, t),
        log_mu: Padded::new(short, n, t - 1),
        rewards: Padded::new(&d.rewards, n, t),
        lengths: None,
        critic: RowCritic::None,
    };
    assert!(msg(RowObjective::new(est("is"), 0.9, &data)).contains("invalid log_mu: expected shape (3, 4)"));
    let data = RowData { log_mu: Padded::new(&d.log_mu, n, t), lengths: Some(&[4, 5, 0][..]), ..data };
    assert!(
        msg(RowObjective::new(est("is"), 0.9, &data)).contains("invalid lengths[1]: must be in 0..=4, got 5")
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
        parse_estimator("nope", 1.0, TaylorDiscount::Absolute).unwrap_err().to_string().contains("estimator")
    );
    assert!(parse_estimator("dr", f64::NAN, TaylorDiscount::Absolute).is_err());
    let obj = d.objective(est("dr"), 1, &d.u, None).unwrap();
    assert!(obj.hvp(&d.u[1..], None).unwrap_err().to_string().contains("invalid direction"));
    assert!(obj.hvp(&d.u, Some(&d.means)).unwrap_err().to_string().contains("direction_c"));
}

#[test]
fn ratios_match_the_platforms_exp_at_every_level() {
    // Within ±40 the vectorised exp (relative error ≈ 2e-16); a row with an entry outside
    // goes through the platform's exp whole, bit for bit; every CPU level gives the same bits.
    let m: Vec<f64> = (0..203).map(|i| -1.0 + 0.01 * i as f64).collect();
    let inside: Vec<f64> = (0..203).map(|i| -39.9 + 79.8 * i as f64 / 202.0).collect();
    let mut outside = inside.clone();
    outside[57] = 300.0;
    let exact = |u: &[f64]| u.iter().zip(&m).map(|(a, b)| (a - b).exp()).collect::<Vec<f64>>();
    let mut fast = Vec::new();
    assert!(push_ratios(&mut fast, &inside, &m));
    for (a, b) in fast.iter().zip(exact(&inside)) {
        assert!((a - b).abs() <= 4e-16 * b, "{a} vs {b}");
    }
    let mut slow = vec![7.0];
    assert!(!push_ratios(&mut slow, &outside, &m));
    assert_eq!(slow[0], 7.0);
    assert_eq!(slow[1..], exact(&outside)[..]);
    for l in crate::cpu::Level::available() {
        let mut out = vec![0.0; m.len()];
        assert!(ratios_into_at(l, &inside, &m, &mut out), "{l}");
        assert_eq!(out, fast, "{l}");
        assert!(!ratios_into_at(l, &outside, &m, &mut out), "{l}");
        assert!(!ratios_into_at(l, &[f64::NAN], &[0.0], &mut out[..1]), "{l}");
    }
}
