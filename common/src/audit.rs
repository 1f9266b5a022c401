//! The audit stream and the publisher that waits for JetStream's ack.
//!
//! "Audit before access": callers record an event with [`AuditLog::record`] and touch the
//! credentials only after it returns `Ok`, which means JetStream has stored the event.
//! Any failure (no stream, no server, a timeout) is an [`AuditError`], and the caller
//! refuses the request: auditing fails closed.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;

use crate::codec::Encoding;
use crate::model::AuditEvent;
use crate::subjects::{self, headers};
use crate::telemetry;

/// The audit event could not be durably stored.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Publishing failed: no stream, no server, or a refused message.
    #[error("audit stream refused the event: {0}")]
    Publish(String),
    /// No ack arrived in time.
    #[error("audit stream did not acknowledge within {0:?}")]
    Timeout(Duration),
    /// The event could not be encoded.
    #[error("audit event could not be encoded: {0}")]
    Encode(#[from] crate::codec::CodecError),
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

/// Creates the audit stream if it does not exist; leaves an existing one untouched.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<stream::Stream, AuditError> {
    js.get_or_create_stream(stream_config(1))
        .await
        .map_err(|e| AuditError::Publish(e.to_string()))
}

/// Publishes audit events and waits for them to be stored.
#[derive(Clone, Debug)]
pub struct AuditLog {
    /// JetStream context on the service's connection.
    js: jetstream::Context,
    /// How long to wait for the ack before failing closed.
    timeout: Duration,
}

impl AuditLog {
    /// An audit log over `client`, failing closed after `timeout`.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        Self { js, timeout }
    }

    /// Stores `event` on `audit.credential.<user_id>`; returns the stream sequence.
    #[tracing::instrument(name = "audit.publish", skip_all, fields(otel.kind = "producer", messaging.system = "nats", messaging.operation = "publish", messaging.destination.name = %subjects::audit_credential(&event.user_id)))]
    pub async fn record(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        let payload = Encoding::MsgPack.encode(event)?;
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::NATS_MSG_ID, event.event_id.as_str());
        hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
        telemetry::inject_context(&mut hdrs);
        let subject = subjects::audit_credential(&event.user_id);
        let publish = async {
            let ack = self
                .js
                .publish_with_headers(subject, hdrs, payload)
                .await
                .map_err(|e| AuditError::Publish(e.to_string()))?;
            ack.await.map_err(|e| AuditError::Publish(e.to_string()))
        };
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(ack)) => Ok(ack.sequence),
            Ok(Err(e)) => Err(crate::metrics::audit_publish_failed(e)),
            Err(_) => Err(crate::metrics::audit_publish_failed(AuditError::Timeout(
                self.timeout,
            ))),
        }
    }
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
    /// Reads up to `limit` of `user_id`'s events, oldest first, from sequence `after` on.
    pub async fn read_user(
        &self,
        user_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, AuditError> {
        use async_nats::jetstream::consumer::{pull, DeliverPolicy};
        use futures::StreamExt as _;
        let failed = |e: &dyn std::fmt::Display| AuditError::Publish(e.to_string());
        let stream = self
            .js
            .get_stream(subjects::AUDIT_STREAM)
            .await
            .map_err(|e| failed(&e))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subjects::audit_credential(user_id),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after.saturating_add(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        let want = usize::try_from(consumer.cached_info().num_pending)
            .unwrap_or(usize::MAX)
            .min(limit);
        let mut out = Vec::with_capacity(want);
        if want == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
        while out.len() < want {
            let Ok(Some(Ok(message))) = tokio::time::timeout(self.timeout, messages.next()).await
            else {
                break;
            };
            let Ok(info) = message.info() else { continue };
            let seq = info.stream_sequence;
            if let Ok(event) = Encoding::MsgPack.decode::<AuditEvent>(&message.payload) {
                out.push(StoredEvent { seq, event });
            }
        }
        Ok(out)
    }
}
