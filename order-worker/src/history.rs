//! The `events` verb: one page of a user's order events, read from `ORDER_EVENTS` for them.
//!
//! Traders may not create JetStream consumers (nats/README.md): nats-server does not check
//! a push consumer's deliver subject against its creator's publish permissions, so a
//! trader's consumer could deliver stored events onto any subject, the audit trail's and
//! other traders' ticks among them. The worker reads for them instead, with what the
//! trader cannot choose: the filter is always `events.orders.<the token's user>`, and the
//! messages come to the worker's own inbox.
//!
//! Each page is one short-lived pull consumer: created at the page's start (a stream
//! sequence or a time), drained of at most `limit` messages without waiting for new ones,
//! then deleted, also when the page is cut off (by [`PAGE_TIMEOUT`]; a caller that gives up
//! does not cut it off: the page runs in a task of its own, which holds the page's permit
//! until its consumer is deleted, after the answer).
//! It is in memory, on one replica, acknowledges nothing and removes itself after
//! [`INACTIVE`] should the delete be lost. At most [`PAGES_IN_FLIGHT`] pages run at once
//! in a worker, [`PAGES_IN_FLIGHT_PER_USER`] of them one user's: a flood of pages can
//! neither take the permits orders need, nor fill the stream's consumer limit (1,000 by
//! default) that every page and every operator's consumer share, nor keep other traders
//! from their pages. A client resumes from the `last_sequence` it was given, on any worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, Message};
use futures::StreamExt as _;
use pinnacle_common::codec::Encoding;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{EventPage, EventsRequest, EventsStart, OrderEvent, StoredEvent};
use pinnacle_common::shares::Shares;
use pinnacle_common::subjects::{self, headers};
use pinnacle_common::telemetry;
use pinnacle_common::throttle::Throttle;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

/// How long one page may take, from creating its first consumer to its last message.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server keeps a page's consumer that nobody deleted.
pub const INACTIVE: Duration = Duration::from_secs(30);
/// Pages one worker reads at once; one more is refused `EVENTS_UNAVAILABLE` at once.
pub const PAGES_IN_FLIGHT: usize = 8;
/// Of those, the pages one user may have in flight, so that one trader's flood leaves the
/// rest to everyone else.
pub const PAGES_IN_FLIGHT_PER_USER: usize = 2;

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
enum HistoryError {
    #[error("opening the event stream: {0}")]
    Consumer(#[from] async_nats::jetstream::stream::ConsumerError),
    #[error("reading the event stream: {0}")]
    Batch(#[from] async_nats::jetstream::consumer::pull::BatchError),
    #[error("reading the event stream: {0}")]
    Message(#[from] async_nats::Error),
    #[error("reading the event stream's state: {0}")]
    Stream(#[from] async_nats::jetstream::context::GetStreamError),
    #[error("the event stream did not answer within {PAGE_TIMEOUT:?}")]
    Timeout,
    #[error("the page's task ended: {0}")]
    Task(String),
    #[error("a message without JetStream metadata: {0}")]
    Metadata(String),
}

/// Reads pages of order events for the `events` verb: one per worker.
#[derive(Debug)]
pub struct History {
    /// JetStream on the worker's main connection.
    js: jetstream::Context,
    /// One permit a page in flight.
    in_flight: Arc<Semaphore>,
    /// Each user's pages in flight.
    per_user: Shares,
    /// Pages that could not be read are warned about at most once a minute: while
    /// JetStream is down, every trader's page fails.
    failures: Throttle,
}

impl History {
    /// Pages read through `js`.
    pub fn new(js: jetstream::Context) -> Self {
        Self {
            js,
            in_flight: Arc::new(Semaphore::new(PAGES_IN_FLIGHT)),
            per_user: Shares::default(),
            failures: Throttle::new(Duration::from_secs(60)),
        }
    }

    /// One page of `user_id`'s order events, as `request` asks. A request out of range is
    /// `INVALID_REQUEST`; a stream that cannot be read in time, or a worker already reading
    /// [`PAGES_IN_FLIGHT`] pages, or [`PAGES_IN_FLIGHT_PER_USER`] of this user's, is
    /// `EVENTS_UNAVAILABLE`.
    pub async fn page(
        &self,
        user_id: &str,
        request: &EventsRequest,
    ) -> Result<EventPage, ErrorBody> {
        let (start, limit) = request.validate()?;
        let unavailable = |why: &str| {
            ErrorBody::new(
                ErrorCode::EventsUnavailable,
                format!("the order event stream could not be read ({why}); retry later"),
            )
        };
        let Ok(users_share) = self.per_user.take_below(user_id, PAGES_IN_FLIGHT_PER_USER) else {
            return Err(unavailable("too many of your pages in flight"));
        };
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            return Err(unavailable("too many pages in flight"));
        };
        let span = tracing::info_span!(
            "order.events.read",
            otel.kind = "client",
            messaging.system = "nats",
            messaging.operation.type = "receive",
            messaging.operation.name = "fetch",
            messaging.destination.name = subjects::ORDER_EVENTS_STREAM,
            messaging.batch.message_count = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        // In a task of its own, holding the permit until its consumer is deleted: a
        // caller that gives up midway (its deadline) cannot cut a page off between creating
        // its consumer and deleting it, and the page is answered before the delete.
        let (js, user_id) = (self.js.clone(), user_id.to_string());
        let (answer, answered) = tokio::sync::oneshot::channel();
        let task = async move {
            let _permits = (permit, users_share);
            let mut made = None;
            let page =
                tokio::time::timeout(PAGE_TIMEOUT, read(&js, &user_id, start, limit, &mut made));
            let _ = answer.send(page.await.unwrap_or(Err(HistoryError::Timeout)));
            if let Some(name) = made {
                delete(&js, &name).await;
            }
        };
        tokio::spawn(task.instrument(span.clone()));
        let outcome = answered.await;
        match outcome.unwrap_or_else(|e| Err(HistoryError::Task(e.to_string()))) {
            Ok(page) => {
                span.record("messaging.batch.message_count", page.events.len());
                Ok(page)
            }
            Err(error) => {
                let _entered = span.enter();
                telemetry::record_failure(&span, ErrorCode::EventsUnavailable.as_str());
                match self.failures.next(Instant::now()) {
                    Some(more) => tracing::warn!(
                        %error,
                        more,
                        "could not read a page of order events ({more} more since the last warning)"
                    ),
                    None => tracing::debug!(%error, "could not read a page of order events"),
                }
                Err(unavailable("JetStream did not answer"))
            }
        }
    }
}

/// The page from `start`, in the stream as it is now (one stream info request first).
/// When `start` counts in another stream than this one (it names another `stream`, or,
/// naming none, lies beyond this stream's last sequence), the stream was re-created since
/// (its sequences start again at 1): the page is then read from this stream's first event
/// and says so (`rewound`).
async fn read(
    js: &jetstream::Context,
    user_id: &str,
    start: EventsStart,
    limit: u32,
    made: &mut Option<String>,
) -> Result<EventPage, HistoryError> {
    let stream = js.get_stream(subjects::ORDER_EVENTS_STREAM).await?;
    let info = stream.cached_info();
    let current = stream_id(info.created);
    let rewound = match &start {
        EventsStart::Since(_) | EventsStart::After(0, None) => false,
        EventsStart::After(_, Some(named)) => *named != current,
        EventsStart::After(after, None) => *after > info.state.last_sequence,
    };
    let start = if rewound {
        EventsStart::After(0, None)
    } else {
        start
    };
    let mut page = fetch(js, user_id, start, limit, made, current).await?;
    page.rewound = rewound;
    Ok(page)
}

/// What names one incarnation of the stream in a page (`EventPage::stream`): its creation
/// time, in nanoseconds since the Unix epoch. A re-created stream has another.
fn stream_id(created: time::OffsetDateTime) -> String {
    created.unix_timestamp_nanos().to_string()
}

/// Deletes the consumer `name`; one left behind expires after [`INACTIVE`].
async fn delete(js: &jetstream::Context, name: &str) {
    let deleted = js.delete_consumer_from_stream(name, subjects::ORDER_EVENTS_STREAM);
    match tokio::time::timeout(PAGE_TIMEOUT, deleted).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::debug!(%error, consumer = %name, "page consumer left to expire"),
        Err(_) => tracing::debug!(consumer = %name, "page consumer left to expire"),
    }
}

/// One page of `stream` through a consumer of its own, created at `start`. Its name goes
/// into `made` before it is created, for the caller to delete whatever became of the page
/// (one the server makes after the page was cut off expires by itself).
async fn fetch(
    js: &jetstream::Context,
    user_id: &str,
    start: EventsStart,
    limit: u32,
    made: &mut Option<String>,
    stream: String,
) -> Result<EventPage, HistoryError> {
    let name = format!("history-{}", uuid::Uuid::new_v4().simple());
    *made = Some(name.clone());
    let deliver_policy = match start {
        EventsStart::After(sequence, _) => DeliverPolicy::ByStartSequence {
            start_sequence: sequence.saturating_add(1),
        },
        EventsStart::Since(ms) => DeliverPolicy::ByStartTime {
            start_time: start_time(ms),
        },
    };
    let consumer = js
        .create_consumer_on_stream(
            pull::Config {
                name: Some(name),
                filter_subject: subjects::order_events(user_id),
                deliver_policy,
                ack_policy: AckPolicy::None,
                inactive_threshold: INACTIVE,
                num_replicas: 1,
                memory_storage: true,
                ..Default::default()
            },
            subjects::ORDER_EVENTS_STREAM,
        )
        .await?;
    let info = consumer.cached_info();
    // Where the consumer starts, less one: the request's `after`, or for a start time the
    // sequence before the first event at or after it.
    let mut page = EventPage {
        events: Vec::new(),
        last_sequence: info.delivered.stream_sequence,
        pending: info.num_pending,
        stream,
        rewound: false,
    };
    drain(&consumer, limit, &mut page).await?;
    Ok(page)
}

/// Takes up to `limit` of the events the consumer had pending when it was created into
/// `page`, never waiting for new ones.
async fn drain(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    limit: u32,
    page: &mut EventPage,
) -> Result<(), HistoryError> {
    let wanted = page.pending.min(u64::from(limit));
    if wanted == 0 {
        return Ok(());
    }
    let mut messages = consumer
        .batch()
        .max_messages(usize::try_from(wanted).unwrap_or(usize::MAX))
        .expires(PAGE_TIMEOUT)
        .messages()
        .await?;
    let mut taken = 0;
    while let Some(message) = messages.next().await {
        let message = message?;
        taken += 1;
        let info = message
            .info()
            .map_err(|e| HistoryError::Metadata(e.to_string()))?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        page.last_sequence = sequence;
        page.pending = pending;
        match stored_event(sequence, &message) {
            Some(event) => page.events.push(event),
            // Only services publish here (nats/auth.conf); anything else is skipped, not
            // handed on, and the page still moves past it.
            None => tracing::warn!(sequence, "an undecodable message in ORDER_EVENTS"),
        }
        if pending == 0 || taken >= wanted {
            break;
        }
    }
    Ok(())
}

/// The event in `message`, with its sequence and trace context.
fn stored_event(sequence: u64, message: &Message) -> Option<StoredEvent> {
    let event: OrderEvent = Encoding::MsgPack.decode(&message.payload).ok()?;
    let traceparent = message
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::TRACEPARENT))
        .map(|value| value.as_str().to_string());
    Some(StoredEvent {
        sequence,
        traceparent,
        event,
    })
}

/// `ms` since the Unix epoch (checked by [`EventsRequest::validate`] to lie within what
/// JetStream's nanosecond clock holds) as the time async-nats takes.
fn start_time(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
