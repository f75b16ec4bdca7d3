//! The Python face of metagrad: the extension module `metagrad._metagrad`.
//!
//! Thin wrappers over the same library functions as the command line: arrays in, the
//! library's validation at the boundary (its errors become `ValueError` naming the field
//! and value), arrays and tables out. Long calls release the GIL and stop on Ctrl-C
//! ([`interrupt`]). The Python package `metagrad` (python/metagrad/) converts dtypes and
//! builds DataFrames around this module.

mod envs;
mod errors;
mod external;
mod interrupt;
mod meta_rl;
mod rows;
mod studies;
mod tabular;

use pyo3::prelude::*;

/// Same allocator as the command line (the estimators' row buffers are reused, not
/// unmapped and faulted again per call).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _metagrad(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The name lists of the library (the Python package re-exports them).
    m.add("ALGORITHMS", metagrad::meta::algos::Algorithm::KNOWN.map(|a| a.name()).to_vec())?;
    m.add("ESTIMATORS", metagrad::estimators::Estimator::NAMES.to_vec())?;
    tabular::register(m)?;
    studies::register(m)?;
    meta_rl::register(m)?;
    rows::register(m)?;
    envs::register(m)?;
    Ok(())
}
