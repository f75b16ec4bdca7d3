//! Dense kernels of the Gaussian MLP's passes, generic over the floating-point type
//! ([`Real`]: f64 or f32).
//!
//! Products of matrices that are large in every dimension (a hidden layer over a batch,
//! N×64·64×64, and the depth-N weight gradients) are *fused products*: every entry of C
//! is formed as `matrixmultiply`'s AVX-512 gemm micro-kernels form it (the depth cut into
//! blocks of `direct::KC`; within a block the products accumulated from +0 by fused
//! multiply-adds in increasing depth; the first block's sum s stored as s, β = 0, or
//! as C·β + s, every later one's as C + s). In f32 on the [`Level::Avx512`] level the
//! unpacked register tiles of the private `direct` module run; every other level and f64
//! run `fused_nn`'s row loops, which the compiler vectorises. They are the same
//! operations, so every level gives the same bits (tests compare them, and both with
//! `matrixmultiply`). A network's first and last layers are thin (obs_dim or act_dim ≤ 8
//! columns): those shapes use row loops of plain products and sums (`benches/meta.rs`,
//! `mlp_point_n2000`, measures the passes). All matrices are row-major and contiguous.
//!
//! Every public function here runs the copy of its loops compiled for the process's CPU
//! level ([`crate::cpu`]); the `_at` forms take the level (tests run every level).
//!
//! Files: the per-thread pool of the passes' work buffers (`pool`), the unpacked AVX-512
//! tiles (`direct`), and here the [`Real`] trait, the row loops and the dispatch of every
//! product.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

pub(crate) mod direct;
mod pool;
#[cfg(test)]
mod tests;

pub(crate) use pool::Buf;

use crate::cpu::{Level, level, multiversion};
use crate::numeric::exp_reduced;

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
    /// self · a + b with one rounding (a fused multiply-add: the instruction where the
    /// level has it, else the C library's correctly rounded `fma`).
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// [`Real::mul_add`] without an FMA instruction, for the baseline level on x86-64: the
    /// same correctly rounded result (f32: `fma_f32_soft`, ≈ 20 times faster than the C
    /// library's `fmaf`; f64: the C library's `fma`).
    fn mul_add_soft(self, a: Self, b: Self) -> Self;
    /// In-place tanh (see the impls for the approximation and its error).
    fn tanh_inplace(xs: &mut [Self]);
    /// C = A·B + βC (A m×k, B k×n, row-major) by the `direct` module's unpacked AVX-512
    /// kernels, which give `fused_nn`'s results bit for bit; false (C untouched) where
    /// they do not run (f64, levels below AVX-512).
    #[allow(clippy::too_many_arguments)]
    fn direct_nn(
        level: Level,
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        b: &[Self],
        beta: Self,
        c: &mut [Self],
    ) -> bool;
    /// C += Aᵀ·B (A k×m, B k×n) likewise.
    fn direct_tn_add(
        level: Level,
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        b: &[Self],
        c: &mut [Self],
    ) -> bool;
    /// The thin C += Aᵀ·B (A k×m, m ≤ 8) with the row loop's operations per entry
    /// (c, then + A_pi B_pj in increasing p, product then sum), C held in registers; false
    /// where not available (then the caller runs the loop).
    fn direct_tn_small(
        level: Level,
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        b: &[Self],
        c: &mut [Self],
    ) -> bool;
    /// This thread's pool of freed `Buf` memory for this type.
    fn pool() -> &'static std::thread::LocalKey<std::cell::RefCell<Vec<Vec<Self>>>>;
}

/// The parts of [`Real`] that differ only in the type.
macro_rules! real_basics {
    ($t:ty) => {
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
        fn pool() -> &'static std::thread::LocalKey<std::cell::RefCell<Vec<Vec<Self>>>> {
            thread_local! {
                static POOL: std::cell::RefCell<Vec<Vec<$t>>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            &POOL
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            <$t>::mul_add(self, a, b)
        }
    };
}

/// fma(a, b, c) = a·b + c rounded once, for f32 without an FMA instruction: a·b is exact
/// in f64 (24 + 24 ≤ 53 bits); the f64 sum s = RN(a·b + c) is made round-to-odd (TwoSum
/// gives its exact error e; an inexact s whose last bit is even moves one ulp towards e),
/// and rounding a round-to-odd value of ≥ 26 bits to f32 gives the correctly rounded
/// result (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums: proved
/// algorithms using rounding to odd", IEEE TC 2008). Infinities and NaN pass through s
/// unadjusted. Tested bit for bit against `f32::mul_add`.
#[inline(always)]
pub(crate) fn fma_f32_soft(a: f32, b: f32, c: f32) -> f32 {
    let p = a as f64 * b as f64;
    let cd = c as f64;
    let s = p + cd;
    let bb = s - p;
    let e = (p - (s - bb)) + (cd - bb);
    let bits = s.to_bits();
    let adjust = e != 0.0 && bits & 1 == 0 && s.is_finite();
    let step = if (e > 0.0) == (s > 0.0) { 1u64 } else { u64::MAX };
    f64::from_bits(bits.wrapping_add(if adjust { step } else { 0 })) as f32
}

impl Real for f64 {
    real_basics!(f64);
    #[inline(always)]
    fn mul_add_soft(self, a: f64, b: f64) -> f64 {
        f64::mul_add(self, a, b)
    }
    /// f64 passes (tests, exactness checks) run the fused row loops at every level.
    #[inline(always)]
    fn direct_nn(
        _: Level,
        _: usize,
        _: usize,
        _: usize,
        _: &[f64],
        _: &[f64],
        _: f64,
        _: &mut [f64],
    ) -> bool {
        false
    }
    #[inline(always)]
    fn direct_tn_add(_: Level, _: usize, _: usize, _: usize, _: &[f64], _: &[f64], _: &mut [f64]) -> bool {
        false
    }
    #[inline(always)]
    fn direct_tn_small(_: Level, _: usize, _: usize, _: usize, _: &[f64], _: &[f64], _: &mut [f64]) -> bool {
        false
    }
    /// x ← 1 − 2 / (e^{2x} + 1) with x clamped to ±20 (where tanh rounds to ±1). Absolute
    /// error ≤ 4e-16 over the real line (tested against `f64::tanh`), ≈ 3× faster than
    /// `f64::tanh` because it vectorises. NaN inputs stay NaN.
    #[inline(always)]
    fn tanh_inplace(xs: &mut [Self]) {
        for x in xs.iter_mut() {
            // clamp keeps NaN, and NaN propagates through exp_reduced.
            *x = 1.0 - 2.0 / (exp_reduced(2.0 * x.clamp(-20.0, 20.0)) + 1.0);
        }
    }
}

impl Real for f32 {
    real_basics!(f32);
    #[inline(always)]
    fn mul_add_soft(self, a: f32, b: f32) -> f32 {
        fma_f32_soft(self, a, b)
    }
    #[inline(always)]
    fn direct_nn(
        level: Level,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        b: &[f32],
        beta: f32,
        c: &mut [f32],
    ) -> bool {
        // SAFETY: the level is at most the CPU's, so the CPU has AVX-512.
        direct::runs(level) && {
            unsafe { direct::nn(m, k, n, a, b, beta, c) };
            true
        }
    }
    #[inline(always)]
    fn direct_tn_add(
        level: Level,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> bool {
        // SAFETY: as above.
        direct::runs(level) && {
            unsafe { direct::tn_add(m, k, n, a, b, c) };
            true
        }
    }
    #[inline(always)]
    fn direct_tn_small(
        level: Level,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> bool {
        // SAFETY: as above.
        direct::runs(level) && unsafe { direct::tn_small(m, k, n, a, b, c) }
    }
    /// Rational minimax approximation tanh(x) ≈ x P(x²) / Q(x²) on |x| ≤ 7.9 (beyond it
    /// tanh rounds to ±1 in f32), the form used by Eigen and XLA for f32. Absolute error
    /// ≤ 5e-7, a few f32 ulps (tested against `f64::tanh`); branch-free, so loops vectorise. NaN stays NaN.
    #[inline(always)]
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

/// x · y with eight independent accumulators (so that the loop vectorises).
#[inline(always)]
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
#[inline(always)]
fn axpy<F: Real>(a: F, x: &[F], y: &mut [F]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * *x);
}

/// Row-major transpose of an r×c matrix.
#[inline(always)]
fn transpose<F: Real>(r: usize, c: usize, x: &[F]) -> Vec<F> {
    let mut t = vec![F::ZERO; r * c];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = x[i * c + j];
        }
    }
    t
}

/// Columns of C per register block of the thin-dimension kernels.
const BLK: usize = 16;
/// Register blocks per group of [`rows_axpy`] (independent accumulation chains).
const GROUP: usize = 4;

/// The register-blocked row loop shared by [`rows_axpy`] and [`fused_nn`]: for every row i
/// of C (m×n; row i of A is `a[i·lda..i·lda + k]`, B is k×n) and column block, `acc`
/// starts as `init(c)`, then `acc = step(A_ip, B_pj, acc)` for p = 0, 1, … in turn, and C
/// is set to `store(c, acc)`. Blocks are groups of [`GROUP`] blocks of [`BLK`] columns
/// (independent chains in flight together), then single blocks, then single columns.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_blocked<F: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: &[F],
    lda: usize,
    b: &[F],
    c: &mut [F],
    init: impl Fn(F) -> F,
    step: impl Fn(F, F, F) -> F,
    store: impl Fn(F, F) -> F,
) {
    for (i, ci) in c.chunks_exact_mut(n).take(m).enumerate() {
        let ai = &a[i * lda..i * lda + k];
        let mut groups = ci.chunks_exact_mut(GROUP * BLK);
        for (jg, cg) in (&mut groups).enumerate() {
            let mut acc = [F::ZERO; GROUP * BLK];
            acc.iter_mut().zip(cg.iter()).for_each(|(s, x)| *s = init(*x));
            for (p, &aip) in ai.iter().enumerate() {
                let start = p * n + jg * GROUP * BLK;
                let bp: &[F; GROUP * BLK] = b[start..start + GROUP * BLK].try_into().expect("group entries");
                acc.iter_mut().zip(bp).for_each(|(s, x)| *s = step(aip, *x, *s));
            }
            cg.iter_mut().zip(&acc).for_each(|(x, s)| *x = store(*x, *s));
        }
        let done = n - groups.into_remainder().len();
        let ci = &mut ci[done..];
        let mut blocks = ci.chunks_exact_mut(BLK);
        for (jb, cb) in (&mut blocks).enumerate() {
            let mut acc = [F::ZERO; BLK];
            acc.iter_mut().zip(cb.iter()).for_each(|(s, x)| *s = init(*x));
            for (p, &aip) in ai.iter().enumerate() {
                let start = p * n + done + jb * BLK;
                let bp: &[F; BLK] = b[start..start + BLK].try_into().expect("BLK entries");
                acc.iter_mut().zip(bp).for_each(|(s, x)| *s = step(aip, *x, *s));
            }
            cb.iter_mut().zip(&acc).for_each(|(x, s)| *x = store(*x, *s));
        }
        let tail = blocks.into_remainder();
        let j0 = n - tail.len();
        for (j, x) in tail.iter_mut().enumerate() {
            let mut s = init(*x);
            for (p, &aip) in ai.iter().enumerate() {
                s = step(aip, b[p * n + j0 + j], s);
            }
            *x = store(*x, s);
        }
    }
}

/// C = β C + A·B in row form, C_i = β C_i + Σ_p A_ip B_p, with B k×n (rows B_p). Each
/// entry is βc (0 for β = 0 — even for a NaN c —, c for β = 1), then + A_ip B_pj for
/// p = 0, 1, … in turn (a product, then a sum: no fused multiply-add), accumulated in
/// registers over groups of [`GROUP`] blocks of [`BLK`] columns, then single blocks.
#[inline(always)]
fn rows_axpy<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
    let init = |x: F| {
        if beta == F::ZERO {
            F::ZERO
        } else if beta == F::ONE {
            x
        } else {
            x * beta
        }
    };
    rows_blocked(m, k, n, a, k, b, c, init, |aip, bpj, s| s + aip * bpj, |_, s| s);
}

/// The fused product C = A·B + βC (A m×k, B k×n): for every depth block of
/// [`direct::KC`], the sums s_ij = Σ_p A_ip B_pj from +0 by fused multiply-adds in
/// increasing p, stored as s (first block, β = 0: C is not read), C·β + s (first block)
/// or C + s (later blocks): the operations of `matrixmultiply`'s AVX-512 micro-kernels
/// and of the `direct` tiles, entry by entry.
/// Without an FMA instruction (the baseline level on x86-64) the fused multiply-adds are
/// [`Real::mul_add_soft`], with the same results.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fused_nn<F: Real>(level: Level, m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
    if level == Level::Baseline && cfg!(all(target_arch = "x86_64", not(target_feature = "fma"))) {
        fused_nn_with(m, k, n, a, b, beta, c, |x: F, y: F, acc: F| x.mul_add_soft(y, acc))
    } else {
        fused_nn_with(m, k, n, a, b, beta, c, |x: F, y: F, acc: F| x.mul_add(y, acc))
    }
}

/// [`fused_nn`] with the fused multiply-add `fma`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fused_nn_with<F: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: &[F],
    b: &[F],
    beta: F,
    c: &mut [F],
    fma: impl Fn(F, F, F) -> F + Copy,
) {
    let mut kb = 0;
    while kb < k {
        let ke = (kb + direct::KC).min(k);
        let (a, b) = (&a[kb..], &b[kb * n..ke * n]);
        if kb > 0 {
            rows_blocked(m, ke - kb, n, a, k, b, c, |_| F::ZERO, fma, |c, s| c + s);
        } else if beta == F::ZERO {
            rows_blocked(m, ke - kb, n, a, k, b, c, |_| F::ZERO, fma, |_, s| s);
        } else {
            rows_blocked(m, ke - kb, n, a, k, b, c, |_| F::ZERO, fma, |c, s| c * beta + s);
        }
        kb = ke;
    }
}

/// C += Aᵀ·B (A k×m, B k×n) as a fused product (see [`fused_nn`]; every block is stored
/// as C + s).
#[inline(always)]
fn fused_tn_add<F: Real>(level: Level, m: usize, k: usize, n: usize, a: &[F], b: &[F], c: &mut [F]) {
    let mut kb = 0;
    while kb < k {
        let ke = (kb + direct::KC).min(k);
        let at = transpose(ke - kb, m, &a[kb * m..ke * m]);
        fused_nn(level, m, ke - kb, n, &at, &b[kb * n..ke * n], F::ONE, c);
        kb = ke;
    }
}

/// C_ij = β C_ij + A_i · Bt_j with A m×k and Bt n×k.
#[inline(always)]
fn rows_dot<F: Real>(m: usize, k: usize, n: usize, a: &[F], bt: &[F], beta: F, c: &mut [F]) {
    for (ci, ai) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)).take(m) {
        for (j, cij) in ci.iter_mut().enumerate() {
            let d = dot(ai, &bt[j * k..(j + 1) * k]);
            *cij = if beta == F::ZERO { d } else { beta * *cij + d };
        }
    }
}

/// C += Aᵀ·B for A k×m with m small: for every row p, C_i += A_pi B_p. Each entry is c,
/// then + A_pi B_pj for p = 0, 1, … in turn (a product, then a sum); f32 on the AVX-512
/// level runs [`Real::direct_tn_small`] (the same operations, C held in registers).
#[inline(always)]
fn tn_small_m<F: Real>(level: Level, m: usize, k: usize, n: usize, a: &[F], b: &[F], c: &mut [F]) {
    if F::direct_tn_small(level, m, k, n, a, b, c) {
        return;
    }
    for p in 0..k {
        let (ap, bp) = (&a[p * m..(p + 1) * m], &b[p * n..(p + 1) * n]);
        for (i, &api) in ap.iter().enumerate() {
            axpy(api, bp, &mut c[i * n..(i + 1) * n]);
        }
    }
}

multiversion! {
    /// [`mm_nn`] at `level`.
    pub(crate) fn mm_nn_at<F: Real>(level: Level, m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
        if m == 0 || n == 0 {
            return;
        }
        if k <= THIN {
            rows_axpy(m, k, n, a, b, beta, c);
        } else if n <= THIN {
            rows_dot(m, k, n, a, &transpose(k, n, &b[..k * n]), beta, c);
        } else if !F::direct_nn(level, m, k, n, a, b, beta, c) {
            fused_nn(level, m, k, n, a, b, beta, c);
        }
    }
}

/// C = A·B + βC with A m×k, B k×n, C m×n.
pub(crate) fn mm_nn<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
    mm_nn_at(level(), m, k, n, a, b, beta, c)
}

multiversion! {
    /// [`mm_tn_add`] at `level`.
    pub(crate) fn mm_tn_add_at<F: Real>(level: Level, m: usize, k: usize, n: usize, a: &[F], b: &[F], c: &mut [F]) {
        assert!(a.len() >= k * m && b.len() >= k * n && c.len() >= m * n);
        if m == 0 || n == 0 {
            return;
        }
        if m <= THIN {
            tn_small_m(level, m, k, n, a, b, c);
        } else if n <= THIN {
            // Cᵀ += Bᵀ A with the small dimension first, then added transposed.
            let mut ct = vec![F::ZERO; n * m];
            tn_small_m(level, n, k, m, b, a, &mut ct);
            for i in 0..m {
                for j in 0..n {
                    c[i * n + j] += ct[j * m + i];
                }
            }
        } else if !F::direct_tn_add(level, m, k, n, a, b, c) {
            fused_tn_add(level, m, k, n, a, b, c);
        }
    }
}

/// C += Aᵀ·B with A k×m (row-major, so Aᵀ is m×k), B k×n, C m×n.
pub(crate) fn mm_tn_add<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], c: &mut [F]) {
    mm_tn_add_at(level(), m, k, n, a, b, c)
}

multiversion! {
    /// [`mm_nt`] at `level`.
    pub(crate) fn mm_nt_at<F: Real>(level: Level, m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
        assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
        if m == 0 || n == 0 {
            return;
        }
        if k <= THIN {
            rows_axpy(m, k, n, a, &transpose(n, k, &b[..n * k]), beta, c);
        } else if n <= THIN {
            rows_dot(m, k, n, a, b, beta, c);
        } else {
            let bt = transpose(n, k, &b[..n * k]);
            if !F::direct_nn(level, m, k, n, a, &bt, beta, c) {
                fused_nn(level, m, k, n, a, &bt, beta, c);
            }
        }
    }
}

/// C = A·Bᵀ + βC with A m×k, B n×k (row-major, so Bᵀ is k×n), C m×n.
pub(crate) fn mm_nt<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], beta: F, c: &mut [F]) {
    mm_nt_at(level(), m, k, n, a, b, beta, c)
}

multiversion! {
    /// out[j] += Σ_i x[i·n + j] (column sums of an N×n matrix).
    fn col_sums_add_at<F: Real>(level: Level, x: &[F], n: usize, out: &mut [F]) {
        for row in x.chunks_exact(n) {
            out.iter_mut().zip(row).for_each(|(o, v)| *o += *v);
        }
    }
}

/// out[j] += Σ_i x[i·n + j] (column sums of an N×n matrix).
pub(crate) fn col_sums_add<F: Real>(x: &[F], n: usize, out: &mut [F]) {
    col_sums_add_at(level(), x, n, out)
}

multiversion! {
    /// Adds the row vector `b` to every row of the N×n matrix `x`.
    fn add_row_at<F: Real>(level: Level, x: &mut [F], b: &[F]) {
        for row in x.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(o, v)| *o += *v);
        }
    }
}

/// Adds the row vector `b` to every row of the N×n matrix `x`.
pub(crate) fn add_row<F: Real>(x: &mut [F], b: &[F]) {
    add_row_at(level(), x, b)
}

multiversion! {
    /// [`tanh_inplace`] at `level`.
    pub(crate) fn tanh_inplace_at<F: Real>(level: Level, xs: &mut [F]) {
        F::tanh_inplace(xs)
    }
}

/// In-place tanh ([`Real::tanh_inplace`]).
pub(crate) fn tanh_inplace<F: Real>(xs: &mut [F]) {
    tanh_inplace_at(level(), xs)
}

multiversion! {
    /// x ← x ⊙ (1 − h ⊙ h) (the tanh derivative applied to tangents or cotangents).
    fn mul_tanh_grad_at<F: Real>(level: Level, x: &mut [F], h: &[F]) {
        x.iter_mut().zip(h).for_each(|(r, h)| *r *= F::ONE - *h * *h);
    }
}

/// x ← x ⊙ (1 − h ⊙ h) (the tanh derivative applied to tangents or cotangents).
pub(crate) fn mul_tanh_grad<F: Real>(x: &mut [F], h: &[F]) {
    mul_tanh_grad_at(level(), x, h)
}

multiversion! {
    /// out ← d ⊙ (1 − h ⊙ h).
    fn tanh_grad_into_at<F: Real>(level: Level, out: &mut [F], d: &[F], h: &[F]) {
        for ((x, d), h) in out.iter_mut().zip(d).zip(h) {
            *x = *d * (F::ONE - *h * *h);
        }
    }
}

/// out ← d ⊙ (1 − h ⊙ h).
pub(crate) fn tanh_grad_into<F: Real>(out: &mut [F], d: &[F], h: &[F]) {
    tanh_grad_into_at(level(), out, d, h)
}

multiversion! {
    /// rd ← rd ⊙ (1 − h²) − 2 d ⊙ h ⊙ rh (the R-operator of the tanh derivative's chain rule).
    fn r_tanh_grad_at<F: Real>(level: Level, rd: &mut [F], d: &[F], h: &[F], rh: &[F]) {
        for (((rd, d), h), rh) in rd.iter_mut().zip(d).zip(h).zip(rh) {
            let g = F::ONE - *h * *h;
            *rd = *rd * g - F::TWO * *d * *h * *rh;
        }
    }
}

/// rd ← rd ⊙ (1 − h²) − 2 d ⊙ h ⊙ rh (the R-operator of the tanh derivative's chain rule).
pub(crate) fn r_tanh_grad<F: Real>(rd: &mut [F], d: &[F], h: &[F], rh: &[F]) {
    r_tanh_grad_at(level(), rd, d, h, rh)
}
