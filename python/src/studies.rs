//! The tabular study (paper Fig. 1 a–c and the meta-gradient sweep): the library's
//! [`StudySettings`] from keyword arguments, run with the GIL released and stoppable by
//! Ctrl-C, tables back as JSON records (the Python package makes DataFrames of them).

use std::path::PathBuf;

use metagrad::experiments::tabular_study::{StudySettings, summarise, write_results};
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
/// Returns (trials JSON, summary JSON): lists of records.
#[pyfunction]
#[pyo3(signature = (settings, out=None, progress=None))]
fn tabular_study(
    py: Python<'_>,
    settings: &str,
    out: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
) -> PyResult<(String, String)> {
    let settings: StudySettings = parse_settings("tabular_study", settings)?;
    let study = settings.validate().map_err(py_err)?;
    if let Some(dir) = &out {
        metagrad::experiments::prepare_output_dir(dir).map_err(py_err)?;
    }
    let total = study.n_jobs();
    let mut done = 0usize;
    let (rows, summary) = run_stoppable(
        py,
        |events| {
            let rows = study.run(&|| events.send(()))?;
            let summary = summarise(&rows);
            if let Some(dir) = &out {
                write_results(dir, &study, &rows, &summary)?;
            }
            Ok((rows, summary))
        },
        |py, ()| {
            done += 1;
            match &progress {
                Some(f) => f.call1(py, (done, total)).map(|_| ()),
                None => Ok(()),
            }
        },
    )?;
    let rows = serde_json::to_string(&rows).expect("rows serialise");
    let summary = serde_json::to_string(&summary).expect("rows serialise");
    Ok((rows, summary))
}
