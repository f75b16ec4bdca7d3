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

/// Runs the command-line tool `metagrad` with `argv` (the program name first) in this
/// process and returns its exit code (the `metagrad` command of the Python package).
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<std::ffi::OsString>) -> u8 {
    py.detach(|| metagrad::cli::main(argv))
}

#[pymodule]
fn _metagrad(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The CPU level of the hot loops (METAGRAD_CPU): a bad value fails the import, naming
    // the valid ones.
    let cpu = metagrad::cpu::init().map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    m.add("CPU_LEVEL", cpu.level.name())?;
    // The name lists of the library (the Python package re-exports them).
    m.add("ALGORITHMS", metagrad::meta::algos::Algorithm::KNOWN.map(|a| a.name()).to_vec())?;
    m.add("ESTIMATORS", metagrad::estimators::Estimator::NAMES.to_vec())?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    tabular::register(m)?;
    studies::register(m)?;
    meta_rl::register(m)?;
    rows::register(m)?;
    envs::register(m)?;
    Ok(())
}
