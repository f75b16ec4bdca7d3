//! Small numeric helpers shared across the crate, each written once: the dot product, the
//! mean and the population standard deviation of a slice. Every caller's numbers depend on
//! the exact order of operations here (sums in index order), so these are not to be
//! replaced by reordered or vectorised forms.

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
}
