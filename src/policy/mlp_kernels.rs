//! Dense kernels of the Gaussian MLP's passes, generic over the floating-point type
//! ([`Real`]: f64 or f32).
//!
//! Products of matrices that are large in every dimension (a hidden layer over a batch,
//! N×64·64×64) go to `matrixmultiply`'s packed gemm. A network's first and last layers
//! are thin (obs_dim or act_dim ≤ 8 columns): there gemm packs a whole N×64 operand to do
//! 1/8 of the work of a square layer and wastes most of its 8-wide micro-tiles, so those
//! shapes use direct row loops instead (`benches/meta.rs`, `mlp_point_n2000`, measures
//! the passes). All matrices are row-major and contiguous.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

/// A dimension at or below which a product is computed by row loops instead of gemm.
const THIN: usize = 8;

/// Floating-point type of the MLP's internal passes.
pub trait Real:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    const TWO: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    /// `matrixmultiply`'s gemm for this type: C = α A B + β C with arbitrary strides.
    ///
    /// # Safety
    /// As `matrixmultiply::dgemm`: the pointers address the m×k, k×n and m×n elements
    /// with the given strides, and C does not alias A or B.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
    /// In-place tanh (see the impls for the approximation and its error).
    fn tanh_inplace(xs: &mut [Self]);
}

/// The parts of [`Real`] that differ only in the type and `matrixmultiply`'s gemm.
macro_rules! real_basics {
    ($t:ty, $gemm:path) => {
        const ZERO: Self = 0.0;
        const ONE: Self = 1.0;
        const TWO: Self = 2.0;
        #[inline(always)]
        fn from_f64(x: f64) -> Self {
            x as $t
        }
        #[inline(always)]
        fn to_f64(self) -> f64 {
            self as f64
        }
        unsafe fn gemm(
            m: usize,
            k: usize,
            n: usize,
            a: *const Self,
            rsa: isize,
            csa: isize,
            b: *const Self,
            rsb: isize,
            csb: isize,
            beta: Self,
            c: *mut Self,
            rsc: isize,
            csc: isize,
        ) {
            // SAFETY: forwarded contract.
            unsafe { $gemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
        }
    };
}

impl Real for f64 {
    real_basics!(f64, matrixmultiply::dgemm);
    /// x ← 1 − 2 / (e^{2x} + 1) with x clamped to ±20 (where tanh rounds to ±1). Absolute
    /// error ≤ 4e-16 over the real line (tested against `f64::tanh`), ≈ 3× faster than
    /// `f64::tanh` because it vectorises. NaN inputs stay NaN.
    fn tanh_inplace(xs: &mut [Self]) {
        for x in xs.iter_mut() {
            // clamp keeps NaN, and NaN propagates through exp_reduced.
            *x = 1.0 - 2.0 / (exp_reduced(2.0 * x.clamp(-20.0, 20.0)) + 1.0);
        }
    }
}

impl Real for f32 {
    real_basics!(f32, matrixmultiply::sgemm);
    /// Rational minimax approximation tanh(x) ≈ x P(x²) / Q(x²) on |x| ≤ 7.9 (beyond it
    /// tanh rounds to ±1 in f32), the form used by Eigen and XLA for f32. Absolute error
    /// ≤ 5e-7, a few f32 ulps (tested against `f64::tanh`); branch-free, so loops vectorise. NaN stays NaN.
    fn tanh_inplace(xs: &mut [Self]) {
        const A: [f32; 7] = [
            -2.760_768_5e-16,
            2.000_188e-13,
            -8.604_672e-11,
            5.122_297e-8,
            1.485_722_4e-5,
            6.372_619_3e-4,
            4.893_524_6e-3,
        ];
        const B: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_7e-3, 4.893_525e-3];
        for x in xs.iter_mut() {
            let v = x.clamp(-7.905_311, 7.905_311);
            let s = v * v;
            let mut p = A[0];
            for c in &A[1..] {
                p = p * s + c;
            }
            let mut q = B[0];
            for c in &B[1..] {
                q = q * s + c;
            }
            *x = v * p / q;
        }
    }
}

/// e^x for |x| ≤ 40 (the callers clamp): Cody–Waite reduction x = n ln 2 + r, |r| ≤ ½ ln 2,
/// e^r by its Taylor polynomial of degree 13 (truncation < 2e-17 relative), and 2ⁿ by
/// writing the exponent bits. Branch-free so that loops over slices vectorise; relative
/// error ≈ 2e-16 (tested against `f64::exp`).
#[inline(always)]
pub(crate) fn exp_reduced(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // 1.5·2⁵²: adding it rounds to the nearest integer, held in the low mantissa bits.
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    let kf = x * std::f64::consts::LOG2_E + MAGIC;
    let n_bits = kf.to_bits().wrapping_sub(MAGIC.to_bits());
    let n = kf - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    p * f64::from_bits(n_bits.wrapping_add(1023) << 52)
}

/// x · y with eight independent accumulators (so that the loop vectorises).
#[inline]
fn dot<F: Real>(x: &[F], y: &[F]) -> F {
    let mut acc = [F::ZERO; 8];
    let (xc, xr) = x.as_chunks::<8>();
    let (yc, yr) = y.as_chunks::<8>();
    for (a, b) in xc.iter().zip(yc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    let mut s = F::ZERO;
    for (a, b) in xr.iter().zip(yr) {
        s += *a * *b;
    }
    let (mut lo, mut hi) = (F::ZERO, F::ZERO);
    for l in 0..4 {
        lo += acc[l];
        hi += acc[l + 4];
    }
    lo + hi + s
}

/// y += a·x.
#[inline]
fn axpy<F: Real>(a: F, x: &[F], y: &mut [F]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * *x);
}

/// Row-major transpose of an r×c matrix.
fn transpose<F: Real>(r: usize, c: usize, x: &[F]) -> Vec<F> {
    let mut t = vec![F::ZERO; r * c];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = x[i * c + j];
        }
    }
    t
}

/// Scales C by β (β = 0 overwrites with zeros, even NaN entries, as gemm does).
fn scale<F: Real>(beta: F, c: &mut [F]) {
    if beta == F::ZERO {
        c.iter_mut().for_each(|x| *x = F::ZERO);
    } else if beta != F::ONE {
        c.iter_mut().for_each(|x| *x *= beta);
    }
}

/// C = β C + A·B in row form, C_i = β C_i + Σ_p A_ip B_p, with B k×n (rows B_p).
fn rows_axpy<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
    for (ci, ai) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)).take(m) {
        scale(beta, ci);
        for (p, &aip) in ai.iter().enumerate() {
            axpy(aip, &b[p * n..(p + 1) * n], ci);
        }
    }
}

/// C_ij = β C_ij + A_i · Bt_j with A m×k and Bt n×k.
fn rows_dot<F: Real>(m: usize, k: usize, n: usize, a: &[F], bt: &[F], beta: F, c: &mut [F]) {
    for (ci, ai) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)).take(m) {
        for (j, cij) in ci.iter_mut().enumerate() {
            let d = dot(ai, &bt[j * k..(j + 1) * k]);
            *cij = if beta == F::ZERO { d } else { beta * *cij + d };
        }
    }
}

/// C += Aᵀ·B for A k×m with m small: for every row p, C_i += A_pi B_p.
fn tn_small_m<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], c: &mut [F]) {
    for p in 0..k {
        let (ap, bp) = (&a[p * m..(p + 1) * m], &b[p * n..(p + 1) * n]);
        for (i, &api) in ap.iter().enumerate() {
            axpy(api, bp, &mut c[i * n..(i + 1) * n]);
        }
    }
}

/// C = A·B + βC with A m×k, B k×n, C m×n.
pub(crate) fn mm_nn<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k <= THIN {
        rows_axpy(m, k, n, a, b, beta, c);
    } else if n <= THIN {
        rows_dot(m, k, n, a, &transpose(k, n, &b[..k * n]), beta, c);
    } else {
        // SAFETY: the slices hold at least the m×k, k×n and m×n elements addressed with
        // these strides (checked above); c does not alias a or b (distinct borrows).
        unsafe {
            F::gemm(
                m,
                k,
                n,
                a.as_ptr(),
                k as isize,
                1,
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
}

/// C += Aᵀ·B with A k×m (row-major, so Aᵀ is m×k), B k×n, C m×n.
pub(crate) fn mm_tn_add<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], c: &mut [F]) {
    assert!(a.len() >= k * m && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if m <= THIN {
        tn_small_m(m, k, n, a, b, c);
    } else if n <= THIN {
        // Cᵀ += Bᵀ A with the small dimension first, then added transposed.
        let mut ct = vec![F::ZERO; n * m];
        tn_small_m(n, k, m, b, a, &mut ct);
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] += ct[j * m + i];
            }
        }
    } else {
        // SAFETY: as in `mm_nn`; Aᵀ(i, p) = A(p, i) lives at p·m + i.
        unsafe {
            F::gemm(
                m,
                k,
                n,
                a.as_ptr(),
                1,
                m as isize,
                b.as_ptr(),
                n as isize,
                1,
                F::ONE,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    }
}

/// C = A·Bᵀ + βC with A m×k, B n×k (row-major, so Bᵀ is k×n), C m×n.
pub(crate) fn mm_nt<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k <= THIN {
        rows_axpy(m, k, n, a, &transpose(n, k, &b[..n * k]), beta, c);
    } else if n <= THIN {
        rows_dot(m, k, n, a, b, beta, c);
    } else {
        // SAFETY: as in `mm_nn`; Bᵀ(p, j) = B(j, p) lives at j·k + p.
        unsafe {
            F::gemm(
                m,
                k,
                n,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                1,
                k as isize,
                beta,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    }
}

/// out[j] += Σ_i x[i·n + j] (column sums of an N×n matrix).
pub(crate) fn col_sums_add<F: Real>(x: &[F], n: usize, out: &mut [F]) {
    for row in x.chunks_exact(n) {
        out.iter_mut().zip(row).for_each(|(o, v)| *o += *v);
    }
}

/// Adds the row vector `b` to every row of the N×n matrix `x`.
pub(crate) fn add_row<F: Real>(x: &mut [F], b: &[F]) {
    for row in x.chunks_exact_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(o, v)| *o += *v);
    }
}

#[cfg(test)]
mod tests {
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
}
