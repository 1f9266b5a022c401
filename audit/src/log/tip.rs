//! Reading a chain's tip as stored: the subject's last message (its link, or a restart
//! after a message that is not one), or the empty chain.

use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};

use crate::chain::{Link, Tip};
use crate::error::AuditError;
use pinnacle_protocol::subjects;

/// Why a chain's tip could not be read.
#[derive(Debug)]
pub(super) enum TipError {
    /// No leader or no reply for now: retry within the append's timeout.
    Leaderless(String),
    /// Refused for good (no stream, a permission): fail the append.
    Refused(AuditError),
}

/// The chain's tip as stored: the subject's last message, or empty.
pub(super) async fn read_tip(js: &jetstream::Context, subject: &str) -> Result<Tip, TipError> {
    let stream = js
        .get_stream_no_info(subjects::AUDIT_STREAM)
        .await
        .map_err(|e| TipError::Refused(AuditError::read("looking up the stream", e)))?;
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => Ok(match Link::from_headers(Some(&message.headers)) {
            Ok(link) => link.tip_at(message.sequence),
            // The last message is not a link (written before chaining, or forged by a
            // publisher): start a new chain after it; `verify` reports the message.
            Err(_) => Tip {
                seq: message.sequence,
                ..Tip::EMPTY
            },
        }),
        Err(e) => match e.kind() {
            LastRawMessageErrorKind::NoMessageFound => Ok(Tip::EMPTY),
            // The stream is gone: every access is refused until it is restored.
            LastRawMessageErrorKind::JetStream(api)
                if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Err(TipError::Refused(AuditError::stream_missing()))
            }
            // A bad subject, a permission: a refusal.
            LastRawMessageErrorKind::JetStream(api)
                if !pinnacle_runtime::jetstream::is_leaderless(api.error_code()) =>
            {
                Err(TipError::Refused(AuditError::read(
                    "reading a chain's last link",
                    e,
                )))
            }
            LastRawMessageErrorKind::InvalidSubject => Err(TipError::Refused(AuditError::read(
                "reading a chain's last link",
                e,
            ))),
            // No leader, no responder, no reply in time: an election, probably.
            LastRawMessageErrorKind::JetStream(_) | LastRawMessageErrorKind::Other => {
                Err(TipError::Leaderless(e.to_string()))
            }
        },
    }
}
