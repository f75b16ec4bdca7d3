//! Vectorised meta-task environments (placeholder, filled in by the environments work).

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
