//! Announcing changes to what order workers cache: [`Invalidation`] is the payload of
//! [`CACHE_INVALIDATE`] (core NATS, not stored), and [`announce`] publishes one after the
//! change committed and returns once the server has handled it.
//!
//! Order workers keep a user's broker account rows (sealed, never decrypted) with their
//! default account, and the risk-limit rows, for at most a second (see
//! `pinnacle_order_worker`'s engine cache). Every writer of those tables in Pinnacle (the
//! user API, and the tools that use its write functions) announces the change, so every
//! worker drops the entry at once; the one-second lifetime covers an announcement lost
//! during a reconnect and a write made straight to the database.

use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::codec::{CodecError, Encoding};
use crate::nats::{handled_by_server, BarrierError};
use crate::subjects::CACHE_INVALIDATE;
use crate::telemetry;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Invalidation {
    /// A user's broker accounts (a row added, written, deleted or relabelled) or their
    /// default account.
    Accounts {
        /// The user.
        user_id: String,
    },
    /// A user's own risk-limits row (set, changed or cleared).
    Limits {
        /// The user.
        user_id: String,
    },
    /// The platform-wide risk-limits row.
    GlobalLimits,
    /// Anything: every cached account and limit (a key rotation rewrapped data keys).
    All,
}

impl Invalidation {
    /// The wire form: a small JSON object such as `{"kind":"limits","user_id":"…"}`.
    pub fn encode(&self) -> Result<bytes::Bytes, CodecError> {
        Encoding::Json.encode(self)
    }

    /// Reads the wire form (bounded like every other decode; an unknown kind is an error).
    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        Encoding::Json.decode(payload)
    }
}

/// Publishes `change` on [`CACHE_INVALIDATE`] and waits until the server has handled it,
/// inside a producer span whose context the message carries. A failure is logged, not
/// returned: the change has committed, and workers apply it within the cache's lifetime
/// anyway.
pub async fn announce(client: &async_nats::Client, change: &Invalidation) {
    let span = tracing::info_span!(
        "cache.invalidate.publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = CACHE_INVALIDATE,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    let payload = match change.encode() {
        Ok(payload) => payload,
        Err(error) => {
            telemetry::record_failure(&span, "PUBLISH_FAILED");
            tracing::warn!(%error, ?change, "cache invalidation not encoded; workers apply the change within a second");
            return;
        }
    };
    if let Err(error) = publish_confirmed(client, &span, CACHE_INVALIDATE, payload).await {
        tracing::warn!(%error, ?change, "cache invalidation not confirmed; workers apply the change within a second");
    }
}

/// Why an announcement may not have reached the workers (they then apply the change
/// within their cache's lifetime).
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The message was not sent (the connection is closed, …).
    #[error("the announcement was not sent: {0}")]
    Publish(#[from] async_nats::PublishError),
    /// It was sent, but the server did not confirm handling it.
    #[error(transparent)]
    Unconfirmed(#[from] BarrierError),
}

/// Publishes `payload` on `subject` with `span`'s trace context and waits until the server
/// has handled it ([`crate::nats::handled_by_server`]), inside `span` (a producer span the
/// caller named); a failure is recorded on the span and returned. The announcements that
/// workers' caches follow (this module's, and token revocations) all go out this way.
pub async fn publish_confirmed(
    client: &async_nats::Client,
    span: &tracing::Span,
    subject: &'static str,
    payload: bytes::Bytes,
) -> Result<(), AnnounceError> {
    let published = async {
        let mut headers = async_nats::HeaderMap::new();
        telemetry::inject_context(&mut headers);
        client
            .publish_with_headers(subject, headers, payload)
            .await?;
        handled_by_server(client).await?;
        Ok(())
    }
    .instrument(span.clone())
    .await;
    if published.is_err() {
        telemetry::record_failure(span, "PUBLISH_FAILED");
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_junk_is_refused() {
        for change in [
            Invalidation::Accounts {
                user_id: "u1".into(),
            },
            Invalidation::Limits {
                user_id: "u2".into(),
            },
            Invalidation::GlobalLimits,
            Invalidation::All,
        ] {
            let wire = change.encode().expect("encodes");
            assert_eq!(Invalidation::decode(&wire).expect("decodes"), change);
        }
        assert_eq!(
            Invalidation::encode(&Invalidation::Limits {
                user_id: "u".into()
            })
            .expect("encodes")
            .as_ref(),
            br#"{"kind":"limits","user_id":"u"}"#
        );
        for junk in [
            &b"u1"[..],
            br#"{"kind":"everything"}"#,
            br#"{"kind":"limits"}"#,
            br#"{"kind":"accounts","user_id":7}"#,
            b"",
        ] {
            assert!(Invalidation::decode(junk).is_err(), "{junk:?}");
        }
    }
}
