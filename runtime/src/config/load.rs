//! What every settings group shares: [`ConfigError`] and loading a prefix with `envy`.
//!
//! A leaf: the groups use it, and it uses none of them.

/// A settings group could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub(super) String);

impl ConfigError {
    /// A configuration error with a message for the operator.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

pub(super) fn load<T: serde::de::DeserializeOwned>(prefix: &str) -> Result<T, ConfigError> {
    envy::prefixed(prefix)
        .from_env()
        .map_err(|e| ConfigError(format!("{prefix}*: {e}")))
}

/// The first 40 characters of a rejected value, for an error message.
pub(super) fn shown(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The largest request body a service accepts by default, in bytes.
pub(super) fn default_max_payload() -> usize {
    16 * 1024
}
