//! `PINNACLE_MASTER_KEY*`, `PINNACLE_PEPPER_KEY_ID`, `PINNACLE_KEY_MAX_ENCRYPTIONS`: the
//! credential vault's master key ring.
//!
//! The settings live with the vault (`pinnacle_vault::settings`), which loads them
//! itself; they are named here beside the other groups, and a
//! [`VaultConfigError`](pinnacle_vault::VaultConfigError) becomes a [`ConfigError`] with
//! the same message.

pub use pinnacle_vault::VaultSettings;

use super::load::ConfigError;

impl From<pinnacle_vault::VaultConfigError> for ConfigError {
    fn from(error: pinnacle_vault::VaultConfigError) -> Self {
        Self::new(error.message())
    }
}
