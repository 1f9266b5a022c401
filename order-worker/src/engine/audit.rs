//! The audit port: where the engine records a credential access before it happens.
//!
//! [`AuditSink::record`] returns only once the event is durably stored (for
//! [`AuditLog`], acknowledged by JetStream in the credential's HMAC chain); the engine
//! decrypts nothing until it has returned `Ok` (see [`super::credentials`]). An
//! implementation must keep that promise: "audit acknowledged before decrypt" rests on it.

use async_trait::async_trait;
use pinnacle_common::audit::{AuditError, AuditLog};
use pinnacle_common::model::AuditEvent;

/// Stores audit events, failing closed.
#[async_trait]
pub trait AuditSink: std::fmt::Debug + Send + Sync {
    /// Stores `event` and returns once it is durably stored; any doubt is an error.
    async fn record(&self, event: &AuditEvent) -> Result<(), AuditError>;
}

#[async_trait]
impl AuditSink for AuditLog {
    async fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        AuditLog::record(self, event).await.map(|_sequence| ())
    }
}
