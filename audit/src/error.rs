//! [`AuditError`]: why an audit event could not be durably stored (or the stream read).
//!
//! One error for the audit writer, the stream preparation and the trail reader, so a
//! caller refuses a credential access on any of them (fail closed); [`AuditError::kind`] is
//! the stable name spans and metrics carry.

use std::time::Duration;

use async_nats::jetstream;

use pinnacle_protocol::subjects;

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
    Encode(#[from] pinnacle_protocol::codec::CodecError),
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
            "the {} stream did not answer: it does not exist, has no reachable leader, or JetStream is down",
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
