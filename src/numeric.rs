//! Small numeric helpers shared across the crate, each written once: the dot product, the
//! mean and the population standard deviation of a slice, a branch-free e^x, and a Gram
//! matrix in `nalgebra`'s summation order. Every caller's numbers depend on the exact order
//! of operations here (sums in index order, or `nalgebra`'s), so these are not to be
//! replaced by reordered forms.

use crate::cpu::{Level, level, multiversion};

/// x · y, summed in index order (over the shorter length).
pub(crate) fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// The mean of `x`, summed in index order (0 for no values).
pub(crate) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

/// The population standard deviation of `x` (divided by n, not n − 1; 0 for no values).
pub(crate) fn population_std(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / x.len().max(1) as f64).sqrt()
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

/// Lanes of `nalgebra`'s dot product: it sums x·y over blocks of 8 entries into 8
/// accumulators, one per position in the block.
const DOT_LANES: usize = 8;
/// Columns per side of the register block of [`gram_at`] (4 × 4 pairs of 8 lanes).
const GRAM_BLOCK: usize = 4;
/// Columns held while every other column streams past them (≈ 0.5 MB for 2,000 rows).
const GRAM_PANEL: usize = 32;

/// x · y summed exactly as `nalgebra` 0.35's `dot` sums a dynamic column: products rounded,
/// then added into lane accumulators a₀…a₇ over the blocks of 8 rows; the result
/// ((((0 + (a₀ + a₄)) + (a₁ + a₅)) + (a₂ + a₆)) + (a₃ + a₇)), then the rows after the last
/// whole block added in order. `lanes` are the accumulators over the whole blocks.
#[inline(always)]
fn dot_lanes_finish(lanes: &[f64; DOT_LANES], x: &[f64], y: &[f64]) -> f64 {
    let mut res = 0.0;
    res += lanes[0] + lanes[4];
    res += lanes[1] + lanes[5];
    res += lanes[2] + lanes[6];
    res += lanes[3] + lanes[7];
    let body = x.len() / DOT_LANES * DOT_LANES;
    for (a, b) in x[body..].iter().zip(&y[body..]) {
        res += a * b;
    }
    res
}

/// x · y (equal lengths) in `nalgebra`'s order ([`dot_lanes_finish`]): bit for bit
/// `DVector::dot`.
pub(crate) fn dot_nalgebra_order(x: &[f64], y: &[f64]) -> f64 {
    debug_assert_eq!(x.len(), y.len());
    let mut lanes = [0.0; DOT_LANES];
    for (xb, yb) in x.chunks_exact(DOT_LANES).zip(y.chunks_exact(DOT_LANES)) {
        for l in 0..DOT_LANES {
            lanes[l] += xb[l] * yb[l];
        }
    }
    dot_lanes_finish(&lanes, x, y)
}

multiversion! {
    /// [`gram_nalgebra_order`] at `level`: on [`Level::Avx512`] the entries of a 4 × 4 block
    /// of column pairs accumulate together, their lanes in vector registers
    /// (`gram_avx512::block_lanes`), over a panel of columns that stays in cache while the
    /// others stream past; elsewhere one [`dot_nalgebra_order`] per pair. Each entry's own
    /// operations and their order are the same either way.
    fn gram_at(level: Level, n: usize, f: usize, cols: &[f64], out: &mut [f64]) {
        let col = |i: usize| &cols[i * n..(i + 1) * n];
        let blocked = cfg!(target_arch = "x86_64") && level == Level::Avx512;
        let mut p0 = 0;
        while p0 < f {
            let p1 = (p0 + GRAM_PANEL).min(f);
            // Every j ≥ the panel's first column, against the panel's columns i ≤ j.
            let mut j0 = p0;
            while j0 < f {
                let j1 = (j0 + GRAM_BLOCK).min(f);
                let mut i0 = p0;
                while i0 < p1 && i0 < j1 {
                    let i1 = (i0 + GRAM_BLOCK).min(p1);
                    if blocked && i1 - i0 == GRAM_BLOCK && j1 - j0 == GRAM_BLOCK {
                        // SAFETY: the level is at most the CPU's (AVX-512), and the columns
                        // i0..i1 and j0..j1 lie within `cols` (n × f entries).
                        let lanes = unsafe { gram_avx512::block_lanes(n, cols, i0, j0) };
                        for (ii, row) in lanes.iter().enumerate() {
                            for (jj, acc) in row.iter().enumerate() {
                                let (i, j) = (i0 + ii, j0 + jj);
                                if i <= j {
                                    let v = dot_lanes_finish(acc, col(i), col(j));
                                    out[j * f + i] = v;
                                    out[i * f + j] = v;
                                }
                            }
                        }
                    } else {
                        for i in i0..i1 {
                            for j in j0.max(i)..j1 {
                                let v = dot_nalgebra_order(col(i), col(j));
                                out[j * f + i] = v;
                                out[i * f + j] = v;
                            }
                        }
                    }
                    i0 = i1;
                }
                j0 = j1;
            }
            p0 = p1;
        }
    }
}

/// The AVX-512 register block of [`gram_at`].
#[cfg(target_arch = "x86_64")]
mod gram_avx512 {
    use super::{DOT_LANES, GRAM_BLOCK};
    use std::arch::x86_64::*;

    /// The lane accumulators of `nalgebra`'s dot product (products rounded, then added,
    /// from +0) for the 4 × 4 pairs of columns i0.. × j0.. of the n-row column-major `cols`,
    /// over the whole blocks of 8 rows.
    ///
    /// # Safety
    /// AVX-512F; columns i0..i0 + 4 and j0..j0 + 4 lie within `cols`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block_lanes(
        n: usize,
        cols: &[f64],
        i0: usize,
        j0: usize,
    ) -> [[[f64; DOT_LANES]; GRAM_BLOCK]; GRAM_BLOCK] {
        let body = n / DOT_LANES * DOT_LANES;
        let base = cols.as_ptr();
        let a: [*const f64; GRAM_BLOCK] = std::array::from_fn(|ii| base.wrapping_add((i0 + ii) * n));
        let b: [*const f64; GRAM_BLOCK] = std::array::from_fn(|jj| base.wrapping_add((j0 + jj) * n));
        let mut acc = [[_mm512_setzero_pd(); GRAM_BLOCK]; GRAM_BLOCK];
        let mut k = 0;
        while k < body {
            // SAFETY: rows k..k + 8 of the columns are in bounds (caller).
            let (av, bv) = unsafe {
                (
                    [0, 1, 2, 3].map(|ii| _mm512_loadu_pd(a[ii].add(k))),
                    [0, 1, 2, 3].map(|jj| _mm512_loadu_pd(b[jj].add(k))),
                )
            };
            for (acc_i, a_i) in acc.iter_mut().zip(&av) {
                for (s, b_j) in acc_i.iter_mut().zip(&bv) {
                    *s = _mm512_add_pd(*s, _mm512_mul_pd(*a_i, *b_j));
                }
            }
            k += DOT_LANES;
        }
        let mut out = [[[0.0; DOT_LANES]; GRAM_BLOCK]; GRAM_BLOCK];
        for (o_i, acc_i) in out.iter_mut().zip(&acc) {
            for (o, s) in o_i.iter_mut().zip(acc_i) {
                // SAFETY: `o` holds 8 f64.
                unsafe { _mm512_storeu_pd(o.as_mut_ptr(), *s) };
            }
        }
        out
    }
}

/// Never called off x86-64 ([`gram_at`] runs the blocks only there).
#[cfg(not(target_arch = "x86_64"))]
mod gram_avx512 {
    use super::{DOT_LANES, GRAM_BLOCK};
    pub(super) unsafe fn block_lanes(
        _: usize,
        _: &[f64],
        _: usize,
        _: usize,
    ) -> [[[f64; DOT_LANES]; GRAM_BLOCK]; GRAM_BLOCK] {
        unreachable!("x86-64 only")
    }
}

/// ΦᵀΦ of the n × f matrix Φ given by its `f` columns (`cols`, column after column, each of
/// length n), as an f × f column-major matrix: bit for bit `nalgebra`'s `phi.tr_mul(&phi)`
/// (every entry a [`dot_nalgebra_order`] of two columns; x · y and y · x are the same bits,
/// so each pair is summed once). Blocked and compiled per CPU level: for the 700 features
/// of a Humanoid baseline, ~10 times `tr_mul`'s speed.
pub(crate) fn gram_nalgebra_order(n: usize, f: usize, cols: &[f64]) -> Vec<f64> {
    assert_eq!(cols.len(), n * f, "cols: {} entries, expected {n} × {f}", cols.len());
    let mut out = vec![0.0; f * f];
    gram_at(level(), n, f, cols, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_mean_and_population_std() {
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, -5.0, 6.0]), 12.0);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!((mean(&[]), population_std(&[])), (0.0, 0.0));
        assert_eq!(population_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]), 2.0);
    }

    /// Against the platform's exp over the whole range the callers clamp to, and at its
    /// ends and around zero, where the reduction's n changes sign.
    #[test]
    fn exp_reduced_matches_the_platform_exp() {
        let mut worst = 0.0f64;
        for i in 0..=800_000 {
            let x = -40.0 + 80.0 * i as f64 / 800_000.0;
            worst = worst.max(((exp_reduced(x) - x.exp()) / x.exp()).abs());
        }
        for x in [-40.0, 40.0, 0.0, -0.0, 1e-300, -1e-300, 0.5 * std::f64::consts::LN_2] {
            worst = worst.max(((exp_reduced(x) - x.exp()) / x.exp()).abs());
        }
        assert!(worst <= 4e-16, "{worst:e}");
        assert!(exp_reduced(f64::NAN).is_nan());
    }
    /// The Gram matrix and the dot product give `nalgebra`'s bits for every row count
    /// around the lane blocks and the column counts around the register blocks and panels,
    /// at every CPU level of this machine; values of all magnitudes and signs, and zeros.
    #[test]
    fn gram_and_dot_match_nalgebra_bit_for_bit() {
        use nalgebra::{DMatrix, DVector};
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            if state.is_multiple_of(17) { 0.0 } else { (u - 0.5) * 10f64.powi((state % 9) as i32 - 4) }
        };
        for (n, f) in [(0, 3), (1, 1), (7, 5), (8, 4), (9, 9), (23, 37), (64, 33), (130, 70), (2000, 41)] {
            let cols: Vec<f64> = (0..n * f).map(|_| next()).collect();
            let phi = DMatrix::from_column_slice(n, f, &cols);
            let want = phi.tr_mul(&phi);
            for l in crate::cpu::Level::available() {
                let mut got = vec![f64::NAN; f * f];
                gram_at(l, n, f, &cols, &mut got);
                let same = got.iter().zip(want.as_slice()).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{n} × {f} at {l}");
            }
            if n > 0 {
                let y: Vec<f64> = (0..n).map(|_| next()).collect();
                let want = phi.tr_mul(&DVector::from_column_slice(&y));
                for i in 0..f {
                    let got = dot_nalgebra_order(&cols[i * n..(i + 1) * n], &y);
                    assert_eq!(got.to_bits(), want[i].to_bits(), "{n} × {f}: Φᵀy[{i}]");
                }
            }
        }
        // The summation order is not the naive one: a case where they differ.
        let x = [1e16, 1.0, 0.0, 0.0, -1e16, 0.0, 0.0, 0.0, 0.0];
        let ones = [1.0; 9];
        let naive: f64 = x.iter().sum();
        assert_eq!((naive, dot_nalgebra_order(&x, &ones)), (0.0, 1.0));
        assert_eq!(
            dot_nalgebra_order(&x, &ones),
            DVector::from_row_slice(&x).dot(&DVector::from_row_slice(&ones))
        );
    }
}
