//! A user's audit trail, page by page: [`AuditLog::read_user`] reads the stored events of
//! one chain and reports every message on it that is not an event.

use async_nats::jetstream::consumer::{pull, Consumer, DeliverPolicy};
use async_nats::jetstream::Message;
use futures::StreamExt as _;

use super::error::AuditError;
use super::log::AuditLog;
use pinnacle_protocol::codec::Encoding;
use pinnacle_protocol::model::AuditEvent;
use pinnacle_protocol::subjects;

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

impl UserTrail {
    /// Adds `message`: its event, or its sequence when it does not decode as one.
    fn add(&mut self, message: &Message) -> Result<(), AuditError> {
        let info = message
            .info()
            .map_err(|e| AuditError::read("reading a message's sequence", Opaque(e.to_string())))?;
        let seq = info.stream_sequence;
        match Encoding::MsgPack.decode::<AuditEvent>(&message.payload) {
            Ok(event) => self.events.push(StoredEvent { seq, event }),
            Err(error) => {
                tracing::warn!(seq, subject = %message.subject, %error, "audit message does not decode as an event");
                self.undecodable.push(seq);
            }
        }
        Ok(())
    }
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
        let consumer = self.user_consumer(user_id, after).await?;
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
            out.add(&message)?;
        }
        if !out.undecodable.is_empty() {
            tracing::warn!(
                count = out.undecodable.len(),
                "audit trail page holds messages that are not events"
            );
        }
        Ok(out)
    }

    /// An ordered consumer of `user_id`'s chain from the sequence after `after`.
    async fn user_consumer(
        &self,
        user_id: &str,
        after: u64,
    ) -> Result<Consumer<pull::OrderedConfig>, AuditError> {
        let stream = self
            .js()
            .get_stream(subjects::AUDIT_STREAM)
            .await
            .map_err(|e| AuditError::read("looking up the stream", e))?;
        stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subjects::audit_credential(user_id),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after.saturating_add(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| AuditError::read("creating a consumer", e))
    }
}

/// A client error that is only text (its type is not `'static` or not an `Error`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Opaque(String);
