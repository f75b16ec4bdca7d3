//! Unpacked f32 products that give `matrixmultiply`'s sgemm results bit for bit.
//!
//! `matrixmultiply` packs both operands into panels before every product; for this
//! crate's shapes (N×64·64×64 and the depth-N weight gradients 64×N·N×64) the packing
//! cost 40–50 % as much as the arithmetic (`perf`, docs/speed.md). On a CPU with
//! AVX-512 it runs its 16×16 AVX-512 micro-kernel, which forms each entry of C as follows:
//! the depth is cut into blocks of [`KC`]; within a block the products are accumulated
//! from +0 by fused multiply-adds in increasing depth order; the first block's sum s is
//! stored as s (β = 0, C is not read) or as s + βC, every later block's as s + C. The
//! kernels here read the operands in place, with register tiles of 4 rows × 64 (or 16)
//! columns of C, and do the same operations in the same order for every entry, so the
//! results are identical (tested against `matrixmultiply` with `==` on the bits). They run
//! on the [`Level::Avx512`] level; the other levels run the same operations in the row
//! loops of `super::fused_nn`.

use crate::cpu::Level;

/// `matrixmultiply`'s depth block for sgemm (`S_KC`).
pub(crate) const KC: usize = 256;
/// Rows of C per register tile.
const R: usize = 4;
/// f32 lanes of an AVX-512 register.
const L: usize = 16;

/// Whether the kernels run at `level` (which callers keep at most the CPU's).
#[inline(always)]
pub(crate) fn runs(level: Level) -> bool {
    cfg!(target_arch = "x86_64") && level == Level::Avx512
}

/// One entry of C by the tiles' operations: block sums of fused multiply-adds from +0,
/// the first stored as s or s + βC, later ones as s + C (edges of the matrices).
#[inline(always)]
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
/// The CPU has AVX-512.
#[inline(always)]
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
/// The CPU has AVX-512.
#[inline(always)]
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
                unsafe { avx512::tn_tile::<4>(kb..ke, m, n, a[i..].as_ptr(), b[j..].as_ptr(), cp.add(j)) };
            }
            for j in (n64..n16).step_by(L) {
                // SAFETY: as above, columns j..j+16 of B and C.
                unsafe { avx512::tn_tile::<1>(kb..ke, m, n, a[i..].as_ptr(), b[j..].as_ptr(), cp.add(j)) };
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
/// The CPU has AVX-512.
#[inline(always)]
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
