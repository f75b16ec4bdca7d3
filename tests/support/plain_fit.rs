//! The linear baseline's ridge fit as `nalgebra` alone computes it (Φ from rows, `tr_mul`,
//! Cholesky, the ridge raised tenfold until Cholesky succeeds): the reference that
//! `metagrad::meta::processing::fit_ridge` reproduces bit for bit. Shared by the test
//! `tests/baseline_fit.rs` and the benchmark `benches/baseline.rs`.

use nalgebra::{DMatrix, DVector};

/// Ridge least squares of `y` on the rows of `feats` (`y.len()` rows of `f` features).
pub fn plain_nalgebra_fit(feats: &[f64], f: usize, y: &[f64], ridge: f64) -> Vec<f64> {
    let phi = DMatrix::from_row_slice(y.len(), f, feats);
    let (gram, rhs) = (phi.tr_mul(&phi), phi.tr_mul(&DVector::from_column_slice(y)));
    let mut reg = ridge;
    loop {
        if let Some(ch) = (&gram + DMatrix::identity(f, f) * reg).cholesky() {
            return ch.solve(&rhs).iter().copied().collect();
        }
        reg = if reg > 0.0 { reg * 10.0 } else { 1e-5 };
    }
}

/// A deterministic, irregular test signal.
pub fn wave(i: usize) -> f64 {
    ((i * 7919 % 1009) as f64 / 504.5 - 1.0) * (1.0 + (i % 13) as f64)
}
