//! Order lifecycle events: every state change is published to `events.orders.<user_id>` and
//! stored in the `ORDER_EVENTS` stream, so a client can replay what it missed. The database
//! is the source of truth; an event that cannot be stored after retries is logged loudly.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use pinnacle_common::codec::Encoding;
use pinnacle_common::entities::orders;
use pinnacle_common::model::{OrderEvent, OrderStatus};
use pinnacle_common::subjects::{self, headers};

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use async_nats::jetstream::context::{PublishAckFuture, PublishError};

use crate::store;

/// How often a failed event publish is retried before it is logged as lost.
const PUBLISH_ATTEMPTS: usize = 3;

/// The stream definition: file storage, a week of history, de-duplicated by event id.
pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: subjects::ORDER_EVENTS_STREAM.to_string(),
        description: Some("Pinnacle order lifecycle events, per user".into()),
        subjects: vec![subjects::ORDER_EVENTS_ALL.to_string()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Creates the stream if it does not exist.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<(), String> {
    js.get_or_create_stream(stream_config(1))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Messages to the pump.
#[derive(Debug)]
enum Pump {
    /// Publish this event on this subject.
    Event(String, Box<OrderEvent>),
    /// Finish everything queued, wait for every ack, then answer.
    Flush(oneshot::Sender<()>),
}

/// Publishes lifecycle events off the request path, in order, waiting for every ack.
///
/// Handlers queue events and move on; one task publishes them in the order they were
/// queued (so a subscriber sees an order's states in sequence), keeps up to
/// [`MAX_IN_FLIGHT`] acks outstanding, and re-publishes an event whose ack failed (the
/// stream de-duplicates by event id). [`OrderEvents::flush`] drains it at shutdown.
#[derive(Debug, Clone)]
pub struct OrderEvents {
    /// Queue to the pump task.
    tx: mpsc::Sender<Pump>,
}

/// Acks awaited concurrently by the pump.
pub const MAX_IN_FLIGHT: usize = 256;

impl OrderEvents {
    /// Starts the pump on `js`.
    pub fn start(js: jetstream::Context) -> Self {
        let (tx, rx) = mpsc::channel(64 * 1024);
        tokio::spawn(pump(js, rx));
        Self { tx }
    }

    /// Queues the event for `order`'s current state (`previous` is the state it left).
    pub async fn publish(&self, previous: Option<OrderStatus>, order: &orders::Model) {
        let event = OrderEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            ts_ms: order.updated_at.timestamp_millis(),
            previous_status: previous,
            order: store::view(order),
        };
        let subject = subjects::order_events(&order.user_id);
        if self
            .tx
            .send(Pump::Event(subject, Box::new(event)))
            .await
            .is_err()
        {
            tracing::error!(order_id = %order.id, "order event lost: the event pump has stopped");
        }
    }

    /// Waits until every queued event has been stored (or given up on).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Pump::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn send(
    js: &jetstream::Context,
    subject: &str,
    event: &OrderEvent,
) -> Result<PublishAckFuture, String> {
    let payload = Encoding::MsgPack.encode(event).map_err(|e| e.to_string())?;
    let mut hdrs = HeaderMap::new();
    hdrs.insert(headers::NATS_MSG_ID, event.event_id.as_str());
    hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
    js.publish_with_headers(subject.to_string(), hdrs, payload)
        .await
        .map_err(|e| e.to_string())
}

/// Re-publishes one event until it is stored or the attempts run out.
async fn retry(js: &jetstream::Context, subject: &str, event: &OrderEvent) {
    for attempt in 2..=PUBLISH_ATTEMPTS {
        let stored = match send(js, subject, event).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => return,
            Err(error) if attempt == PUBLISH_ATTEMPTS => {
                tracing::error!(order_id = %event.order.order_id, %error, "order event lost after retries");
            }
            Err(error) => {
                tracing::warn!(order_id = %event.order.order_id, %error, attempt, "order event publish failed");
                tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
            }
        }
    }
}

/// An event, its subject, and how its ack went.
type Acked = (String, Box<OrderEvent>, Result<(), PublishError>);

async fn pump(js: jetstream::Context, mut rx: mpsc::Receiver<Pump>) {
    let mut in_flight: FuturesOrdered<BoxFuture<'static, Acked>> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some((subject, event, result)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(error) = result {
                    tracing::warn!(order_id = %event.order.order_id, %error, "order event ack failed; retrying");
                    retry(&js, &subject, &event).await;
                }
            }
            message = rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                match message {
                    Some(Pump::Event(subject, event)) => match send(&js, &subject, &event).await {
                        Ok(ack) => in_flight.push_back(async move {
                            let result = ack.await.map(|_| ());
                            (subject, event, result)
                        }.boxed()),
                        Err(error) => {
                            tracing::warn!(order_id = %event.order.order_id, %error, "order event publish failed; retrying");
                            retry(&js, &subject, &event).await;
                        }
                    },
                    Some(Pump::Flush(done)) => {
                        while let Some((subject, event, result)) = in_flight.next().await {
                            if result.is_err() {
                                retry(&js, &subject, &event).await;
                            }
                        }
                        let _ = done.send(());
                    }
                    None => break,
                }
            }
        }
    }
}
