//! `DATABASE_*`: where the database is.

use serde::Deserialize;

use super::{load, ConfigError};

/// Where the database is (`DATABASE_URL`). `Debug` hides a password in the URL.
#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: `sqlite://path?mode=rwc` or `postgres://user@host/db`.
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS`: pool size.
    #[serde(default = "default_max_connections")]
    pub database_max_connections: u32,
}

fn default_max_connections() -> u32 {
    10
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .finish()
    }
}

/// Hides the password in a `scheme://user:password@host/…` URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl DatabaseSettings {
    /// Loads `DATABASE_URL` and `DATABASE_MAX_CONNECTIONS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("")
    }
}
