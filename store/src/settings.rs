//! `DATABASE_*`: where the database is, and [`DatabaseConfigError`] when it cannot be read.
//!
//! The settings live with the store, which opens the database from them;
//! `pinnacle_common::config` names them beside the other settings groups (which are
//! `pinnacle_runtime::config`'s: the runtime links no database, the store no runtime).

use serde::Deserialize;

/// `DATABASE_*` could not be read (a variable that does not parse). The message names the
/// variable; the URL, which may hold a password, is never in it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct DatabaseConfigError(String);

impl DatabaseConfigError {
    /// The message, without the `invalid configuration: ` prefix.
    pub fn message(&self) -> &str {
        &self.0
    }
}

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
    match password_span(url) {
        Some(password) => format!("{}***{}", &url[..password.start], &url[password.end..]),
        None => url.to_string(),
    }
}

/// Where the password of a `scheme://user:password@host/…` URL stands (possibly empty), or
/// `None` when the URL has no `user:` part.
pub(crate) fn password_span(url: &str) -> Option<std::ops::Range<usize>> {
    let creds_start = url.find("://")? + 3;
    let at = url.rfind('@').filter(|&at| at >= creds_start)?;
    let colon = url[creds_start..at].find(':')?;
    Some(creds_start + colon + 1..at)
}

impl DatabaseSettings {
    /// Loads `DATABASE_URL` and `DATABASE_MAX_CONNECTIONS`.
    pub fn from_env() -> Result<Self, DatabaseConfigError> {
        envy::prefixed("")
            .from_env()
            .map_err(|e| DatabaseConfigError(format!("*: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/p"),
            "postgres://app:***@db:5432/p"
        );
        assert_eq!(
            redact_url("sqlite:///x.db?mode=rwc"),
            "sqlite:///x.db?mode=rwc"
        );
        let settings = DatabaseSettings {
            database_url: "postgres://app:s3cret@db/p".into(),
            database_max_connections: 1,
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
