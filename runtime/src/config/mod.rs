//! Typed settings, loaded from environment variables with `envy`, one file a settings group.
//!
//! Every variable is listed, with its default, in `.env.example` at the workspace root
//! and in `docs/CONFIGURATION.md`. Secrets are held as [`SecretString`](secrecy::SecretString),
//! whose `Debug` prints `[REDACTED]`, so logging a settings struct never leaks one. Values
//! that are enums, times or lists are parsed when the settings load, with an error naming
//! the variable, never checked as strings later.
//!
//! - `NATS_*` in [`nats`]: how to reach NATS.
//! - `DATABASE_*` is the store's (`pinnacle_store::settings`): this crate links no
//!   database, and `pinnacle_common::config` names both side by side.
//! - `PINNACLE_MASTER_KEY*` in [`vault`]: the credential vault's key ring.
//! - `PINNACLE_SIM_*` in [`feed`]: the simulated feed, and the simulated clock ([`SimNow`])
//!   both it and the worker can run from.
//! - `PINNACLE_MD_*` and the platform's `ANGEL_ONE_*` credentials in [`market_data`].
//! - `PINNACLE_WORKER_*` in [`worker`]: the order worker.
//! - `PINNACLE_AUDIT_*` in [`audit`]: every audit writer's checkpoint policy.
//! - `PINNACLE_API_*` and `PINNACLE_METRICS_*` in [`service`].
//!
//! [`ConfigError`] and the loading every group shares are a leaf module (`load`), so the
//! groups import it and not this module.

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
pub mod feed;
mod load;
pub mod market_data;
pub mod nats;
pub mod service;
pub mod vault;
pub mod worker;

#[cfg(test)]
mod tests;

pub use audit::{AuditSettings, CheckpointPolicy};
pub use feed::{SimFeedSettings, SimHours, SimNow};
pub use load::ConfigError;
pub use market_data::{AngelMode, AngelOneMarketDataSettings, FeedKind, MarketDataSettings};
pub use nats::NatsSettings;
pub use service::{MetricsSettings, UserApiSettings};
pub use vault::VaultSettings;
pub use worker::{PaperHours, SquareOffAt, WorkerSettings};
