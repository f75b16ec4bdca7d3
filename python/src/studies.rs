//! The tabular study (paper Fig. 1 a–c and the meta-gradient sweep): the library's
//! [`StudySettings`] from keyword arguments, run with the GIL released and stoppable by
//! Ctrl-C, tables back as JSON records (the Python package makes DataFrames of them).

use std::path::PathBuf;

use metagrad::experiments::biasvar::biasvar_table;
use metagrad::experiments::tabular_study::{StudySettings, write_results};
use pyo3::prelude::*;

use crate::errors::{parse_settings, py_err};
use crate::interrupt::run_stoppable;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tabular_study, m)?)?;
    m.add_function(wrap_pyfunction!(tabular_study_defaults, m)?)?;
    Ok(())
}

/// The study's default settings as JSON (the command line's defaults).
#[pyfunction]
fn tabular_study_defaults() -> String {
    serde_json::to_string(&StudySettings::default()).expect("settings serialise")
}

/// Runs the study for `settings` (JSON of `StudySettings` fields; missing ones take the
/// defaults, unknown ones are refused), writing the CLI's files to `out` when given.
/// `progress(done, total)` is called on the calling thread after each work item.
/// Returns (trials JSON, summary JSON, biasvar JSON, biasvar summary JSON, predictions
/// JSON, crossovers JSON): lists of records (the biasvar ones empty unless
/// `sweep = "biasvar"`).
#[pyfunction]
#[pyo3(signature = (settings, out=None, progress=None))]
fn tabular_study(
    py: Python<'_>,
    settings: &str,
    out: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
) -> PyResult<(String, String, String, String, String, String)> {
    let settings: StudySettings = parse_settings("tabular_study", settings)?;
    let study = settings.validate().map_err(py_err)?;
    if let Some(dir) = &out {
        metagrad::experiments::prepare_output_dir(dir).map_err(py_err)?;
    }
    let total = study.n_jobs();
    let mut done = 0usize;
    let output = run_stoppable(
        py,
        None,
        |events| {
            let output = study.run_all(&|| events.send(()))?;
            if let Some(dir) = &out {
                write_results(dir, &study, &output)?;
            }
            Ok(output)
        },
        |py, ()| {
            done += 1;
            match &progress {
                Some(f) => f.call1(py, (done, total)).map(|_| ()),
                None => Ok(()),
            }
        },
    )?;
    let rows = serde_json::to_string(&output.rows).expect("rows serialise");
    let summary = serde_json::to_string(&output.summary).expect("rows serialise");
    let (bv, bv_summary, predictions, crossovers) = match &output.biasvar {
        Some(bv) => (
            biasvar_table(&bv.rows, &study.n_grid).to_json(),
            biasvar_table(&bv.summary, &study.n_grid).to_json(),
            serde_json::to_string(&bv.predictions).expect("rows serialise"),
            serde_json::to_string(&bv.crossovers).expect("rows serialise"),
        ),
        None => ("[]".into(), "[]".into(), "[]".into(), "[]".into()),
    };
    Ok((rows, summary, bv, bv_summary, predictions, crossovers))
}
