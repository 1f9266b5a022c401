//! The audit stream: a tamper-evident HMAC chain per user, signed checkpoints, a verifier.
//!
//! "Audit before access": callers record an event with [`AuditLog::record`] and touch the
//! credentials only after it returns `Ok`, which means JetStream has stored the event.
//! Any failure (no stream, no server, a timeout) is an [`AuditError`], and the caller
//! refuses the request: auditing fails closed. The format is documented in `docs/AUDIT.md`.
//!
//! # Layout
//! - [`chain`]: a link's headers and its HMAC-SHA256 hash.
//! - [`log`]: [`AuditLog`], the writer: one chain per subject, serialised by JetStream's
//!   expected-last-subject-sequence, with the tip cached in memory.
//! - [`checkpoint`]: signed checkpoints, in the stream and in the `audit_checkpoints` table.
//! - [`verify`]: checks every link and checkpoint and reports the first bad sequence;
//!   [`reader`]: the one loop that feeds it the stored messages of a stream.
//! - [`stream_check`]: checks the stream itself: no history-discarding limit, deny flags on,
//!   history from sequence 1 without gaps.
//! - [`orders`]: matches orders to the audit events that must precede them.
//! - [`generations`]: broker account rows older than the generation register or the audit
//!   trail says was written (rolled back).

pub mod chain;
pub mod checkpoint;
pub mod generations;
pub mod log;
pub mod orders;
pub mod reader;
pub mod stream_check;
pub mod verify;

use std::time::Duration;

use async_nats::jetstream::{self, stream};

pub use checkpoint::{Checkpoint, CheckpointPolicy};
pub use log::{AuditChains, AuditLog};

use crate::codec::Encoding;
use crate::model::AuditEvent;
use crate::subjects;

/// The audit event could not be durably stored.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The AUDIT stream does not exist (or has no reachable leader): nothing can be
    /// audited, so every credential access is refused until an operator restores it
    /// (docs/AUDIT.md, "When AUDIT is missing").
    #[error("audit stream unavailable: {0}")]
    StreamUnavailable(String),
    /// Publishing failed: no server, or a refused message.
    #[error("audit stream refused the event: {0}")]
    Publish(String),
    /// No ack arrived in time.
    #[error("audit stream did not acknowledge within {0:?}")]
    Timeout(Duration),
    /// The event could not be encoded.
    #[error("audit event could not be encoded: {0}")]
    Encode(#[from] crate::codec::CodecError),
    /// A checkpoint could not be stored in the database.
    #[error("audit checkpoint could not be stored: {0}")]
    Checkpoint(String),
    /// Reading the stream failed (looking it up, a consumer, a chain's last link): nothing
    /// was written. Kept apart from [`AuditError::Publish`], which is a refused write.
    #[error("audit stream could not be read while {context}: {source}")]
    Read {
        /// What the reader was doing, e.g. `creating a consumer`.
        context: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AuditError {
    /// A short, stable name of the failure (the `error.type` of an `audit.publish` span).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::StreamUnavailable(_) => "AUDIT_STREAM_UNAVAILABLE",
            Self::Publish(_) => "AUDIT_PUBLISH_REFUSED",
            Self::Timeout(_) => "AUDIT_TIMEOUT",
            Self::Encode(_) => "AUDIT_ENCODE",
            Self::Checkpoint(_) => "AUDIT_CHECKPOINT",
            Self::Read { .. } => "AUDIT_READ",
        }
    }

    /// A read failure while `context`, keeping `source`.
    pub fn read(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Read {
            context,
            source: Box::new(source),
        }
    }

    /// The stream is gone (or leaderless): JetStream's "no responders" or "stream not found".
    pub fn stream_missing() -> Self {
        Self::StreamUnavailable(format!(
            "the {} stream does not exist or has no reachable leader",
            subjects::AUDIT_STREAM
        ))
    }

    /// Maps a JetStream publish error: "no stream for the subject" is
    /// [`AuditError::StreamUnavailable`], anything else [`AuditError::Publish`].
    pub fn from_publish(error: jetstream::context::PublishError) -> Self {
        match error.kind() {
            jetstream::context::PublishErrorKind::StreamNotFound => Self::stream_missing(),
            _ => Self::Publish(error.to_string()),
        }
    }

    /// Whether the stream itself is missing (as opposed to a slow or refused publish).
    pub fn is_stream_unavailable(&self) -> bool {
        matches!(self, Self::StreamUnavailable(_))
    }
}

/// The stream definition: file storage, no message delete, no purge, no rollup.
pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: subjects::AUDIT_STREAM.to_string(),
        description: Some("Pinnacle credential-access audit trail".into()),
        subjects: vec![subjects::AUDIT_ALL.to_string()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: replicas,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Creates the audit stream if it does not exist; leaves an existing one untouched. For an
/// operator's deliberate re-creation and for tests: services call [`prepare_stream`], which
/// never re-creates a stream that held history.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<stream::Stream, AuditError> {
    js.get_or_create_stream(stream_config(1))
        .await
        .map_err(|e| AuditError::Publish(e.to_string()))
}

/// What a service found when it prepared the audit stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// AUDIT exists (left untouched).
    Found,
    /// AUDIT did not exist and nothing was ever audited: a fresh install, so it was created.
    Created,
}

/// A service's start-up check: AUDIT exists, or is created when it never held anything.
///
/// A missing AUDIT while `db` holds audit checkpoints means its history was lost (deleted,
/// or a wiped JetStream store). Re-creating it empty would hide that, so this refuses with
/// [`AuditError::StreamUnavailable`]: the service keeps running and refuses every
/// credential access (fail closed) until an operator restores the stream
/// (docs/AUDIT.md, "When AUDIT is missing"). The gauge `pinnacle_audit_stream_available`
/// follows the outcome.
pub async fn prepare_stream(
    js: &jetstream::Context,
    db: &sea_orm::DatabaseConnection,
) -> Result<Prepared, AuditError> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use sea_orm::{EntityTrait, PaginatorTrait};
    let result = match js.get_stream(subjects::AUDIT_STREAM).await {
        Ok(_) => Ok(Prepared::Found),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(js_error)
                if js_error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                let checkpoints = crate::entities::audit_checkpoints::Entity::find()
                    .count(db)
                    .await
                    .map_err(|e| AuditError::Checkpoint(e.to_string()))?;
                if checkpoints > 0 {
                    Err(AuditError::StreamUnavailable(format!(
                        "the {} stream is missing but the database holds {checkpoints} audit \
                         checkpoints: its history was lost, so it is not re-created; an operator \
                         must restore it (docs/AUDIT.md, \"When AUDIT is missing\")",
                        subjects::AUDIT_STREAM
                    )))
                } else {
                    ensure_stream(js).await.map(|_| Prepared::Created)
                }
            }
            _ => Err(AuditError::read("looking up the stream", e)),
        },
    };
    crate::metrics::audit_stream_available(result.is_ok());
    result
}

/// One page of a user's audit trail, as [`AuditLog::read_user`] read it.
#[derive(Debug, Clone, Default)]
pub struct UserTrail {
    /// The events that decoded, oldest first.
    pub events: Vec<StoredEvent>,
    /// The stream sequences of messages on the user's chain that did not decode as an
    /// event (each also logged as a warning): reported, never skipped in silence.
    pub undecodable: Vec<u64>,
}

/// A stored audit event and its stream sequence, as a user's audit trail shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredEvent {
    /// The JetStream sequence, increasing in storage order.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditLog {
    /// Reads up to `limit` of `user_id`'s messages, oldest first, from sequence `after` on:
    /// the events, and the sequences of any message that is not one (logged, counted in
    /// [`UserTrail::undecodable`]; it takes a place in the page like any message).
    pub async fn read_user(
        &self,
        user_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<UserTrail, AuditError> {
        use async_nats::jetstream::consumer::{pull, DeliverPolicy};
        use futures::StreamExt as _;
        let stream = self
            .js()
            .get_stream(subjects::AUDIT_STREAM)
            .await
            .map_err(|e| AuditError::read("looking up the stream", e))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subjects::audit_credential(user_id),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after.saturating_add(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| AuditError::read("creating a consumer", e))?;
        let want = usize::try_from(consumer.cached_info().num_pending)
            .unwrap_or(usize::MAX)
            .min(limit);
        let mut out = UserTrail {
            events: Vec::with_capacity(want),
            undecodable: Vec::new(),
        };
        if want == 0 {
            return Ok(out);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| AuditError::read("reading messages", e))?;
        let mut read = 0;
        while read < want {
            let message = match tokio::time::timeout(self.timeout(), messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => return Err(AuditError::read("reading messages", e)),
                // The page ends early: the stream had no more for us within the timeout.
                Ok(None) | Err(_) => break,
            };
            read += 1;
            let info = message.info().map_err(|e| {
                AuditError::read("reading a message's sequence", Opaque(e.to_string()))
            })?;
            let seq = info.stream_sequence;
            match Encoding::MsgPack.decode::<AuditEvent>(&message.payload) {
                Ok(event) => out.events.push(StoredEvent { seq, event }),
                Err(error) => {
                    tracing::warn!(seq, subject = %message.subject, %error, "audit message does not decode as an event");
                    out.undecodable.push(seq);
                }
            }
        }
        if !out.undecodable.is_empty() {
            tracing::warn!(
                count = out.undecodable.len(),
                "audit trail page holds messages that are not events"
            );
        }
        Ok(out)
    }
}

/// A client error that is only text (its type is not `'static` or not an `Error`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Opaque(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_failure_keeps_its_source_and_is_not_a_refused_publish() {
        let error = AuditError::read("creating a consumer", std::io::Error::other("no route"));
        assert_eq!(error.kind(), "AUDIT_READ");
        assert!(error.to_string().contains("creating a consumer"), "{error}");
        assert!(!error.to_string().contains("refused"), "{error}");
        let source = std::error::Error::source(&error).expect("kept");
        assert_eq!(source.to_string(), "no route");
    }
}
