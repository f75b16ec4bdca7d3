//! The row interface (placeholder, filled in by the row-interface work): estimators on
//! per-step log-likelihoods u = log π_θ(a_t|x_t), for any policy and autodiff framework.

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
