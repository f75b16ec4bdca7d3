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

/// The fused products by definition: per entry, sums of fused multiply-adds from +0 over
/// depth blocks of `KC`, the first stored as s (β = 0) or c·β + s, later ones as c + s.
fn fused_reference<F: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: impl Fn(usize, usize) -> F,
    b: impl Fn(usize, usize) -> F,
    beta: F,
    c: &mut [F],
) {
    for i in 0..m {
        for j in 0..n {
            let mut kb = 0;
            let c = &mut c[i * n + j];
            while kb < k {
                let ke = (kb + direct::KC).min(k);
                let s = (kb..ke).fold(F::ZERO, |s, p| a(i, p).mul_add(b(p, j), s));
                *c = if kb > 0 {
                    *c + s
                } else if beta == F::ZERO {
                    s
                } else {
                    *c * beta + s
                };
                kb = ke;
            }
        }
    }
}

/// Bits of a slice of either precision.
fn bits<F: Real>(x: &[F]) -> Vec<u64> {
    x.iter().map(|v| v.to_f64().to_bits()).collect()
}

/// Every level of this CPU gives the fused products' definition bit for bit (wide shapes,
/// across tile edges and depth blocks, β = 0, 1 and another, a NaN in C under β = 0), in
/// both precisions; on a CPU with AVX-512 so does `matrixmultiply`'s gemm (whose AVX-512
/// micro-kernels the fused products reproduce, so results are those of earlier builds).
#[test]
fn fused_products_equal_their_definition_and_matrixmultiply_on_every_level() {
    fn check<F: Real>(cast: fn(f64) -> F, gemm: Option<GemmFn<F>>) -> usize {
        let v = |len: usize, seed: u64| rand_mat(len, seed).into_iter().map(cast).collect::<Vec<F>>();
        let mut checked = 0;
        let mut seed = 50_000;
        for &m in &[1, 3, 4, 9, 64, 67, 200] {
            for &k in &[9, 64, 255, 256, 257, 600] {
                for &n in &[9, 16, 33, 64, 70, 130] {
                    seed += 1;
                    let (a, b, mut c0) = (v(m * k, seed), v(k * n, seed + 7), v(m * n, seed + 9));
                    let at = v(k * m, seed + 11);
                    for beta in [0.0, 1.0, 0.5].map(cast) {
                        c0[0] = if beta == F::ZERO { cast(f64::NAN) } else { cast(0.25) };
                        let mut want = c0.clone();
                        fused_reference(m, k, n, |i, p| a[i * k + p], |p, j| b[p * n + j], beta, &mut want);
                        if let Some(gemm) = gemm {
                            let mut mm = c0.clone();
                            gemm(m, k, n, &a, (k as isize, 1), &b, beta, &mut mm);
                            assert_eq!(bits(&mm), bits(&want), "matrixmultiply nn {m}×{k}×{n} β={beta:?}");
                        }
                        // A·Bᵀ with B stored n×k: the transposed b.
                        let bt = transpose(k, n, &b);
                        for level in Level::available() {
                            let mut got = c0.clone();
                            mm_nn_at(level, m, k, n, &a, &b, beta, &mut got);
                            assert_eq!(bits(&got), bits(&want), "{level} nn {m}×{k}×{n} β={beta:?}");
                            let mut got = c0.clone();
                            mm_nt_at(level, m, k, n, &a, &bt, beta, &mut got);
                            assert_eq!(bits(&got), bits(&want), "{level} nt {m}×{k}×{n} β={beta:?}");
                        }
                    }
                    // Aᵀ·B with A stored k×m.
                    c0[0] = cast(0.25);
                    let mut want = c0.clone();
                    fused_reference(m, k, n, |i, p| at[p * m + i], |p, j| b[p * n + j], F::ONE, &mut want);
                    if let Some(gemm) = gemm {
                        let mut mm = c0.clone();
                        gemm(m, k, n, &at, (1, m as isize), &b, F::ONE, &mut mm);
                        assert_eq!(bits(&mm), bits(&want), "matrixmultiply tn {m}×{k}×{n}");
                    }
                    // (m ≤ THIN runs the thin loop, tested below.)
                    for level in Level::available().into_iter().filter(|_| m > THIN) {
                        let mut got = c0.clone();
                        mm_tn_add_at(level, m, k, n, &at, &b, &mut got);
                        assert_eq!(bits(&got), bits(&want), "{level} tn {m}×{k}×{n}");
                    }
                    checked += 1;
                }
            }
        }
        checked
    }
    type GemmFn<F> = fn(usize, usize, usize, &[F], (isize, isize), &[F], F, &mut [F]);
    macro_rules! gemm {
        ($t:ty, $f:path) => {
            |m: usize,
             k: usize,
             n: usize,
             a: &[$t],
             (rsa, csa): (isize, isize),
             b: &[$t],
             beta: $t,
             c: &mut [$t]| {
                // SAFETY: a holds the m×k operand at strides (rsa, csa), b is k×n
                // row-major, c m×n.
                unsafe {
                    $f(
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
            }
        };
    }
    // matrixmultiply picks its micro-kernel from the CPU: the AVX-512 ones are those
    // reproduced.
    let avx512 = Level::detected() == Level::Avx512;
    if !avx512 {
        eprintln!("note: no AVX-512 on this CPU: the levels are compared with the definition only");
    }
    let sgemm: GemmFn<f32> = gemm!(f32, matrixmultiply::sgemm);
    let dgemm: GemmFn<f64> = gemm!(f64, matrixmultiply::dgemm);
    assert_eq!(check::<f32>(|x| x as f32, avx512.then_some(sgemm)), 7 * 6 * 6);
    assert_eq!(check::<f64>(|x| x, avx512.then_some(dgemm)), 7 * 6 * 6);
    // Sums that differ with the operation order do occur at these sizes, so the
    // comparison can fail: a plain (unfused) dot product differs somewhere.
    let (k, n) = (600, 64);
    let a: Vec<f32> = rand_mat(k, 1).into_iter().map(|x| x as f32).collect();
    let b: Vec<f32> = rand_mat(k * n, 2).into_iter().map(|x| x as f32).collect();
    let mut fused = vec![0.0f32; n];
    mm_nn(1, k, n, &a, &b, 0.0, &mut fused);
    let plain: Vec<f32> = (0..n).map(|j| (0..k).fold(0.0f32, |s, p| s + a[p] * b[p * n + j])).collect();
    assert_ne!(bits(&plain), bits(&fused));
}

/// Every product shape (thin ones included) and every element-wise kernel gives the same
/// bits on every level of this CPU, in both precisions.
#[test]
fn every_kernel_gives_the_same_bits_on_every_level() {
    fn check<F: Real>(cast: fn(f64) -> F) {
        let v = |len: usize, seed: u64| {
            rand_mat(len, seed).into_iter().map(|x| cast(3.0 * x)).collect::<Vec<F>>()
        };
        let levels = Level::available();
        let all_same = |what: &str, f: &dyn Fn(Level) -> Vec<F>| {
            let want = bits(&f(Level::Baseline));
            for &l in &levels[1..] {
                assert_eq!(bits(&f(l)), want, "{what} at {l}");
            }
        };
        let mut seed = 60_000;
        let dims = [1, 3, 8, 9, 17, 64, 70];
        for &m in &dims {
            for &k in &dims {
                for &n in &dims {
                    seed += 1;
                    let (a, b, c0) = (v(m * k, seed), v(k * n, seed + 1), v(m * n, seed + 2));
                    for beta in [0.0, 1.0, 0.5].map(cast) {
                        all_same(&format!("nn {m}×{k}×{n} β={beta:?}"), &|l| {
                            let mut c = c0.clone();
                            mm_nn_at(l, m, k, n, &a, &b, beta, &mut c);
                            c
                        });
                        all_same(&format!("nt {m}×{k}×{n} β={beta:?}"), &|l| {
                            let mut c = c0.clone();
                            mm_nt_at(l, m, k, n, &a, &b, beta, &mut c);
                            c
                        });
                    }
                    all_same(&format!("tn {m}×{k}×{n}"), &|l| {
                        let mut c = c0.clone();
                        mm_tn_add_at(l, m, k, n, &a, &b, &mut c);
                        c
                    });
                }
            }
        }
        let (x, h, d, rh) = (v(4099, 1), v(4099, 2), v(4099, 3), v(4099, 4));
        all_same("tanh", &|l| {
            let mut y = x.clone();
            tanh_inplace_at(l, &mut y);
            y
        });
        all_same("mul_tanh_grad", &|l| {
            let mut y = x.clone();
            mul_tanh_grad_at(l, &mut y, &h);
            y
        });
        all_same("tanh_grad_into", &|l| {
            let mut y = x.clone();
            tanh_grad_into_at(l, &mut y, &d, &h);
            y
        });
        all_same("r_tanh_grad", &|l| {
            let mut y = x.clone();
            r_tanh_grad_at(l, &mut y, &d, &h, &rh);
            y
        });
        all_same("col_sums_add", &|l| {
            let mut y = h[..7].to_vec();
            col_sums_add_at(l, &x[..4095], 7, &mut y);
            y
        });
        all_same("add_row", &|l| {
            let mut y = x[..4095].to_vec();
            add_row_at(l, &mut y, &h[..7]);
            y
        });
    }
    check::<f32>(|x| x as f32);
    check::<f64>(|x| x);
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
                    let mut want = c0.clone();
                    plain(m, k, n, &a, &b, &mut want);
                    for level in Level::available() {
                        let mut got = c0.clone();
                        tn_small_m(level, m, k, n, &a, &b, &mut got);
                        let same = want.iter().zip(&got).all(|(x, y)| bits(*x) == bits(*y));
                        assert!(same, "tn_small_m {m}×{k}×{n} at {level}");
                    }
                }
            }
        }
    }
    let avx512 = Level::detected() == Level::Avx512;
    if !avx512 {
        eprintln!(
            "note: no AVX-512 on this CPU: the blocked kernel is compared with the loop it falls back to"
        );
    }
    check::<f64>(|x| x, f64::to_bits);
    check::<f32>(|x| x as f32, |x| x.to_bits() as u64);
    // The kernel runs wherever AVX-512 does (else the comparison is loop against loop).
    let mut c = vec![0.0f32; 4 * 64];
    assert_eq!(f32::direct_tn_small(Level::detected(), 4, 3, 64, &[0.5; 12], &[0.25; 192], &mut c), avx512);
    assert!(!f32::direct_tn_small(Level::Avx2, 4, 3, 64, &[0.5; 12], &[0.25; 192], &mut c));
    assert!(!f32::direct_tn_small(
        Level::detected(),
        9,
        3,
        64,
        &[0.5; 27],
        &[0.25; 192],
        &mut vec![0.0; 9 * 64]
    ));
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
fn fast_tanh_is_accurate() {
    let xs: Vec<f64> = (0..400_001).map(|i| -30.0 + 60.0 * i as f64 / 400_000.0).collect();
    let mut t = xs.clone();
    f64::tanh_inplace(&mut t);
    let mut t32: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
    f32::tanh_inplace(&mut t32);
    let (mut worst_tanh, mut worst_tanh32) = (0.0f64, 0.0f64);
    for ((x, tx), t32) in xs.iter().zip(&t).zip(&t32) {
        worst_tanh = worst_tanh.max((tx - x.tanh()).abs());
        worst_tanh32 = worst_tanh32.max((*t32 as f64 - (*x as f32 as f64).tanh()).abs());
    }
    assert!(worst_tanh <= 4e-16, "{worst_tanh:e}");
    assert!(worst_tanh32 <= 5e-7, "{worst_tanh32:e}");
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

/// The baseline level's software fused multiply-add of f32 gives `f32::mul_add`'s bits:
/// random operands of every magnitude (products that cancel c, subnormal and overflowing
/// results, ties between f32 neighbours), signed zeros, infinities and NaN.
#[test]
fn software_fma_f32_is_correctly_rounded() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let same = |a: f32, b: f32, c: f32| {
        let (got, want) = (fma_f32_soft(a, b, c), a.mul_add(b, c));
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "fma({a:e}, {b:e}, {c:e}) = {want:e}, soft {got:e}"
        );
    };
    let any = |rng: &mut ChaCha8Rng| f32::from_bits(rng.random::<u32>());
    let moderate = |rng: &mut ChaCha8Rng| {
        let e = rng.random_range(-30..30);
        f32::from_bits(rng.random::<u32>() & 0x807f_ffff | (((127 + e) as u32) << 23))
    };
    for _ in 0..1_000_000 {
        let (a, b) = (moderate(&mut rng), moderate(&mut rng));
        same(a, b, moderate(&mut rng));
        // c cancels most of a·b: the exact sum needs many more bits than f32 has.
        let p = a * b;
        same(a, b, -p);
        same(a, b, -f32::from_bits(p.to_bits().wrapping_add(rng.random_range(0..4))));
        // c half an f32 ulp of a·b away from a tie.
        same(a, b, p * f32::EPSILON * 0.5);
        same(any(&mut rng), any(&mut rng), any(&mut rng));
        // Subnormal and overflowing results.
        same(a * 1e-25, b * 1e-15, moderate(&mut rng) * 1e-40);
        same(a * 1e19, b * 1e19, moderate(&mut rng) * 3e38);
    }
    let specials = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    for a in specials {
        for b in specials {
            for c in specials {
                same(a, b, c);
            }
        }
    }
}
