//! One error type for the library: every variant names what was wrong and where.

/// Errors returned by metagrad. Messages name the offending field and value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of an input or a setting has an unacceptable value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `trajectories[3].actions[7]`.
        field: String,
        /// What is wrong, including the offending value.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An input file is not valid JSON of the expected shape.
    #[error("cannot parse {context}: {source}")]
    Parse {
        /// What was being parsed, with the path.
        context: String,
        /// The underlying error (with line and column).
        source: serde_json::Error,
    },
    /// A long computation was stopped by its caller (a progress callback asked it to stop,
    /// e.g. on Ctrl-C in Python); work completed before that point is kept.
    #[error("stopped: {0}")]
    Stopped(String),
    /// A meta-RL run diverged while sampling (an inner step gave parameters that are not
    /// finite): the trainer marks the run diverged, as its divergence guard does, and stops it.
    #[error("diverged: {0}")]
    Diverged(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for [`Error::Invalid`].
pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid { field: field.into(), reason: reason.into() }
}

/// Checks that `value` is finite, naming `field` otherwise.
pub fn ensure_finite(field: impl FnOnce() -> String, value: f64) -> Result<()> {
    if value.is_finite() { Ok(()) } else { Err(invalid(field(), format!("must be finite, got {value}"))) }
}

/// A setting or an input that is out of range, from the meta-RL engine's validators.
/// The message names the field and its value; it converts into [`Error::Invalid`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {field} = {value}: {reason}")]
pub struct SettingError {
    /// Name of the offending field or argument.
    pub field: &'static str,
    /// The value that was given, formatted.
    pub value: String,
    /// What was expected.
    pub reason: String,
}

impl SettingError {
    /// A new error for `field` with the given `value` and `reason`.
    pub fn new(field: &'static str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Self { field, value: value.to_string(), reason: reason.into() }
    }
}

impl From<SettingError> for Error {
    fn from(e: SettingError) -> Self {
        invalid(e.field, format!("{} (got {})", e.reason, e.value))
    }
}

/// `Ok(())` when `cond` holds, else a [`SettingError`].
pub(crate) fn ensure(
    cond: bool,
    field: &'static str,
    value: impl std::fmt::Display,
    reason: &str,
) -> std::result::Result<(), SettingError> {
    if cond { Ok(()) } else { Err(SettingError::new(field, value, reason)) }
}
