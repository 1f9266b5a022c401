//! Reading stored audit messages into a [`Verifier`]: the one loop that both
//! `pinnacle audit verify` and the user API's `GET /v1/users/{id}/audit/verify` run.
//!
//! [`StreamReader::open`] creates an ordered consumer on the chosen subjects from the
//! stream's first message; [`StreamReader::read_into`] feeds every pending message (with
//! the time JetStream stored it) to the verifier, oldest first, and ends when the last
//! pending message is read. A stream that goes silent for longer than `idle` before then is
//! reported as [`ReadError::Stalled`]: a verification must never pass on a partial read.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, Consumer, DeliverPolicy};
use async_nats::jetstream::{self, stream::Stream};
use futures::StreamExt as _;

use super::verify::Verifier;

/// Why the stream could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The consumer could not be created.
    #[error(transparent)]
    Consumer(#[from] jetstream::stream::ConsumerError),
    /// The consumer's messages could not be requested.
    #[error(transparent)]
    Messages(#[from] jetstream::consumer::StreamError),
    /// A message could not be received.
    #[error(transparent)]
    Message(#[from] pull::OrderedError),
    /// A message carried no JetStream metadata (sequence, pending count, time).
    #[error("{0}")]
    Info(async_nats::Error),
    /// No message arrived for the idle time although more were pending; the last stream
    /// sequence read is given (0: none).
    #[error("audit stream stalled after seq {0}")]
    Stalled(u64),
}

/// An ordered consumer on the audit subjects to verify, from the stream's first message.
#[derive(Debug)]
pub struct StreamReader {
    /// The consumer; its cached info holds the message count when it was created.
    consumer: Consumer<pull::OrderedConfig>,
}

impl StreamReader {
    /// Opens a reader of every message of `stream` on `filter_subjects`.
    pub async fn open(stream: &Stream, filter_subjects: Vec<String>) -> Result<Self, ReadError> {
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subjects,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        Ok(Self { consumer })
    }

    /// How many messages there are to read.
    pub fn total(&self) -> u64 {
        self.consumer.cached_info().num_pending
    }

    /// Feeds every message to `verifier`, oldest first, calling `after_each` with the
    /// number still pending after each one; ends with the message after which none is.
    pub async fn read_into(
        self,
        verifier: &mut Verifier<'_>,
        idle: Duration,
        mut after_each: impl FnMut(u64),
    ) -> Result<(), ReadError> {
        if self.total() == 0 {
            return Ok(());
        }
        let mut messages = self.consumer.messages().await?;
        let mut last = 0;
        loop {
            let Ok(Some(message)) = tokio::time::timeout(idle, messages.next()).await else {
                return Err(ReadError::Stalled(last));
            };
            let message = message?;
            let info = message.info().map_err(ReadError::Info)?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            let stored_ms = i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).ok();
            verifier.push_stored(
                seq,
                message.subject.as_str(),
                message.headers.as_ref(),
                &message.payload,
                stored_ms,
            );
            last = seq;
            after_each(pending);
            if pending == 0 {
                return Ok(());
            }
        }
    }
}
