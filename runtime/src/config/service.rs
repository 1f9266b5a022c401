//! `PINNACLE_API_*` (the user API) and `PINNACLE_METRICS_*` (the `/metrics` endpoint).

use secrecy::SecretString;
use serde::Deserialize;

use super::load::{load, ConfigError};

/// The user API (`PINNACLE_API_*`).
#[derive(Clone, Debug, Deserialize)]
pub struct UserApiSettings {
    /// `PINNACLE_API_BIND`: address to listen on.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// `PINNACLE_API_ADMIN_TOKEN`: bearer token for admin routes (creating users). Unset
    /// disables them.
    #[serde(default)]
    pub admin_token: Option<SecretString>,
}

fn default_bind() -> String {
    "127.0.0.1:8080".into()
}

impl UserApiSettings {
    /// Loads `PINNACLE_API_*`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("PINNACLE_API_")
    }
}

/// Observability endpoints (`PINNACLE_METRICS_*`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MetricsSettings {
    /// `PINNACLE_METRICS_ADDR`: where to serve Prometheus metrics on `GET /metrics`
    /// (e.g. `127.0.0.1:9464`); unset serves none.
    #[serde(default)]
    pub addr: Option<String>,
}

impl MetricsSettings {
    /// Loads `PINNACLE_METRICS_*`; an empty address counts as unset.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut settings: Self = load("PINNACLE_METRICS_")?;
        settings.addr = settings.addr.filter(|a| !a.trim().is_empty());
        Ok(settings)
    }
}
