//! Tests of the kernels: every product shape against a naive reference, the unpacked tiles
//! and blocked loops against the plain ones bit for bit, tanh and exp against `std`.

use super::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_mat(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Naive reference: C = β C + op(A) op(B) with closures giving op(A)_ip and op(B)_pj.
fn reference(
    m: usize,
    k: usize,
    n: usize,
    a: impl Fn(usize, usize) -> f64,
    b: impl Fn(usize, usize) -> f64,
    beta: f64,
    c: &[f64],
) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = beta * c[i * n + j] + (0..k).map(|p| a(i, p) * b(p, j)).sum::<f64>();
        }
    }
    out
}

fn close(x: &[f64], y: &[f64], tol: f64) -> bool {
    x.iter().zip(y).all(|(a, b)| (a - b).abs() <= tol * (1.0 + b.abs()))
}

#[test]
fn every_product_shape_matches_the_naive_reference_in_both_precisions() {
    // Thin and wide in each dimension, so that the row-loop and gemm paths all run.
    let dims = [1, 3, 8, 9, 17, 64];
    let mut seed = 0;
    for &m in &dims {
        for &k in &dims {
            for &n in &dims {
                seed += 1;
                let (a, b, c0) =
                    (rand_mat(m * k, seed), rand_mat(k * n, seed + 1000), rand_mat(m * n, seed + 2000));
                for beta in [0.0, 1.0, 0.5] {
                    let want = reference(m, k, n, |i, p| a[i * k + p], |p, j| b[p * n + j], beta, &c0);
                    let mut c = c0.clone();
                    mm_nn(m, k, n, &a, &b, beta, &mut c);
                    assert!(close(&c, &want, 1e-13), "nn {m}×{k}×{n} β={beta}");
                    // A·Bᵀ with B stored n×k: reuse b as an n×k matrix.
                    let want = reference(m, k, n, |i, p| a[i * k + p], |p, j| b[j * k + p], beta, &c0);
                    let mut c = c0.clone();
                    mm_nt(m, k, n, &a, &b, beta, &mut c);
                    assert!(close(&c, &want, 1e-13), "nt {m}×{k}×{n} β={beta}");
                    let af: Vec<f32> = a.iter().map(|&x| x as f32).collect();
                    let bf: Vec<f32> = b.iter().map(|&x| x as f32).collect();
                    let mut cf: Vec<f32> = c0.iter().map(|&x| x as f32).collect();
                    mm_nt(m, k, n, &af, &bf, beta as f32, &mut cf);
                    let cf: Vec<f64> = cf.iter().map(|&x| x as f64).collect();
                    assert!(close(&cf, &want, 1e-5), "nt f32 {m}×{k}×{n} β={beta}");
                }
                // Aᵀ·B with A stored k×m.
                let want = reference(m, k, n, |i, p| a[p * m + i], |p, j| b[p * n + j], 1.0, &c0);
                let mut c = c0.clone();
                mm_tn_add(m, k, n, &a, &b, &mut c);
                assert!(close(&c, &want, 1e-13), "tn {m}×{k}×{n}");
            }
        }
    }
}

/// The unpacked f32 kernels give `matrixmultiply`'s sgemm bit for bit (where they are
/// used), across tile edges and depth blocks, for β = 0, 1 and another β.
#[test]
fn direct_f32_products_equal_matrixmultiply_bit_for_bit() {
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let sgemm = |m: usize,
                 k: usize,
                 n: usize,
                 a: &[f32],
                 (rsa, csa): (isize, isize),
                 b: &[f32],
                 beta: f32,
                 c: &mut [f32]| {
        // SAFETY: a holds the m×k operand at strides (rsa, csa), b is k×n row-major, c m×n.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                n as isize,
                1,
                beta,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    };
    if !direct::available() {
        // Not used here: matrixmultiply runs another micro-kernel.
        eprintln!("note: no AVX-512 on this CPU: the direct kernels are not used, nothing to compare");
        return;
    }
    let mut checked = 0;
    let mut seed = 50_000;
    for &m in &[1, 3, 4, 9, 64, 67, 200] {
        for &k in &[9, 64, 255, 256, 257, 600] {
            for &n in &[9, 16, 33, 64, 70, 130] {
                seed += 1;
                let a = f32s(rand_mat(m * k, seed));
                let b = f32s(rand_mat(k * n, seed + 7));
                let c0 = f32s(rand_mat(m * n, seed + 9));
                for beta in [0.0f32, 1.0, 0.5] {
                    let mut want = c0.clone();
                    sgemm(m, k, n, &a, (k as isize, 1), &b, beta, &mut want);
                    let mut got = c0.clone();
                    assert!(f32::direct_nn(m, k, n, &a, &b, beta, &mut got));
                    assert_eq!(bits(&got), bits(&want), "nn {m}×{k}×{n} β={beta}");
                }
                // Aᵀ·B with A stored k×m.
                let at = f32s(rand_mat(k * m, seed + 11));
                let mut want = c0.clone();
                sgemm(m, k, n, &at, (1, m as isize), &b, 1.0, &mut want);
                let mut got = c0.clone();
                assert!(f32::direct_tn_add(m, k, n, &at, &b, &mut got));
                assert_eq!(bits(&got), bits(&want), "tn {m}×{k}×{n}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 7 * 6 * 6);
    // Sums that differ with the operation order do occur at these sizes, so the
    // comparison can fail: a plain (unfused) dot product differs somewhere.
    let (k, n) = (600, 64);
    let a = f32s(rand_mat(k, 1));
    let b = f32s(rand_mat(k * n, 2));
    let mut fused = vec![0.0f32; n];
    assert!(f32::direct_nn(1, k, n, &a, &b, 0.0, &mut fused));
    let plain: Vec<f32> = (0..n).map(|j| (0..k).fold(0.0f32, |s, p| s + a[p] * b[p * n + j])).collect();
    assert_ne!(bits(&plain), bits(&fused));
}

/// The register-blocked row kernel does each entry's operations in the order of the
/// plain loops it replaced (a scaled or zeroed c, then c + a·b term by term), so they
/// agree bit for bit, in both precisions.
#[test]
fn blocked_rows_axpy_equals_the_plain_loops_bit_for_bit() {
    /// Scales C by β (β = 0 overwrites with zeros, even NaN entries, as gemm does).
    fn scale<F: Real>(beta: F, c: &mut [F]) {
        if beta == F::ZERO {
            c.iter_mut().for_each(|x| *x = F::ZERO);
        } else if beta != F::ONE {
            c.iter_mut().for_each(|x| *x *= beta);
        }
    }
    fn plain_rows_axpy<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
        for (ci, ai) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)).take(m) {
            scale(beta, ci);
            for (p, &aip) in ai.iter().enumerate() {
                axpy(aip, &b[p * n..(p + 1) * n], ci);
            }
        }
    }
    fn check<F: Real>(cast: fn(f64) -> F, bits: fn(F) -> u64) {
        let v = |len: usize, seed: u64| rand_mat(len, seed).into_iter().map(cast).collect::<Vec<F>>();
        let mut seed = 70_000;
        for &m in &[1, 2, 3, 4, 5, 8, 9, 37] {
            for &k in &[1, 2, 4, 8, 300] {
                for &n in &[1, 7, 16, 17, 64, 70, 100, 128] {
                    seed += 1;
                    let (a, b, mut c0) = (v(m * k, seed), v(k * n, seed + 1), v(m * n, seed + 2));
                    c0[0] = cast(f64::NAN);
                    for beta in [0.0, 1.0, 0.5] {
                        let (mut want, mut got) = (c0.clone(), c0.clone());
                        plain_rows_axpy(m, k, n, &a, &b, cast(beta), &mut want);
                        rows_axpy(m, k, n, &a, &b, cast(beta), &mut got);
                        let same = want.iter().zip(&got).all(|(x, y)| bits(*x) == bits(*y));
                        assert!(same, "rows_axpy {m}×{k}×{n} β={beta}");
                    }
                }
            }
        }
    }
    check::<f64>(|x| x, f64::to_bits);
    check::<f32>(|x| x as f32, |x| x.to_bits() as u64);
    // The comparison sees the order: summing the same terms in reverse differs somewhere.
    let (a, b) = (rand_mat(300, 1), rand_mat(300, 2));
    let fwd = a.iter().zip(&b).fold(0.0, |s, (x, y)| s + x * y);
    let rev = a.iter().zip(&b).rev().fold(0.0, |s, (x, y)| s + x * y);
    let mut c = [0.0];
    rows_axpy(1, 300, 1, &a, &b, 0.0, &mut c);
    assert_eq!(c[0].to_bits(), fwd.to_bits());
    assert_ne!(fwd.to_bits(), rev.to_bits());
}

/// The AVX-512 Aᵀ·B kernel for small m (f32; f64 runs the loop itself) does each
/// entry's operations in the order of the row-by-row axpy loop it replaced, bit for
/// bit, across its 32- and 16-column blocks and the scalar tail.
#[test]
fn blocked_tn_small_m_equals_the_row_loop_bit_for_bit() {
    fn plain<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], c: &mut [F]) {
        for p in 0..k {
            for i in 0..m {
                axpy(a[p * m + i], &b[p * n..(p + 1) * n], &mut c[i * n..(i + 1) * n]);
            }
        }
    }
    fn check<F: Real>(cast: fn(f64) -> F, bits: fn(F) -> u64) {
        let v = |len: usize, seed: u64| rand_mat(len, seed).into_iter().map(cast).collect::<Vec<F>>();
        let mut seed = 90_000;
        for m in 1..=9 {
            for &k in &[0, 1, 2, 5, 300] {
                for &n in &[1, 7, 16, 17, 33, 48, 64, 70] {
                    seed += 1;
                    let (a, b, c0) = (v(k * m, seed), v(k * n, seed + 1), v(m * n, seed + 2));
                    let (mut want, mut got) = (c0.clone(), c0.clone());
                    plain(m, k, n, &a, &b, &mut want);
                    tn_small_m(m, k, n, &a, &b, &mut got);
                    let same = want.iter().zip(&got).all(|(x, y)| bits(*x) == bits(*y));
                    assert!(same, "tn_small_m {m}×{k}×{n}");
                }
            }
        }
    }
    if !direct::available() {
        eprintln!(
            "note: no AVX-512 on this CPU: the blocked kernel is compared with the loop it falls back to"
        );
    }
    check::<f64>(|x| x, f64::to_bits);
    check::<f32>(|x| x as f32, |x| x.to_bits() as u64);
    // The kernel runs wherever AVX-512 does (else the comparison is loop against loop).
    let mut c = vec![0.0f32; 4 * 64];
    assert_eq!(f32::direct_tn_small(4, 3, 64, &[0.5; 12], &[0.25; 192], &mut c), direct::available());
    assert!(!f32::direct_tn_small(9, 3, 64, &[0.5; 27], &[0.25; 192], &mut vec![0.0; 9 * 64]));
    // The comparison sees fused multiply-adds: the same sums with them differ somewhere.
    let (a, b) = (rand_mat(300, 3), rand_mat(300 * 64, 4));
    let differ = (0..64).any(|j| {
        let terms = || a.iter().enumerate().map(|(p, x)| (*x as f32, b[p * 64 + j] as f32));
        let plain = terms().fold(0.0f32, |s, (x, y)| s + x * y);
        let fused = terms().fold(0.0f32, |s, (x, y)| x.mul_add(y, s));
        plain.to_bits() != fused.to_bits()
    });
    assert!(differ);
}

#[test]
fn beta_zero_overwrites_non_finite_entries() {
    for (m, k, n) in [(5, 3, 4), (5, 12, 4), (5, 12, 12)] {
        let (a, b) = (rand_mat(m * k, 1), rand_mat(k * n, 2));
        let mut c = vec![f64::NAN; m * n];
        mm_nn(m, k, n, &a, &b, 0.0, &mut c);
        assert!(c.iter().all(|x| x.is_finite()), "{m}×{k}×{n}");
    }
}

#[test]
fn fast_tanh_and_exp_are_accurate() {
    let xs: Vec<f64> = (0..400_001).map(|i| -30.0 + 60.0 * i as f64 / 400_000.0).collect();
    let mut t = xs.clone();
    f64::tanh_inplace(&mut t);
    let mut t32: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
    f32::tanh_inplace(&mut t32);
    let (mut worst_tanh, mut worst_tanh32, mut worst_exp) = (0.0f64, 0.0f64, 0.0f64);
    for ((x, tx), t32) in xs.iter().zip(&t).zip(&t32) {
        worst_tanh = worst_tanh.max((tx - x.tanh()).abs());
        worst_tanh32 = worst_tanh32.max((*t32 as f64 - (*x as f32 as f64).tanh()).abs());
        if x.abs() <= 40.0 {
            worst_exp = worst_exp.max(((exp_reduced(*x) - x.exp()) / x.exp()).abs());
        }
    }
    assert!(worst_tanh <= 4e-16, "{worst_tanh:e}");
    assert!(worst_tanh32 <= 5e-7, "{worst_tanh32:e}");
    assert!(worst_exp <= 4e-16, "{worst_exp:e}");
    let mut special = [0.0, 1e-300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
    f64::tanh_inplace(&mut special);
    assert_eq!(special[..4], [0.0, 0.0, 1.0, -1.0]);
    assert!(special[4].is_nan());
    let mut special = [0.0f32, 1e-30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    f32::tanh_inplace(&mut special);
    assert_eq!([special[0], special[2], special[3]], [0.0, 1.0, -1.0]);
    assert!((special[1] - 1e-30).abs() <= 1e-36);
    assert!(special[4].is_nan());
}
