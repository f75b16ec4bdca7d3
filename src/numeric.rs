//! Small numeric helpers shared across the crate, each written once: the dot product, the
//! mean and the population standard deviation of a slice, and a branch-free e^x. Every
//! caller's numbers depend on the exact order of operations here (sums in index order), so
//! these are not to be replaced by reordered or vectorised forms.

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
}
