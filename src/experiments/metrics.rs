//! Accuracy measures between an exact derivative and its estimate.

/// Pearson correlation of two flattened tensors (docs/theory.md#correlation): the cosine of the
/// mean-centred vectors. Returns 0 when either vector is constant (the correlation is undefined there;
/// an estimate that carries no information scores 0).
pub fn pearson(exact: &[f64], estimate: &[f64]) -> f64 {
    assert_eq!(exact.len(), estimate.len(), "tensors must have the same size");
    let n = exact.len() as f64;
    let (mx, my) = (exact.iter().sum::<f64>() / n, estimate.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in exact.iter().zip(estimate) {
        let (dx, dy) = (x - mx, y - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 || !(sxx * syy).is_finite() { 0.0 } else { sxy / (sxx * syy).sqrt() }
}

/// Relative Euclidean error ‖estimate − exact‖ / ‖exact‖ (∞ when exact is zero and the
/// estimate is not).
pub fn relative_error(exact: &[f64], estimate: &[f64]) -> f64 {
    let num: f64 = exact.iter().zip(estimate).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = exact.iter().map(|x| x * x).sum::<f64>().sqrt();
    if den > 0.0 {
        num / den
    } else if num == 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Mean, standard deviation (n − 1) and standard error of a sample.
pub fn mean_std_se(xs: &[f64]) -> (f64, f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (m, 0.0, 0.0);
    }
    let sd = (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    (m, sd, sd / n.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_on_hand_made_cases() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&x, &x) - 1.0).abs() < 1e-15);
        // Invariant to positive affine maps, sign-flipped by negative ones.
        let y: Vec<f64> = x.iter().map(|v| 3.0 * v - 7.0).collect();
        assert!((pearson(&x, &y) - 1.0).abs() < 1e-15);
        let z: Vec<f64> = x.iter().map(|v| -0.5 * v).collect();
        assert!((pearson(&x, &z) + 1.0).abs() < 1e-15);
        // Orthogonal centred vectors.
        assert!(pearson(&[1.0, -1.0, 1.0, -1.0], &[1.0, 1.0, -1.0, -1.0]).abs() < 1e-15);
        // A worked example: x = (1,2,3), y = (1,3,2): r = 0.5.
        assert!((pearson(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]) - 0.5).abs() < 1e-15);
        // Undefined (constant) → 0.
        assert_eq!(pearson(&x, &[2.0; 4]), 0.0);
    }

    #[test]
    fn summary_statistics() {
        let (m, sd, se) = mean_std_se(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-15);
        assert!((sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!((se - sd / 2.0).abs() < 1e-15);
        assert!((relative_error(&[3.0, 4.0], &[3.0, 5.0]) - 0.2).abs() < 1e-15);
    }
}
