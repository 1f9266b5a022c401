//! `PINNACLE_AUDIT_*`: when every audit writer in the process checkpoints its chains, and
//! [`CheckpointPolicy`], the writers' form of it (`pinnacle_common::audit` re-exports it;
//! it is defined here so that the settings need nothing from the audit code).

use std::time::Duration;

use serde::Deserialize;

use super::load::{load, ConfigError};

/// When a writer checkpoints a chain it appends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// After this many links appended by this writer since its last checkpoint.
    pub every_events: u64,
    /// Or, on the next append, once this long has passed since its last checkpoint.
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_events: 100,
            every: Duration::from_secs(60),
        }
    }
}

/// When audit writers checkpoint their chains, and how stale an unsealed link may be before
/// `pinnacle audit verify` reports it (`PINNACLE_AUDIT_*`; see docs/AUDIT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct AuditSettings {
    /// `PINNACLE_AUDIT_CHECKPOINT_EVERY`: a writer checkpoints a chain after appending this
    /// many events to it.
    #[serde(default = "default_audit_checkpoint_every")]
    pub checkpoint_every: u64,
    /// `PINNACLE_AUDIT_CHECKPOINT_SECS`: and at the latest this many seconds after its first
    /// append since its last checkpoint of that chain (a timer, no further append needed).
    #[serde(default = "default_audit_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// `PINNACLE_AUDIT_SEAL_GRACE_SECS`: `pinnacle audit verify` reports a chain whose last
    /// link is older than `CHECKPOINT_SECS` + this and covered by no checkpoint.
    #[serde(default = "default_audit_seal_grace_secs")]
    pub seal_grace_secs: u64,
}

fn default_audit_checkpoint_every() -> u64 {
    100
}

fn default_audit_checkpoint_secs() -> u64 {
    10
}

fn default_audit_seal_grace_secs() -> u64 {
    50
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_every: default_audit_checkpoint_every(),
            checkpoint_secs: default_audit_checkpoint_secs(),
            seal_grace_secs: default_audit_seal_grace_secs(),
        }
    }
}

impl AuditSettings {
    /// Loads `PINNACLE_AUDIT_*`; refuses the old worker-only names, which would otherwise
    /// be ignored in silence, and a zero interval.
    pub fn from_env() -> Result<Self, ConfigError> {
        for (old, new) in [
            (
                "PINNACLE_WORKER_AUDIT_CHECKPOINT_EVERY",
                "PINNACLE_AUDIT_CHECKPOINT_EVERY",
            ),
            (
                "PINNACLE_WORKER_AUDIT_CHECKPOINT_SECS",
                "PINNACLE_AUDIT_CHECKPOINT_SECS",
            ),
        ] {
            if std::env::var_os(old).is_some() {
                return Err(ConfigError(format!(
                    "{old} was renamed {new} (it applies to every audit writer)"
                )));
            }
        }
        let settings: Self = load("PINNACLE_AUDIT_")?;
        if settings.checkpoint_every == 0 || settings.checkpoint_secs == 0 {
            return Err(ConfigError(
                "PINNACLE_AUDIT_CHECKPOINT_EVERY and PINNACLE_AUDIT_CHECKPOINT_SECS must be at least 1"
                    .into(),
            ));
        }
        Ok(settings)
    }

    /// The writers' policy.
    pub fn policy(&self) -> CheckpointPolicy {
        CheckpointPolicy {
            every_events: self.checkpoint_every,
            every: Duration::from_secs(self.checkpoint_secs),
        }
    }

    /// How old an unsealed link may be before `verify` reports it.
    pub fn max_unsealed(&self) -> std::time::Duration {
        Duration::from_secs(self.checkpoint_secs.saturating_add(self.seal_grace_secs))
    }
}
