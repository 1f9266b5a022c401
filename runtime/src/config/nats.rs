//! `NATS_*`: how to reach NATS.

use secrecy::SecretString;
use serde::Deserialize;

use super::load::{load, ConfigError};

/// How to reach NATS (`NATS_*`).
#[derive(Clone, Deserialize)]
pub struct NatsSettings {
    /// `NATS_URL`: one server URL, or several separated by commas (the seed nodes of a
    /// cluster; the client also learns the others from the server). Credentials in a URL
    /// are refused: use the variables below, which apply to every server.
    #[serde(default = "default_nats_url")]
    pub url: String,
    /// `NATS_USER`: user name for user/password authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// `NATS_PASSWORD`: password for user/password authentication.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// `NATS_CREDS_FILE`: path to a `.creds` file (JWT + NKey), an alternative to user/password.
    #[serde(default)]
    pub creds_file: Option<String>,
    /// `NATS_SUBSCRIPTION_CAPACITY`: messages buffered per subscription before the client
    /// drops them as a slow consumer. Sized well above async-nats's 65,536 default.
    #[serde(default = "default_subscription_capacity")]
    pub subscription_capacity: usize,
    /// `NATS_INBOX_PREFIX`: where request replies arrive. A trader login on the shipped
    /// cluster config may subscribe only to `_INBOX.<user_id>.>`, so its clients set
    /// `_INBOX.<user_id>`; unset is the default `_INBOX`.
    #[serde(default)]
    pub inbox_prefix: Option<String>,
}

fn default_nats_url() -> String {
    "nats://127.0.0.1:4222".into()
}

fn default_subscription_capacity() -> usize {
    1 << 20
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("creds_file", &self.creds_file)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

impl NatsSettings {
    /// Loads `NATS_*`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("NATS_")
    }

    /// The servers of `NATS_URL`, in the order given. A URL that does not parse, or that
    /// carries `user:pass@` (async-nats would ignore it silently), is an error naming the
    /// URL's position, never its text, which may hold a secret.
    pub fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, ConfigError> {
        let mut servers = Vec::new();
        for (i, url) in self.url.split(',').map(str::trim).enumerate() {
            let position = i + 1;
            if url.is_empty() {
                return Err(ConfigError(format!("NATS_URL: server {position} is empty")));
            }
            // The parser's message names the fault ("invalid port number"), never the URL.
            let server: async_nats::ServerAddr = url
                .parse()
                .map_err(|e| ConfigError(format!("NATS_URL: server {position}: {e}")))?;
            if server.has_user_pass() {
                return Err(ConfigError(format!(
                    "NATS_URL: server {position} has credentials in its URL; \
                     use NATS_USER and NATS_PASSWORD (or NATS_CREDS_FILE)"
                )));
            }
            servers.push(server);
        }
        Ok(servers)
    }

    /// Settings for a server URL with no authentication.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: None,
            password: None,
            creds_file: None,
            inbox_prefix: None,
            subscription_capacity: default_subscription_capacity(),
        }
    }
}
