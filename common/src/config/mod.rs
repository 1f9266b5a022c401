//! Typed settings, loaded from environment variables with `envy`, one file a settings group.
//!
//! Every variable is listed, with its default, in `.env.example` at the workspace root
//! and in `docs/CONFIGURATION.md`. Secrets are held as [`SecretString`](secrecy::SecretString),
//! whose `Debug` prints `[REDACTED]`, so logging a settings struct never leaks one. Values
//! that are enums, times or lists are parsed when the settings load, with an error naming
//! the variable, never checked as strings later.
//!
//! - `NATS_*` in [`nats`]: how to reach NATS.
//! - `DATABASE_*` in [`database`].
//! - `PINNACLE_MASTER_KEY*` in [`vault`]: the credential vault's key ring.
//! - `PINNACLE_SIM_*` in [`feed`]: the simulated feed, and the simulated clock ([`SimNow`])
//!   both it and the worker can run from.
//! - `PINNACLE_MD_*` and the platform's `ANGEL_ONE_*` credentials in [`market_data`].
//! - `PINNACLE_WORKER_*` in [`worker`]: the order worker.
//! - `PINNACLE_AUDIT_*` in [`audit`]: every audit writer's checkpoint policy.
//! - `PINNACLE_API_*` and `PINNACLE_METRICS_*` in [`service`].

// Defined before the modules so that they can use it (macros are scoped by text order).
/// Deserializes a setting through its `FromStr`, whose error names the variable.
macro_rules! deserialize_from_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod audit;
pub mod database;
pub mod feed;
pub mod market_data;
pub mod nats;
pub mod service;
pub mod vault;
pub mod worker;

#[cfg(test)]
mod tests;

pub use audit::AuditSettings;
pub use database::{redact_url, DatabaseSettings};
pub use feed::{SimFeedSettings, SimHours, SimNow};
pub use market_data::{AngelMode, AngelOneMarketDataSettings, FeedKind, MarketDataSettings};
pub use nats::NatsSettings;
pub use service::{MetricsSettings, UserApiSettings};
pub use vault::VaultSettings;
pub use worker::{PaperHours, SquareOffAt, WorkerSettings};

/// A settings group could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A configuration error with a message for the operator.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn load<T: serde::de::DeserializeOwned>(prefix: &str) -> Result<T, ConfigError> {
    envy::prefixed(prefix)
        .from_env()
        .map_err(|e| ConfigError(format!("{prefix}*: {e}")))
}

/// The first 40 characters of a rejected value, for an error message.
fn shown(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The largest request body a service accepts by default, in bytes.
fn default_max_payload() -> usize {
    16 * 1024
}
