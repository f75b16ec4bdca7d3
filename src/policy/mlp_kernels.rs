//! Dense kernels of the Gaussian MLP's passes, generic over the floating-point type
//! ([`Real`]: f64 or f32).
//!
//! Products of matrices that are large in every dimension (a hidden layer over a batch,
//! N×64·64×64) go to `matrixmultiply`'s packed gemm, or in f32 on CPUs with AVX-512 to
//! the unpacked tiles of the private `direct` module, which give the same bits without
//! the packing. A network's first and last layers are thin (obs_dim or act_dim ≤ 8
//! columns): there gemm packs a whole N×64 operand to do 1/8 of the work of a square
//! layer and wastes most of its 8-wide micro-tiles, so those shapes use direct row loops
//! instead (`benches/meta.rs`, `mlp_point_n2000`, measures
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
    /// C = A·B + βC (A m×k, B k×n, row-major) by the `direct` module's unpacked kernels, which
    /// give [`Real::gemm`]'s results bit for bit; false (C untouched) where they do not run.
    fn direct_nn(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], beta: Self, c: &mut [Self]) -> bool;
    /// C += Aᵀ·B (A k×m, B k×n) likewise.
    fn direct_tn_add(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]) -> bool;
    /// The thin C += Aᵀ·B (A k×m, m ≤ 8) with the row loop's operations per entry
    /// (c, then + A_pi B_pj in increasing p, product then sum), C held in registers; false
    /// where not available (then the caller runs the loop).
    fn direct_tn_small(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]) -> bool;
    /// This thread's pool of freed `Buf` memory for this type.
    fn pool() -> &'static std::thread::LocalKey<std::cell::RefCell<Vec<Vec<Self>>>>;
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
        fn pool() -> &'static std::thread::LocalKey<std::cell::RefCell<Vec<Vec<Self>>>> {
            thread_local! {
                static POOL: std::cell::RefCell<Vec<Vec<$t>>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            &POOL
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
    /// f64 passes (tests, exactness checks) keep `matrixmultiply`'s packed dgemm.
    fn direct_nn(_: usize, _: usize, _: usize, _: &[f64], _: &[f64], _: f64, _: &mut [f64]) -> bool {
        false
    }
    fn direct_tn_add(_: usize, _: usize, _: usize, _: &[f64], _: &[f64], _: &mut [f64]) -> bool {
        false
    }
    fn direct_tn_small(_: usize, _: usize, _: usize, _: &[f64], _: &[f64], _: &mut [f64]) -> bool {
        false
    }
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
    fn direct_nn(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) -> bool {
        // SAFETY: AVX-512 is checked first.
        direct::available() && {
            unsafe { direct::nn(m, k, n, a, b, beta, c) };
            true
        }
    }
    fn direct_tn_add(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) -> bool {
        // SAFETY: AVX-512 is checked first.
        direct::available() && {
            unsafe { direct::tn_add(m, k, n, a, b, c) };
            true
        }
    }
    fn direct_tn_small(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) -> bool {
        // SAFETY: AVX-512 is checked first.
        direct::available() && unsafe { direct::tn_small(m, k, n, a, b, c) }
    }
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

/// Buffers of at least this many entries go back to their thread's pool when dropped.
const POOLED_MIN: usize = 4096;
/// At most this many freed buffers are kept per thread and type.
const POOLED_MAX: usize = 48;

/// A work buffer of the MLP's passes (activations, tangents, cotangents) whose memory,
/// when dropped, returns to a per-thread pool that [`Buf::scratch`] takes from. A pass
/// over N = 2000 samples works on N×64 buffers (0.5 MB in f32); allocating them afresh
/// for every pass cost the zero-filling of every buffer and, when the allocator had
/// returned the pages, page faults (together ≈ 12 % of a meta-iteration, `perf`).
pub(crate) struct Buf<F: Real>(Vec<F>);

impl<F: Real> Buf<F> {
    /// `len` entries whose values are unspecified (left over from an earlier use): only
    /// for outputs that are written in full before they are read (β = 0 products, maps).
    pub(crate) fn scratch(len: usize) -> Self {
        let reused = F::pool().try_with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().rposition(|v| v.capacity() >= len)?;
            Some(p.swap_remove(i))
        });
        let mut v = reused.ok().flatten().unwrap_or_default();
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, F::ZERO);
        }
        Self(v)
    }
}

impl<F: Real> From<Vec<F>> for Buf<F> {
    fn from(v: Vec<F>) -> Self {
        Self(v)
    }
}

impl<F: Real> Default for Buf<F> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<F: Real> Clone for Buf<F> {
    fn clone(&self) -> Self {
        let mut b = Self::scratch(self.0.len());
        b.0.copy_from_slice(&self.0);
        b
    }
}

impl<F: Real> Debug for Buf<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<F: Real> std::ops::Deref for Buf<F> {
    type Target = [F];
    fn deref(&self) -> &[F] {
        &self.0
    }
}

impl<'a, F: Real> IntoIterator for &'a Buf<F> {
    type Item = &'a F;
    type IntoIter = std::slice::Iter<'a, F>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<F: Real> std::ops::DerefMut for Buf<F> {
    fn deref_mut(&mut self) -> &mut [F] {
        &mut self.0
    }
}

impl<F: Real> Drop for Buf<F> {
    fn drop(&mut self) {
        if self.0.capacity() >= POOLED_MIN {
            let v = std::mem::take(&mut self.0);
            // During thread teardown the pool may be gone: then the memory is just freed.
            let _ = F::pool().try_with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOLED_MAX {
                    p.push(v);
                }
            });
        }
    }
}

/// Unpacked f32 products that give `matrixmultiply`'s sgemm results bit for bit.
///
/// `matrixmultiply` packs both operands into panels before every product; for this
/// crate's shapes (N×64·64×64 and the depth-N weight gradients 64×N·N×64) the packing
/// cost 40–50 % as much as the arithmetic (`perf`, docs/speed.md). On a CPU with
/// AVX-512 it runs its 16×16 AVX-512 micro-kernel, which forms each entry of C as follows:
/// the depth is cut into blocks of [`KC`]; within a block the products are accumulated
/// from +0 by fused multiply-adds in increasing depth order; the first block's sum s is
/// stored as s (β = 0, C is not read) or as s + βC, every later block's as s + C. The
/// kernels here read the operands in place, with register tiles of 4 rows × 64 (or 16)
/// columns of C, and do the same operations in the same order for every entry, so the
/// results are identical (tested against `matrixmultiply` with `==` on the bits). Without
/// AVX-512 (`matrixmultiply` then runs another micro-kernel) the packed gemm is kept.
pub(crate) mod direct {
    /// `matrixmultiply`'s depth block for sgemm (`S_KC`).
    pub(crate) const KC: usize = 256;
    /// Rows of C per register tile.
    const R: usize = 4;
    /// f32 lanes of an AVX-512 register.
    const L: usize = 16;

    /// Whether the CPU has AVX-512 (then `matrixmultiply`'s sgemm runs the micro-kernel
    /// whose operation order [`nn`] and [`tn_add`] reproduce, and they may run).
    pub(crate) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// One entry of C by the tiles' operations: block sums of fused multiply-adds from +0,
    /// the first stored as s or s + βC, later ones as s + C (edges of the matrices).
    fn entry(k: usize, a: impl Fn(usize) -> f32, b: impl Fn(usize) -> f32, beta: f32, c: &mut f32) {
        let mut kb = 0;
        while kb < k {
            let ke = (kb + KC).min(k);
            let mut s = 0.0f32;
            for p in kb..ke {
                s = a(p).mul_add(b(p), s);
            }
            *c = if kb > 0 {
                *c + s
            } else if beta == 0.0 {
                s
            } else {
                *c * beta + s
            };
            kb = ke;
        }
    }

    /// C = A·B + βC with A m×k (row stride k), B k×n (row stride n), C m×n; β = 0 does not
    /// read C.
    ///
    /// # Safety
    /// The CPU has AVX-512 ([`available`]).
    #[allow(unsafe_op_in_unsafe_fn)]
    pub(crate) unsafe fn nn(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
        let mf = m - m % R;
        let (n64, n16) = (n - n % (4 * L), n - n % L);
        for i in (0..mf).step_by(R) {
            let (ap, cp) = (a[i * k..].as_ptr(), c[i * n..].as_mut_ptr());
            for j in (0..n64).step_by(4 * L) {
                // SAFETY: rows i..i+R of A and C and columns j..j+64 of B and C are in bounds
                // (asserted above); the caller guarantees AVX-512.
                unsafe { avx512::nn_tile::<4>(k, n, ap, b[j..].as_ptr(), beta, cp.add(j)) };
            }
            for j in (n64..n16).step_by(L) {
                // SAFETY: as above, columns j..j+16.
                unsafe { avx512::nn_tile::<1>(k, n, ap, b[j..].as_ptr(), beta, cp.add(j)) };
            }
        }
        for i in 0..m {
            for j in if i < mf { n16..n } else { 0..n } {
                entry(k, |p| a[i * k + p], |p| b[p * n + j], beta, &mut c[i * n + j]);
            }
        }
    }

    /// C += Aᵀ·B with A k×m (row stride m), B k×n (row stride n), C m×n.
    ///
    /// # Safety
    /// The CPU has AVX-512 ([`available`]).
    pub(crate) unsafe fn tn_add(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
        assert!(a.len() >= k * m && b.len() >= k * n && c.len() >= m * n);
        let mf = m - m % R;
        let (n64, n16) = (n - n % (4 * L), n - n % L);
        let mut kb = 0;
        while kb < k {
            let ke = (kb + KC).min(k);
            for i in (0..mf).step_by(R) {
                let cp = c[i * n..].as_mut_ptr();
                for j in (0..n64).step_by(4 * L) {
                    // SAFETY: columns i..i+R of A, j..j+64 of B, rows kb..ke of both and the
                    // tile of C are in bounds (asserted above); the caller guarantees AVX-512.
                    unsafe {
                        avx512::tn_tile::<4>(kb..ke, m, n, a[i..].as_ptr(), b[j..].as_ptr(), cp.add(j))
                    };
                }
                for j in (n64..n16).step_by(L) {
                    // SAFETY: as above, columns j..j+16 of B and C.
                    unsafe {
                        avx512::tn_tile::<1>(kb..ke, m, n, a[i..].as_ptr(), b[j..].as_ptr(), cp.add(j))
                    };
                }
            }
            kb = ke;
        }
        for i in 0..m {
            for j in if i < mf { n16..n } else { 0..n } {
                entry(k, |p| a[p * m + i], |p| b[p * n + j], 1.0, &mut c[i * n + j]);
            }
        }
    }

    /// C += Aᵀ·B with A k×m (m ≤ 8, row stride m), B k×n, C m×n, entry by entry as
    /// c + A_0i B_0j + A_1i B_1j + … (products then sums, no fused multiply-add): the
    /// m rows of C stay in registers over column blocks of 16V. Returns false (nothing
    /// done) for m > 8.
    ///
    /// # Safety
    /// The CPU has AVX-512 ([`available`]).
    pub(crate) unsafe fn tn_small(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) -> bool {
        assert!(a.len() >= k * m && b.len() >= k * n && c.len() >= m * n);
        if m > 8 {
            return false;
        }
        if k == 0 {
            return true;
        }
        macro_rules! run {
            ($m:literal) => {{
                let mut j = 0;
                while j + 2 * L <= n {
                    // SAFETY: columns j..j+32 of B and C, rows 0..k of A and B are in bounds
                    // (asserted above); AVX-512 (caller).
                    unsafe {
                        avx512::tn_small_tile::<$m, 2>(k, n, a.as_ptr(), b[j..].as_ptr(), c[j..].as_mut_ptr())
                    };
                    j += 2 * L;
                }
                if j + L <= n {
                    // SAFETY: as above, columns j..j+16.
                    unsafe {
                        avx512::tn_small_tile::<$m, 1>(k, n, a.as_ptr(), b[j..].as_ptr(), c[j..].as_mut_ptr())
                    };
                    j += L;
                }
                for jj in j..n {
                    for i in 0..$m {
                        let mut s = c[i * n + jj];
                        for p in 0..k {
                            s += a[p * $m + i] * b[p * n + jj];
                        }
                        c[i * n + jj] = s;
                    }
                }
            }};
        }
        match m {
            1 => run!(1),
            2 => run!(2),
            3 => run!(3),
            4 => run!(4),
            5 => run!(5),
            6 => run!(6),
            7 => run!(7),
            8 => run!(8),
            _ => return false,
        }
        true
    }

    #[cfg(target_arch = "x86_64")]
    mod avx512 {
        use super::{KC, L, R};
        use std::arch::x86_64::*;
        use std::ops::Range;

        /// A tile's sums Σ_p A(r, p) B(p, j + l) over the depth range `rows`, for r < 4 and
        /// l < 16V, each accumulated from +0 by fused multiply-adds in increasing p;
        /// `a_at(r, p)` is the address of A(r, p), `b` points at B(0, j) (row stride n).
        ///
        /// # Safety
        /// AVX-512; the addressed entries are in bounds.
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn tile_sums<const V: usize>(
            rows: Range<usize>,
            n: usize,
            b: *const f32,
            a_at: impl Fn(usize, usize) -> *const f32,
        ) -> [[__m512; V]; R] {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            for p in rows {
                let mut bv = [_mm512_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    // SAFETY: in bounds (caller).
                    *x = unsafe { _mm512_loadu_ps(b.add(p * n + v * L)) };
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    // SAFETY: in bounds (caller).
                    let ar = _mm512_set1_ps(unsafe { *a_at(r, p) });
                    for (x, bx) in acc_r.iter_mut().zip(&bv) {
                        *x = _mm512_fmadd_ps(ar, *bx, *x);
                    }
                }
            }
            acc
        }

        /// Rows 0..M × columns j..j+16V of C += Aᵀ·B, A k×M (row stride M), by products and
        /// sums in increasing p with C in registers; `b` points at B's column j, `c` at
        /// C(0, j) (row stride n of both).
        ///
        /// # Safety
        /// AVX-512; the addressed entries are in bounds.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn tn_small_tile<const M: usize, const V: usize>(
            k: usize,
            n: usize,
            a: *const f32,
            b: *const f32,
            c: *mut f32,
        ) {
            let mut acc = [[_mm512_setzero_ps(); V]; M];
            for (r, acc_r) in acc.iter_mut().enumerate() {
                for (v, x) in acc_r.iter_mut().enumerate() {
                    // SAFETY: in bounds (caller).
                    *x = unsafe { _mm512_loadu_ps(c.add(r * n + v * L)) };
                }
            }
            for p in 0..k {
                let mut bv = [_mm512_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    // SAFETY: in bounds (caller).
                    *x = unsafe { _mm512_loadu_ps(b.add(p * n + v * L)) };
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    // SAFETY: in bounds (caller).
                    let ar = _mm512_set1_ps(unsafe { *a.add(p * M + r) });
                    for (x, bx) in acc_r.iter_mut().zip(&bv) {
                        *x = _mm512_add_ps(*x, _mm512_mul_ps(ar, *bx));
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (v, x) in acc_r.iter().enumerate() {
                    // SAFETY: in bounds (caller).
                    unsafe { _mm512_storeu_ps(c.add(r * n + v * L), *x) };
                }
            }
        }

        /// Rows i..i+4 × columns j..j+16V of C = A·B + βC, block by block of the depth;
        /// `a` points at A's row i (stride k), `b` at B's column j (stride n), `c` at C(i, j)
        /// (stride n).
        ///
        /// # Safety
        /// AVX-512; the addressed entries are in bounds.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn nn_tile<const V: usize>(
            k: usize,
            n: usize,
            a: *const f32,
            b: *const f32,
            beta: f32,
            c: *mut f32,
        ) {
            let mut kb = 0;
            while kb < k {
                let ke = (kb + KC).min(k);
                // SAFETY: in bounds (caller).
                let acc = unsafe { tile_sums::<V>(kb..ke, n, b, |r, p| a.wrapping_add(r * k + p)) };
                for (r, acc_r) in acc.iter().enumerate() {
                    for (v, s) in acc_r.iter().enumerate() {
                        // SAFETY: in bounds (caller); β = 0 does not read C.
                        unsafe {
                            let cp = c.add(r * n + v * L);
                            let out = if kb > 0 {
                                _mm512_add_ps(_mm512_loadu_ps(cp), *s)
                            } else if beta == 0.0 {
                                *s
                            } else {
                                _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(cp), _mm512_set1_ps(beta)), *s)
                            };
                            _mm512_storeu_ps(cp, out);
                        }
                    }
                }
                kb = ke;
            }
        }

        /// Rows i..i+4 × columns j..j+16V of C += Aᵀ·B over the depth block `rows`; `a`
        /// points at A's column i (row stride m), `b` at B's column j (row stride n), `c` at
        /// C(i, j) (row stride n).
        ///
        /// # Safety
        /// AVX-512; the addressed entries are in bounds.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn tn_tile<const V: usize>(
            rows: Range<usize>,
            m: usize,
            n: usize,
            a: *const f32,
            b: *const f32,
            c: *mut f32,
        ) {
            // SAFETY: in bounds (caller).
            let acc = unsafe { tile_sums::<V>(rows, n, b, |r, p| a.wrapping_add(p * m + r)) };
            for (r, acc_r) in acc.iter().enumerate() {
                for (v, s) in acc_r.iter().enumerate() {
                    // SAFETY: in bounds (caller).
                    unsafe {
                        let cp = c.add(r * n + v * L);
                        _mm512_storeu_ps(cp, _mm512_add_ps(_mm512_loadu_ps(cp), *s));
                    }
                }
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    mod avx512 {
        use std::ops::Range;
        pub(super) unsafe fn tn_small_tile<const M: usize, const V: usize>(
            _: usize,
            _: usize,
            _: *const f32,
            _: *const f32,
            _: *mut f32,
        ) {
            unreachable!("AVX-512 only")
        }
        pub(super) unsafe fn nn_tile<const V: usize>(
            _: usize,
            _: usize,
            _: *const f32,
            _: *const f32,
            _: f32,
            _: *mut f32,
        ) {
            unreachable!("AVX-512 only")
        }
        pub(super) unsafe fn tn_tile<const V: usize>(
            _: Range<usize>,
            _: usize,
            _: usize,
            _: *const f32,
            _: *const f32,
            _: *mut f32,
        ) {
            unreachable!("AVX-512 only")
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

/// Columns of C per register block of the thin-dimension kernels.
const BLK: usize = 16;
/// Register blocks per group of [`rows_axpy`] (independent accumulation chains).
const GROUP: usize = 4;

/// C = β C + A·B in row form, C_i = β C_i + Σ_p A_ip B_p, with B k×n (rows B_p). Each
/// entry is βc (0 for β = 0 — even for a NaN c —, c for β = 1), then + A_ip B_pj for
/// p = 0, 1, … in turn (a product, then a sum: no fused multiply-add), accumulated in
/// registers over groups of [`GROUP`] blocks of [`BLK`] columns, then single blocks.
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
    for (ci, ai) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)).take(m) {
        // Groups of GROUP·BLK columns first: their GROUP accumulator blocks are independent
        // chains in flight together (one block alone waits on each add's latency).
        let mut groups = ci.chunks_exact_mut(GROUP * BLK);
        for (jg, cg) in (&mut groups).enumerate() {
            let mut acc = [F::ZERO; GROUP * BLK];
            acc.iter_mut().zip(cg.iter()).for_each(|(s, x)| *s = init(*x));
            for (p, &aip) in ai.iter().enumerate() {
                let start = p * n + jg * GROUP * BLK;
                let bp: &[F; GROUP * BLK] = b[start..start + GROUP * BLK].try_into().expect("group entries");
                acc.iter_mut().zip(bp).for_each(|(s, x)| *s += aip * *x);
            }
            cg.copy_from_slice(&acc);
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
                acc.iter_mut().zip(bp).for_each(|(s, x)| *s += aip * *x);
            }
            cb.copy_from_slice(&acc);
        }
        let tail = blocks.into_remainder();
        let j0 = n - tail.len();
        for (j, x) in tail.iter_mut().enumerate() {
            let mut s = init(*x);
            for (p, &aip) in ai.iter().enumerate() {
                s += aip * b[p * n + j0 + j];
            }
            *x = s;
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

/// C += Aᵀ·B for A k×m with m small: for every row p, C_i += A_pi B_p. Each entry is c,
/// then + A_pi B_pj for p = 0, 1, … in turn (a product, then a sum); f32 with AVX-512
/// runs [`Real::direct_tn_small`] (the same operations, C held in registers).
fn tn_small_m<F: Real>(m: usize, k: usize, n: usize, a: &[F], b: &[F], c: &mut [F]) {
    if F::direct_tn_small(m, k, n, a, b, c) {
        return;
    }
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
    } else if !F::direct_nn(m, k, n, a, b, beta, c) {
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
    } else if !F::direct_tn_add(m, k, n, a, b, c) {
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
    } else if !F::direct_nn(m, k, n, a, &transpose(n, k, &b[..n * k]), beta, c) {
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
}
