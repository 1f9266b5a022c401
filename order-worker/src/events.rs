//! The outbox relay: the NATS side of the transactional outbox of order lifecycle events.
//!
//! Every state change writes its event into `order_outbox` in the same transaction as the
//! order row ([`crate::engine::outbox::record`], inside the engine), so a committed change
//! always has its event, whatever fails afterwards. The [`Relay`] then stores outbox rows in the
//! `ORDER_EVENTS` stream on `events.orders.<user_id>` and deletes each one only after
//! JetStream has acknowledged it:
//!
//! - **Exactly once in the stream.** Each event is published with `Nats-Msg-Id` = its event
//!   id, so a re-publish (after a lost ack, a crash between ack and delete, or two relays
//!   racing) is dropped by JetStream's duplicate window ([`DUPLICATE_WINDOW`]). Relays also
//!   claim rows before publishing, so normally only one publishes a row at all.
//! - **In order per order.** A relay takes an order's events only by claiming its oldest
//!   outbox row (the order's *head*) while nobody holds it; with the head it claims the
//!   order's other waiting rows, which no other relay can take (they are not heads), and
//!   publishes them one after another, each only after the one before was acknowledged.
//!   One event per order is in flight at a time, across every relay; orders go out side
//!   by side.
//! - **Through any outage.** Nothing is dropped: a failed publish releases its claim and the
//!   relay backs off (up to [`MAX_BACKOFF`]) and tries again, for as long as it takes.
//!   Rows of a worker that died are published by any other relay's poll.
//!
//! The relay exports `pinnacle_order_event_lag_seconds` (commit → acknowledged by the
//! stream, per event) and `pinnacle_order_outbox_backlog` (rows waiting, counted at most
//! every [`BACKLOG_EVERY`]).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::future::join_all;
use pinnacle_common::codec::Encoding;
use pinnacle_common::entities::order_outbox;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects::{self, headers};
use pinnacle_common::telemetry;
use pinnacle_common::writes::Writer;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};

use crate::engine::outbox::{self, claim, release, Nudge};
pub use crate::engine::outbox::{BATCH, CLAIM};

/// JetStream's de-duplication window for `ORDER_EVENTS`: a re-publish of an event within
/// this long after the first is dropped. It bounds how long a database outage between a
/// publish's ack and the outbox row's deletion may last without a duplicate in the stream.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// How often a relay looks for rows nobody announced to it (another worker's, after a crash).
pub const POLL: Duration = Duration::from_millis(250);

/// The longest a relay waits between attempts while JetStream or the database fails.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How often a relay counts the outbox for `pinnacle_order_outbox_backlog`.
pub const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// The stream definition: file storage, a week of history, de-duplicated by event id.
pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: subjects::ORDER_EVENTS_STREAM.to_string(),
        description: Some("Pinnacle order lifecycle events, per user".into()),
        subjects: vec![subjects::ORDER_EVENTS_ALL.to_string()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Why the events stream could not be set up, or a relay round stopped (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The `ORDER_EVENTS` stream could not be created or looked up.
    #[error("setting up the order events stream: {0}")]
    Stream(#[source] jetstream::context::CreateStreamError),
    /// Claiming outbox rows failed.
    #[error("claiming outbox rows: {0}")]
    Claim(#[source] DbErr),
    /// Deleting acknowledged outbox rows failed (they are published again, and dropped
    /// as duplicates by the stream).
    #[error("deleting stored outbox rows: {0}")]
    Delete(#[source] DbErr),
    /// JetStream did not take or did not acknowledge an event; `unsent` rows went back.
    #[error("{unsent} event(s) not acknowledged: {source}")]
    NotAcknowledged {
        /// Claimed rows released for the next round.
        unsent: usize,
        /// The first failure.
        #[source]
        source: jetstream::context::PublishError,
    },
}

/// Creates the stream if it does not exist.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<(), EventsError> {
    js.get_or_create_stream(stream_config(1))
        .await
        .map(|_| ())
        .map_err(EventsError::Stream)
}

/// Publishes the outbox to `ORDER_EVENTS`; see the module docs for its guarantees.
#[derive(Debug, Clone, Default)]
pub struct Relay {
    /// Wakes the relay task when this process has committed events.
    wake: Nudge,
}

impl Relay {
    /// A relay; [`Relay::run`] does the work.
    pub fn new() -> Self {
        Self::default()
    }

    /// A relay woken by `nudge` (the engine's, see [`crate::engine::Engine::outbox_nudge`]).
    pub fn woken_by(nudge: Nudge) -> Self {
        Self { wake: nudge }
    }

    /// Tells the relay that events were committed.
    pub fn nudge(&self) {
        self.wake.ring();
    }

    /// Relays until `shutdown` fires (`instance` names this worker's claims), then
    /// publishes what is left for up to `drain`.
    pub async fn run(
        &self,
        js: jetstream::Context,
        db: DatabaseConnection,
        instance: String,
        shutdown: Shutdown,
        drain: Duration,
    ) {
        let writer = Writer::new(&db);
        let mut backoff = Duration::ZERO;
        let mut counted: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.rung() => {}
                () = tokio::time::sleep(POLL.max(backoff)) => {}
            }
            backoff = match relay_all(&js, &writer, &instance).await {
                Ok(()) => Duration::ZERO,
                Err(error) => {
                    tracing::warn!(%error, "order events not yet stored; retrying");
                    (backoff * 2).clamp(Duration::from_millis(50), MAX_BACKOFF)
                }
            };
            if counted.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                counted = Some(tokio::time::Instant::now());
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = count_backlog(&db) => {}
                }
            }
        }
        let drained = tokio::time::timeout(drain, async {
            while let Err(error) = relay_all(&js, &writer, &instance).await {
                tracing::warn!(%error, "order events not yet stored at shutdown; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "order events left in the outbox at shutdown; another worker's relay will store them"
            );
        }
    }
}

/// Sets `pinnacle_order_outbox_backlog` to the number of outbox rows (left as it was when
/// the database does not answer).
async fn count_backlog(db: &DatabaseConnection) {
    use sea_orm::PaginatorTrait as _;
    match order_outbox::Entity::find().count(db).await {
        Ok(rows) => pinnacle_common::metrics::metrics()
            .order_outbox_backlog
            .set(i64::try_from(rows).unwrap_or(i64::MAX)),
        Err(error) => tracing::debug!(%error, "could not count the outbox"),
    }
}

/// Publishes batches until the outbox has no unclaimed head left: a batch of fewer than
/// [`BATCH`] orders took every free head there was (but those another relay was locking,
/// which it takes or the next poll finds), and rows committed since then rang the
/// [`Nudge`] (or are another process's, found by the next poll), so it is the last.
async fn relay_all(
    js: &jetstream::Context,
    db: &Writer,
    instance: &str,
) -> Result<(), EventsError> {
    loop {
        let claimed = claim(db, instance).await.map_err(EventsError::Claim)?;
        let batch = claimed.rows;
        if batch.is_empty() {
            return Ok(());
        }
        // Orders are independent; each order's events go out one after another, each only
        // after the one before it was acknowledged.
        let published = join_all(by_order(&batch).into_iter().map(|rows| async move {
            let mut outcomes = Vec::with_capacity(rows.len());
            for row in rows {
                let result = publish(js, row).await;
                let failed = result.is_err();
                outcomes.push((row, result));
                if failed {
                    // Nothing after a failed event goes out before it.
                    break;
                }
            }
            outcomes
        }))
        .await;
        settle(db, &batch, published.into_iter().flatten()).await?;
        if claimed.heads < BATCH {
            return Ok(());
        }
    }
}

/// Deletes the acknowledged rows of a claimed `batch` and releases the rest (the failed
/// ones and those held back behind them) for the next pass; the first failure is the error.
async fn settle<'a>(
    db: &Writer,
    batch: &[order_outbox::Model],
    published: impl Iterator<
        Item = (
            &'a order_outbox::Model,
            Result<(), jetstream::context::PublishError>,
        ),
    >,
) -> Result<(), EventsError> {
    let metrics = pinnacle_common::metrics::metrics();
    let mut acked = std::collections::HashSet::with_capacity(batch.len());
    let mut failure = None;
    for (row, result) in published {
        match result {
            Ok(()) => {
                metrics.order_event_stored(row.created_at_ms);
                acked.insert(row.id);
            }
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    let unsent: Vec<i64> = batch
        .iter()
        .map(|row| row.id)
        .filter(|id| !acked.contains(id))
        .collect();
    // The unsent rows go back first, so a failed delete does not hold them for a claim.
    if failure.is_some() {
        release(db, &unsent).await;
    }
    if !acked.is_empty() {
        outbox::remove(db, acked.iter().copied())
            .await
            .map_err(EventsError::Delete)?;
    }
    let Some(error) = failure else {
        return Ok(());
    };
    Err(EventsError::NotAcknowledged {
        unsent: unsent.len(),
        source: error,
    })
}

/// `rows` (oldest first) grouped by order, each group oldest first.
fn by_order(rows: &[order_outbox::Model]) -> Vec<Vec<&order_outbox::Model>> {
    let mut groups: Vec<Vec<&order_outbox::Model>> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for row in rows {
        match index.get(row.order_id.as_str()) {
            Some(&at) => groups[at].push(row),
            None => {
                index.insert(row.order_id.as_str(), groups.len());
                groups.push(vec![row]);
            }
        }
    }
    groups
}

/// Publishes one outbox row and waits for JetStream's ack, inside an `order.event.publish`
/// producer span that continues the trace of the transition (a root span when it had
/// none) and whose context the event carries as `traceparent`.
async fn publish(
    js: &jetstream::Context,
    row: &order_outbox::Model,
) -> Result<(), jetstream::context::PublishError> {
    let span = tracing::info_span!(
        "order.event.publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %row.subject,
        messaging.message.id = %row.event_id,
        pinnacle.order_id = %row.order_id,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    if let Some(traceparent) = &row.traceparent {
        telemetry::set_parent_from_traceparent(&span, traceparent);
    }
    let publish = async {
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::NATS_MSG_ID, row.event_id.as_str());
        hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
        telemetry::inject_context(&mut hdrs);
        let ack = js
            .publish_with_headers(
                row.subject.clone(),
                hdrs,
                Bytes::copy_from_slice(&row.payload),
            )
            .await?;
        ack.await.map(|_| ())
    };
    let published = tracing::Instrument::instrument(publish, span.clone()).await;
    if published.is_err() {
        telemetry::record_failure(&span, "NOT_ACKNOWLEDGED");
    }
    published
}
