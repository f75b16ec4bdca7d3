//! Tests of the Gaussian MLP: its passes against finite differences, hyper-dual numbers and
//! each other, in both precisions; its rows, KL and Fisher products.

use super::*;
use crate::policy::mlp_kernels::{Buf, Real};
use crate::policy::{RowBlocks, ScoreRows};

/// θ + h v.
fn along(theta: &[f64], v: &[f64], h: f64) -> Vec<f64> {
    theta.iter().zip(v).map(|(t, v)| t + h * v).collect()
}

fn small_policy(seed: u64) -> GaussianMlp {
    let cfg = GaussianMlpConfig { hidden: vec![5, 4], init_log_std: 0.0, ..Default::default() };
    let mut p = GaussianMlp::new(3, 2, &cfg, seed).unwrap();
    // Random biases and log-std so that every derivative path is exercised.
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    let theta: Vec<f64> = p.params().iter().map(|t| t + 0.3 * rng.random_range(-1.0..1.0)).collect();
    p.set_params(&theta).unwrap();
    p
}

fn data(p: &GaussianMlp, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let obs: Vec<f64> = (0..n * p.obs_dim()).map(|_| rng.random_range(-1.5..1.5)).collect();
    let actions: Vec<f64> = (0..n * p.act_dim()).map(|_| rng.random_range(-2.0..2.0)).collect();
    let behaviour: Vec<f64> = (0..n).map(|_| rng.random_range(-3.0..-1.0)).collect();
    (obs, actions, behaviour)
}

fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Σ_i w_i log π_θ(a_i|x_i).
fn weighted_loglik(p: &GaussianMlp, theta: &[f64], obs: &[f64], actions: &[f64], w: &[f64]) -> f64 {
    let q = p.with_params(theta).unwrap();
    q.log_prob_batch(obs, actions).unwrap().iter().zip(w).map(|(l, w)| l * w).sum()
}

fn fd_grad(f: impl Fn(&[f64]) -> f64, theta: &[f64], h: f64) -> Vec<f64> {
    let mut t = theta.to_vec();
    (0..theta.len())
        .map(|k| {
            t[k] = theta[k] + h;
            let fp = f(&t);
            t[k] = theta[k] - h;
            let fm = f(&t);
            t[k] = theta[k];
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The passes' results, as f64 bits: rows (values, log-probs), a gradient, a fused HVP
/// taken after it (the gradient's cached backward pass) and one taken alone, a Fisher
/// product and a KL gradient.
fn pass_results(p: &GaussianMlp, obs: &[f64], actions: &[f64], behaviour: &[f64]) -> Vec<u64> {
    let (d, n) = (p.num_params(), behaviour.len());
    let (w, v) = (rand_vec(n, 31), rand_vec(d, 32));
    let op = |jv: &[f64], c: &mut [f64]| c.iter_mut().zip(jv).for_each(|(c, x)| *c = 0.3 * x);
    let rows = p.rows(obs, actions, behaviour).unwrap();
    let mut out: Vec<f64> = rows.values().iter().chain(rows.log_probs()).copied().collect();
    let (mut g, mut hv, mut hv_alone) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    rows.vjp_add(&w, &mut g);
    rows.hessian_vector_add(&w, &v, op, &mut hv);
    p.rows(obs, actions, behaviour).unwrap().hessian_vector_add(&w, &v, op, &mut hv_alone);
    let batch = p.batch(obs).unwrap();
    let mut fv = vec![0.0; d];
    batch.fisher_vector_product(&v, &mut fv).unwrap();
    let mut kl_grad = vec![0.0; d];
    let old_mean: Vec<f64> = batch.mean().iter().map(|m| m + 0.1).collect();
    out.push(batch.mean_kl_from(&old_mean, &vec![0.2; p.act_dim()], Some(&mut kl_grad)).unwrap());
    out.extend(g.iter().chain(&hv).chain(&hv_alone).chain(&fv).chain(&kl_grad));
    out.iter().map(|x| x.to_bits()).collect()
}

/// Work buffers taken from the per-thread pool hold whatever an earlier pass left (here
/// NaN): every pass overwrites them before reading, so the results are those of a fresh
/// thread's buffers bit for bit; and an HVP reusing the backward pass cached by the
/// gradient equals one computing its own.
#[test]
fn reused_work_buffers_and_cached_passes_leave_results_unchanged() {
    for precision in [Precision::F32, Precision::F64] {
        let cfg = GaussianMlpConfig { hidden: vec![16, 16], init_log_std: -0.2, precision };
        let p = GaussianMlp::new(3, 2, &cfg, 41).unwrap();
        let (obs, actions, behaviour) = data(&p, 700, 42);
        // 700 × 16 entries: above the size from which buffers are pooled.
        let fresh =
            std::thread::scope(|s| s.spawn(|| pass_results(&p, &obs, &actions, &behaviour)).join().unwrap());
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                fn poison<F: Real>(nan: F) {
                    let bufs: Vec<Buf<F>> = (0..40)
                        .map(|i| {
                            let mut b = Buf::scratch(700 * 16 + i);
                            b.iter_mut().for_each(|x| *x = nan);
                            b
                        })
                        .collect();
                    drop(bufs);
                }
                poison(f32::NAN);
                poison(f64::NAN);
                pass_results(&p, &obs, &actions, &behaviour)
            })
            .join()
            .unwrap()
        });
        assert_eq!(fresh, poisoned, "{precision}");
        // The HVP after the gradient (cached pass) and the one alone agree.
        let d = p.num_params();
        let at = |k: usize| &fresh[fresh.len() - (5 - k) * d..fresh.len() - (4 - k) * d];
        assert_eq!(at(1), at(2), "{precision}");
        assert!(fresh.iter().all(|b| f64::from_bits(*b).is_finite()));
    }
}

#[test]
fn f32_passes_agree_with_f64_to_single_precision() {
    let p64 = GaussianMlp::new(4, 3, &GaussianMlpConfig::default(), 21).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let theta: Vec<f64> = p64.params().iter().map(|t| t + 0.1 * rng.random_range(-1.0..1.0)).collect();
    let p64 = p64.with_params(&theta).unwrap();
    let p32 = p64.with_precision(Precision::F32);
    assert_eq!((p32.precision(), p32.params()), (Precision::F32, p64.params()));
    let n = 300;
    let (obs, actions, behaviour) = data(&p64, n, 23);
    let (w, v) = (rand_vec(n, 24), rand_vec(p64.num_params(), 25));
    let rel = |a: &[f64], b: &[f64]| {
        let scale = b.iter().map(|x| x.abs()).fold(0.0, f64::max);
        max_abs_diff(a, b) / scale
    };
    let (r64, r32) =
        (p64.rows(&obs, &actions, &behaviour).unwrap(), p32.rows(&obs, &actions, &behaviour).unwrap());
    assert!(rel(r32.log_probs(), r64.log_probs()) < 1e-5);
    let d = p64.num_params();
    let (mut g64, mut g32) = (vec![0.0; d], vec![0.0; d]);
    r64.vjp_add(&w, &mut g64);
    r32.vjp_add(&w, &mut g32);
    assert!(rel(&g32, &g64) < 1e-5, "vjp {}", rel(&g32, &g64));
    let (mut j64, mut j32) = (vec![0.0; n], vec![0.0; n]);
    r64.jvp(&v, &mut j64);
    r32.jvp(&v, &mut j32);
    assert!(rel(&j32, &j64) < 1e-5, "jvp {}", rel(&j32, &j64));
    let (mut h64, mut h32) = (vec![0.0; d], vec![0.0; d]);
    r64.hessian_vector_add(&w, &v, |jv, c| c.copy_from_slice(jv), &mut h64);
    r32.hessian_vector_add(&w, &v, |jv, c| c.copy_from_slice(jv), &mut h32);
    assert!(rel(&h32, &h64) < 1e-5, "hvp {}", rel(&h32, &h64));
    let (mut f64_, mut f32_) = (vec![0.0; d], vec![0.0; d]);
    p64.batch(&obs).unwrap().fisher_vector_product(&v, &mut f64_).unwrap();
    p32.batch(&obs).unwrap().fisher_vector_product(&v, &mut f32_).unwrap();
    assert!(rel(&f32_, &f64_) < 1e-5, "fisher {}", rel(&f32_, &f64_));
    // The f32 passes are not the f64 ones (the switch is live).
    assert!(g32 != g64 && h32 != h64);
}

#[test]
fn cached_backward_chain_gives_the_same_bits_as_a_fresh_pass() {
    for precision in [Precision::F64, Precision::F32] {
        let p = small_policy(31).with_precision(precision);
        let (obs, actions, behaviour) = data(&p, 9, 32);
        let rows = p.rows(&obs, &actions, &behaviour).unwrap();
        let d = p.num_params();
        // Alternate weights so that the cache is hit, missed and refilled.
        for (k, wseed) in [40, 40, 41, 40, 40].into_iter().enumerate() {
            let (w, v) = (rand_vec(9, wseed), rand_vec(d, 50 + k as u64));
            let mut cached = vec![0.0; d];
            rows.curvature_hvp_add(&w, &v, &mut cached);
            let mut fresh = vec![0.0; d];
            p.rows(&obs, &actions, &behaviour).unwrap().curvature_hvp_add(&w, &v, &mut fresh);
            assert_eq!(cached, fresh, "{precision} call {k}");
        }
    }
}

#[test]
fn init_layout_and_validation() {
    let p = GaussianMlp::new(20, 6, &GaussianMlpConfig::default(), 1).unwrap();
    assert_eq!(p.num_params(), 20 * 64 + 64 + 64 * 64 + 64 + 64 * 6 + 6 + 6);
    assert!(p.log_std().iter().all(|&s| s == 0.0));
    // biases zero, weights within the Xavier bound
    let b0 = p.biases(p.params(), 0);
    assert!(b0.iter().all(|&b| b == 0.0));
    let bound = (6.0f64 / 84.0).sqrt();
    assert!(p.weights(p.params(), 0).iter().all(|w| w.abs() <= bound));
    assert_eq!(p, GaussianMlp::new(20, 6, &GaussianMlpConfig::default(), 1).unwrap());
    let err = GaussianMlp::new(0, 2, &GaussianMlpConfig::default(), 0).unwrap_err();
    assert!(err.to_string().contains("obs_dim = 0"), "{err}");
    let bad = GaussianMlpConfig { hidden: vec![4, 0], init_log_std: 0.0, ..Default::default() };
    assert!(GaussianMlp::new(2, 2, &bad, 0).unwrap_err().to_string().contains("hidden"));
    let nan = GaussianMlpConfig { hidden: vec![], init_log_std: f64::NAN, ..Default::default() };
    assert!(GaussianMlp::new(2, 2, &nan, 0).unwrap_err().to_string().contains("init_log_std"));
    let mut q = p.clone();
    assert!(q.set_params(&[0.0; 3]).unwrap_err().to_string().contains("theta.len() = 3"));
    assert!(p.rows(&[0.0; 7], &[], &[]).err().unwrap().to_string().contains("obs.len() = 7"));
    // Through the Policy trait: the same checks, and an f32 policy's working copy follows θ.
    let f32cfg = GaussianMlpConfig { precision: Precision::F32, ..Default::default() };
    let mut r = GaussianMlp::new(20, 6, &f32cfg, 1).unwrap();
    let shifted: Vec<f64> = r.params().iter().map(|t| t + 0.01).collect();
    let obs = vec![0.5; 20];
    Policy::set_params(&mut r, &shifted).unwrap();
    assert_eq!(r.mean_batch(&obs).unwrap(), r.with_params(&shifted).unwrap().mean_batch(&obs).unwrap());
    assert_ne!(r.mean_batch(&obs).unwrap(), q.mean_batch(&obs).unwrap());
    let mut nan = shifted.clone();
    nan[4] = f64::NAN;
    assert!(Policy::set_params(&mut r, &nan).unwrap_err().to_string().contains("θ[4]"));
    assert_eq!(r.params(), &shifted[..], "a refused θ leaves the parameters");
}

#[test]
fn log_prob_matches_gaussian_density_and_values_are_ratios() {
    let p = small_policy(3);
    let (obs, actions, behaviour) = data(&p, 6, 4);
    let mean = p.mean_batch(&obs).unwrap();
    let lp = p.log_prob_batch(&obs, &actions).unwrap();
    for i in 0..6 {
        let mut dens = 1.0;
        for j in 0..2 {
            let sd = p.log_std()[j].exp();
            let z = (actions[i * 2 + j] - mean[i * 2 + j]) / sd;
            dens *= (-0.5 * z * z).exp() / (sd * (2.0 * std::f64::consts::PI).sqrt());
        }
        assert!((lp[i] - dens.ln()).abs() < 1e-12);
    }
    let rows = p.rows(&obs, &actions, &behaviour).unwrap();
    for i in 0..6 {
        assert!((rows.values()[i] - (lp[i] - behaviour[i]).exp()).abs() < 1e-12);
    }
}

#[test]
fn vjp_matches_finite_differences() {
    let p = small_policy(5);
    let (obs, actions, behaviour) = data(&p, 7, 6);
    let w = rand_vec(7, 7);
    let rows = p.rows(&obs, &actions, &behaviour).unwrap();
    let mut g = vec![0.0; p.num_params()];
    rows.vjp_add(&w, &mut g);
    let fd = fd_grad(|t| weighted_loglik(&p, t, &obs, &actions, &w), p.params(), 1e-6);
    assert!(max_abs_diff(&g, &fd) < 1e-7, "{}", max_abs_diff(&g, &fd));
}

#[test]
fn jvp_matches_finite_differences_and_adjoint_identity() {
    let p = small_policy(8);
    let (obs, actions, behaviour) = data(&p, 5, 9);
    let rows = p.rows(&obs, &actions, &behaviour).unwrap();
    let v = rand_vec(p.num_params(), 10);
    let mut jv = vec![0.0; 5];
    rows.jvp(&v, &mut jv);
    let h = 1e-6;
    let tp = along(p.params(), &v, h);
    let tm = along(p.params(), &v, -h);
    let lp = p.with_params(&tp).unwrap().log_prob_batch(&obs, &actions).unwrap();
    let lm = p.with_params(&tm).unwrap().log_prob_batch(&obs, &actions).unwrap();
    for i in 0..5 {
        assert!((jv[i] - (lp[i] - lm[i]) / (2.0 * h)).abs() < 1e-7);
    }
    // ⟨w, J v⟩ = ⟨Jᵀ w, v⟩
    let w = rand_vec(5, 11);
    let mut jtw = vec![0.0; p.num_params()];
    rows.vjp_add(&w, &mut jtw);
    let lhs: f64 = w.iter().zip(&jv).map(|(a, b)| a * b).sum();
    let rhs: f64 = jtw.iter().zip(&v).map(|(a, b)| a * b).sum();
    assert!((lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()));
    // per-row gradients agree with the vjp of unit weights
    let sel = [4usize, 1, 1];
    let g = rows.row_gradients(&sel);
    for (a, &r) in sel.iter().enumerate() {
        let mut e = vec![0.0; 5];
        e[r] = 1.0;
        let mut gr = vec![0.0; p.num_params()];
        rows.vjp_add(&e, &mut gr);
        let d = p.num_params();
        assert!(max_abs_diff(&g[a * d..(a + 1) * d], &gr) < 1e-12);
    }
}

#[test]
fn hvp_matches_finite_differences_of_gradient() {
    let p = small_policy(12);
    let (obs, actions, behaviour) = data(&p, 8, 13);
    let w = rand_vec(8, 14);
    let v = rand_vec(p.num_params(), 15);
    let rows = p.rows(&obs, &actions, &behaviour).unwrap();
    let mut hv = vec![0.0; p.num_params()];
    rows.curvature_hvp_add(&w, &v, &mut hv);
    let h = 1e-5;
    let grad_at = |t: &[f64]| {
        let q = p.with_params(t).unwrap();
        let r = q.rows(&obs, &actions, &behaviour).unwrap();
        let mut g = vec![0.0; p.num_params()];
        r.vjp_add(&w, &mut g);
        g
    };
    let tp = along(p.params(), &v, h);
    let tm = along(p.params(), &v, -h);
    let (gp, gm) = (grad_at(&tp), grad_at(&tm));
    let fd: Vec<f64> = gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * h)).collect();
    assert!(max_abs_diff(&hv, &fd) < 1e-7, "{}", max_abs_diff(&hv, &fd));
}

#[test]
fn fused_hessian_vector_product_matches_composition() {
    let p = small_policy(61);
    let (obs, actions, behaviour) = data(&p, 7, 62);
    let rows = p.rows(&obs, &actions, &behaviour).unwrap();
    let (w, v) = (rand_vec(7, 63), rand_vec(p.num_params(), 64));
    // A row-space operator coupling rows: c = F (J v) with a random dense F.
    let f = rand_vec(49, 65);
    let op = |jv: &[f64], c: &mut [f64]| {
        for a in 0..7 {
            c[a] = (0..7).map(|b| f[a * 7 + b] * jv[b]).sum();
        }
    };
    let d = p.num_params();
    let mut fused = vec![0.0; d];
    rows.hessian_vector_add(&w, &v, op, &mut fused);
    let mut jv = vec![0.0; 7];
    rows.jvp(&v, &mut jv);
    let mut c = vec![0.0; 7];
    op(&jv, &mut c);
    let mut composed = vec![0.0; d];
    rows.vjp_add(&c, &mut composed);
    rows.curvature_hvp_add(&w, &v, &mut composed);
    assert!(max_abs_diff(&fused, &composed) < 1e-12);
}

/// Σ_i w_i log π_θ(a_i|x_i) in hyper-dual arithmetic, θ_k = θ_k + ε₁ v_k + ε₂ u_k:
/// `.eps1` is ∇f·v and `.eps1eps2` is uᵀ∇²f v, exact to rounding (num-dual oracle).
fn hyperdual_loglik(
    p: &GaussianMlp,
    v: &[f64],
    u: &[f64],
    obs: &[f64],
    actions: &[f64],
    w: &[f64],
) -> num_dual::HyperDual64 {
    use num_dual::{DualNum, HyperDual64 as H};
    let th: Vec<H> = (0..p.num_params()).map(|k| H::new(p.params()[k], v[k], u[k], 0.0)).collect();
    let (od, ad) = (p.obs_dim(), p.act_dim());
    let mut total = H::from_re(0.0);
    for i in 0..w.len() {
        let mut h: Vec<H> = obs[i * od..(i + 1) * od].iter().map(|&x| H::from_re(x)).collect();
        for l in 0..p.n_layers() {
            let (fi, fo) = (p.sizes[l], p.sizes[l + 1]);
            let mut z: Vec<H> = (0..fo).map(|j| th[p.b_off[l] + j]).collect();
            for (a, ha) in h.iter().enumerate().take(fi) {
                for (j, zj) in z.iter_mut().enumerate() {
                    *zj += *ha * th[p.w_off[l] + a * fo + j];
                }
            }
            h = if l + 1 < p.n_layers() { z.iter().map(|x| x.tanh()).collect() } else { z };
        }
        let mut lp = H::from_re(0.0);
        for j in 0..ad {
            let s = th[p.s_off + j];
            let diff = H::from_re(actions[i * ad + j]) - h[j];
            lp += diff * diff * (s * H::from_re(-2.0)).exp() * H::from_re(-0.5) - s - H::from_re(HALF_LN_2PI);
        }
        total += lp * H::from_re(w[i]);
    }
    total
}

#[test]
fn jvp_and_hvp_match_hyperdual_oracle_to_rounding() {
    for seed in 0..4 {
        let p = small_policy(70 + seed);
        let (obs, actions, behaviour) = data(&p, 6, 80 + seed);
        let rows = p.rows(&obs, &actions, &behaviour).unwrap();
        let w = rand_vec(6, 90 + seed);
        let (v, u) = (rand_vec(p.num_params(), 100 + seed), rand_vec(p.num_params(), 110 + seed));
        let oracle = hyperdual_loglik(&p, &v, &u, &obs, &actions, &w);
        let mut jv = vec![0.0; 6];
        rows.jvp(&v, &mut jv);
        let wjv: f64 = w.iter().zip(&jv).map(|(a, b)| a * b).sum();
        assert!((wjv - oracle.eps1).abs() < 1e-12 * (1.0 + oracle.eps1.abs()), "{wjv} {}", oracle.eps1);
        let mut hv = vec![0.0; p.num_params()];
        rows.curvature_hvp_add(&w, &v, &mut hv);
        let uhv: f64 = u.iter().zip(&hv).map(|(a, b)| a * b).sum();
        assert!(
            (uhv - oracle.eps1eps2).abs() < 1e-12 * (1.0 + oracle.eps1eps2.abs()),
            "{uhv} {}",
            oracle.eps1eps2
        );
        // symmetry: uᵀHv = vᵀHu
        let mut hu = vec![0.0; p.num_params()];
        rows.curvature_hvp_add(&w, &u, &mut hu);
        let vhu: f64 = v.iter().zip(&hu).map(|(a, b)| a * b).sum();
        assert!((uhv - vhu).abs() < 1e-12 * (1.0 + uhv.abs()));
    }
}

#[test]
fn dense_hessian_matches_second_differences_and_is_symmetric() {
    let cfg = GaussianMlpConfig { hidden: vec![3], init_log_std: 0.2, ..Default::default() };
    let p = GaussianMlp::new(2, 2, &cfg, 21).unwrap();
    let (obs, actions, behaviour) = data(&p, 4, 22);
    let w = rand_vec(4, 23);
    let rows = p.rows(&obs, &actions, &behaviour).unwrap();
    let d = p.num_params();
    let mut hess = vec![0.0; d * d];
    rows.curvature_hessian_add(&w, &mut hess);
    let f = |t: &[f64]| weighted_loglik(&p, t, &obs, &actions, &w);
    let h = 1e-4;
    let mut t = p.params().to_vec();
    let mut worst: f64 = 0.0;
    for a in 0..d {
        for b in 0..d {
            assert!((hess[a * d + b] - hess[b * d + a]).abs() < 1e-10);
            let th = p.params();
            let mut val = 0.0;
            for (sa, sb, sign) in [(1.0, 1.0, 1.0), (1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0)] {
                t[a] += sa * h;
                t[b] += sb * h;
                val += sign * f(&t);
                t[a] = th[a];
                t[b] = th[b];
            }
            worst = worst.max((hess[a * d + b] - val / (4.0 * h * h)).abs());
        }
    }
    assert!(worst < 1e-5, "{worst}");
}

#[test]
fn outer_add_matches_default_dense_implementation() {
    let p = small_policy(31);
    let (obs, actions, behaviour) = data(&p, 6, 32);
    let rows = p.rows(&obs, &actions, &behaviour).unwrap();
    let mut blocks = RowBlocks::new();
    blocks.push(&[0, 2, 3], &rand_vec(9, 33));
    blocks.push(&[5, 1], &rand_vec(4, 34));
    let d = p.num_params();
    let mut fast = vec![0.0; d * d];
    rows.outer_add(&blocks, &mut fast);
    // Reference: out += Σ_ab f_ab g_a g_bᵀ from vjp gradients.
    let mut slow = vec![0.0; d * d];
    for (rs, f) in blocks.iter() {
        let k = rs.len();
        let grads: Vec<Vec<f64>> = rs
            .iter()
            .map(|&r| {
                let mut e = vec![0.0; 6];
                e[r] = 1.0;
                let mut g = vec![0.0; d];
                rows.vjp_add(&e, &mut g);
                g
            })
            .collect();
        for a in 0..k {
            for b in 0..k {
                for i in 0..d {
                    for j in 0..d {
                        slow[i * d + j] += f[a * k + b] * grads[a][i] * grads[b][j];
                    }
                }
            }
        }
    }
    assert!(max_abs_diff(&fast, &slow) < 1e-10);
}

#[test]
fn kl_gradient_and_fisher_vector_product() {
    let p = small_policy(41);
    let (obs, _, _) = data(&p, 9, 42);
    let old = p.with_params(&p.params().iter().map(|t| t + 0.05).collect::<Vec<_>>()).unwrap();
    let old_mean = old.mean_batch(&obs).unwrap();
    let kl_at = |t: &[f64]| {
        let q = p.with_params(t).unwrap();
        q.batch(&obs).unwrap().mean_kl_from(&old_mean, old.log_std(), None).unwrap()
    };
    // KL vs Monte-Carlo-free closed form check: KL(old‖old) = 0.
    assert!(kl_at(old.params()).abs() < 1e-14);
    let batch = p.batch(&obs).unwrap();
    let mut g = vec![0.0; p.num_params()];
    let kl = batch.mean_kl_from(&old_mean, old.log_std(), Some(&mut g)).unwrap();
    assert!(kl > 0.0);
    let fd = fd_grad(kl_at, p.params(), 1e-6);
    assert!(max_abs_diff(&g, &fd) < 1e-8, "{}", max_abs_diff(&g, &fd));
    // Fisher-vector product = Hessian of KL(π_θ ‖ π_θ') in θ' at θ' = θ.
    let v = rand_vec(p.num_params(), 43);
    let mut fv = vec![0.0; p.num_params()];
    batch.fisher_vector_product(&v, &mut fv).unwrap();
    let mean0 = batch.mean().to_vec();
    let kl_self = |t: &[f64]| {
        let q = p.with_params(t).unwrap();
        q.batch(&obs).unwrap().mean_kl_from(&mean0, p.log_std(), None).unwrap()
    };
    let h = 1e-4;
    let tp = along(p.params(), &v, h);
    let tm = along(p.params(), &v, -h);
    // vᵀ F v from second differences along v.
    let vfv_fd = (kl_self(&tp) + kl_self(&tm) - 2.0 * kl_self(p.params())) / (h * h);
    let vfv: f64 = v.iter().zip(&fv).map(|(a, b)| a * b).sum();
    assert!((vfv - vfv_fd).abs() < 1e-5 * (1.0 + vfv.abs()), "{vfv} {vfv_fd}");
    // Full vector: gradient of KL(π_θ ‖ π_θ+hv) w.r.t. θ' at θ + hv, divided by h.
    let q = p.with_params(&tp).unwrap();
    let mut gq = vec![0.0; p.num_params()];
    q.batch(&obs).unwrap().mean_kl_from(&mean0, p.log_std(), Some(&mut gq)).unwrap();
    let fd_fv: Vec<f64> = gq.iter().map(|x| x / h).collect();
    assert!(max_abs_diff(&fv, &fd_fv) < 1e-3 * (1.0 + fv.iter().fold(0.0f64, |m, x| m.max(x.abs()))));
}

#[test]
fn sampling_is_seeded_and_log_probs_match() {
    let p = small_policy(51);
    let (obs, _, _) = data(&p, 4, 52);
    let mut a1 = vec![0.0; 8];
    let mut l1 = vec![0.0; 4];
    p.sample_batch(&obs, &mut ChaCha8Rng::seed_from_u64(9), &mut a1, &mut l1).unwrap();
    let mut a2 = vec![0.0; 8];
    let mut l2 = vec![0.0; 4];
    p.sample_batch(&obs, &mut ChaCha8Rng::seed_from_u64(9), &mut a2, &mut l2).unwrap();
    assert_eq!(a1, a2);
    let lp = p.log_prob_batch(&obs, &a1).unwrap();
    assert!(max_abs_diff(&lp, &l1) < 1e-12);
}
