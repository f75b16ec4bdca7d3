//! Errors for invalid settings and inputs.

/// A setting or an input that is out of range. The message names the field and its value.
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
    pub fn new(
        field: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// `Ok(())` when `cond` holds, else a [`SettingError`].
pub(crate) fn ensure(
    cond: bool,
    field: &'static str,
    value: impl std::fmt::Display,
    reason: &str,
) -> Result<(), SettingError> {
    if cond {
        Ok(())
    } else {
        Err(SettingError::new(field, value, reason))
    }
}
