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

/// Keyword settings (as JSON) into a settings struct; an unknown or mistyped keyword is a
/// `ValueError` naming the function, the keyword and what was wrong.
pub fn parse_settings<T: serde::de::DeserializeOwned>(function: &str, json: &str) -> pyo3::PyResult<T> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        // serde_json appends the position in the JSON text, which the caller never saw.
        let msg = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        if path == "." || path.is_empty() {
            PyValueError::new_err(format!("invalid keyword argument of {function}: {msg}"))
        } else {
            PyValueError::new_err(format!("invalid {path} (keyword argument of {function}): {msg}"))
        }
    })
}
