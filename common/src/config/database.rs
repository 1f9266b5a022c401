//! `DATABASE_*`: where the database is.
//!
//! The settings live with the store (`pinnacle_store::settings`), which loads them
//! itself; they are named here beside the other groups, and a
//! [`DatabaseConfigError`](pinnacle_store::DatabaseConfigError) becomes a [`ConfigError`]
//! with the same message.

pub use pinnacle_store::{redact_url, DatabaseSettings};

use super::ConfigError;

impl From<pinnacle_store::DatabaseConfigError> for ConfigError {
    fn from(error: pinnacle_store::DatabaseConfigError) -> Self {
        Self::new(error.message())
    }
}
