//! Library errors as Python exceptions: bad input → `ValueError` (the message names the
//! field and the value), file errors → `OSError`, a stopped computation → `KeyboardInterrupt`.

use pyo3::PyErr;
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyValueError};

/// Converts a library error.
pub fn py_err(e: metagrad::Error) -> PyErr {
    match e {
        metagrad::Error::Io { .. } => PyOSError::new_err(e.to_string()),
        metagrad::Error::Stopped(_) => PyKeyboardInterrupt::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A `ValueError` for a settings map that does not deserialise (unknown or mistyped
/// keyword argument), naming the function.
pub fn settings_err(function: &str, e: serde_json::Error) -> PyErr {
    PyValueError::new_err(format!("invalid keyword argument of {function}: {e}"))
}
