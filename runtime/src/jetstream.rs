//! What a failed JetStream publish means for its writer, and above all which failures a
//! leader change produces, so that every writer (the audit chain, the order-event relay,
//! checkpoints) retries them within its own bounded window instead of refusing orders for
//! longer than the election lasts.
//!
//! On a cluster, losing a stream's leader node shows up, in order, as: acks that time out
//! or a broken connection (the client's node died), `no responders` or "cluster not
//! available" / "stream offline" / "not leader" while no leader exists, and then, from
//! the new leader, `wrong last sequence` as error code 10164 (the new leader's form of
//! 10071, which async-nats 0.51 reports as [`PublishErrorKind::Other`]).

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::ErrorCode;

/// The new leader's "wrong last sequence", without the sequence (async-nats 0.51 names it
/// `STREAM_WRONG_LAST_SEQUENCE_CONSTANT` but does not map it to a kind).
const WRONG_LAST_SEQUENCE_CONSTANT: ErrorCode = ErrorCode(10164);

/// What a writer should do after a failed publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The expected last sequence did not match: someone else appended, or a new leader
    /// does not know the writer's view. Re-read the stream's state and try again.
    Reread,
    /// No leader, no ack, or no connection for now: wait briefly and try again, within the
    /// writer's deadline.
    Later,
    /// Refused for good (a bad message, a permission, a limit): give up.
    Never,
}

/// The JetStream API error code behind a publish error, if the server sent one.
pub fn error_code(error: &PublishError) -> Option<ErrorCode> {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>())
        .map(|api| api.error_code())
}

/// Classifies a failed publish (see [`Retry`]).
pub fn classify(error: &PublishError) -> Retry {
    match error.kind() {
        PublishErrorKind::WrongLastSequence => Retry::Reread,
        // No responders: the stream is missing, or no server holds its leader right now.
        // The two look alike to a client; the writer's deadline bounds the wait either way.
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => Retry::Later,
        PublishErrorKind::WrongLastMessageId | PublishErrorKind::MaxPayloadExceeded => Retry::Never,
        PublishErrorKind::Other => match error_code(error) {
            Some(WRONG_LAST_SEQUENCE_CONSTANT) => Retry::Reread,
            Some(code) if is_leaderless(code) => Retry::Later,
            _ => Retry::Never,
        },
    }
}

/// Whether a JetStream API error code means "no leader right now" (retry later) rather
/// than a refusal.
pub fn is_leaderless(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::CLUSTER_NOT_AVAILABLE
            | ErrorCode::CLUSTER_NOT_LEADER
            | ErrorCode::STREAM_OFFLINE
            | ErrorCode::STREAM_OFFLINE_REASON
            | ErrorCode::CLUSTER_NO_PEERS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u64) -> PublishError {
        let error: async_nats::jetstream::Error = serde_json::from_value(serde_json::json!({
            "code": 400,
            "err_code": code,
            "description": "from the server",
        }))
        .expect("an API error");
        PublishError::with_source(PublishErrorKind::Other, error)
    }

    #[test]
    fn a_leader_change_is_retried_and_a_refusal_is_not() {
        assert_eq!(classify(&api_error(10164)), Retry::Reread);
        assert_eq!(
            classify(&PublishError::new(PublishErrorKind::WrongLastSequence)),
            Retry::Reread
        );
        for code in [10008, 10009, 10118, 10194, 10005] {
            assert_eq!(classify(&api_error(code)), Retry::Later, "{code}");
        }
        for kind in [
            PublishErrorKind::TimedOut,
            PublishErrorKind::BrokenPipe,
            PublishErrorKind::StreamNotFound,
        ] {
            assert_eq!(classify(&PublishError::new(kind)), Retry::Later);
        }
        // A bad request or a message too big: never retried.
        for code in [10003, 10054] {
            assert_eq!(classify(&api_error(code)), Retry::Never, "{code}");
        }
        assert_eq!(
            classify(&PublishError::new(PublishErrorKind::WrongLastMessageId)),
            Retry::Never
        );
        assert_eq!(error_code(&api_error(10164)), Some(ErrorCode(10164)));
    }
}
