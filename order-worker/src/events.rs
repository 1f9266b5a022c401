//! Order lifecycle events: every state change is published to `events.orders.<user_id>` and
//! stored in the `ORDER_EVENTS` stream, so a client can replay what it missed.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use pinnacle_common::codec::Encoding;
use pinnacle_common::entities::orders;
use pinnacle_common::model::{OrderEvent, OrderStatus};
use pinnacle_common::subjects::{self, headers};
use pinnacle_common::telemetry;

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

/// Publishes one event and waits for the stream's ack, retrying briefly.
///
/// The database is the source of truth; a lost event is logged loudly, never silently.
pub async fn publish(
    js: &jetstream::Context,
    previous: Option<OrderStatus>,
    order: &orders::Model,
) {
    let event = OrderEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        ts_ms: order.updated_at.timestamp_millis(),
        previous_status: previous,
        order: store::view(order),
    };
    let Ok(payload) = Encoding::MsgPack.encode(&event) else {
        tracing::error!(order_id = %order.id, "order event could not be encoded");
        return;
    };
    let subject = subjects::order_events(&order.user_id);
    for attempt in 1..=PUBLISH_ATTEMPTS {
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::NATS_MSG_ID, event.event_id.as_str());
        hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
        telemetry::inject_context(&mut hdrs);
        let stored = match js
            .publish_with_headers(subject.clone(), hdrs, payload.clone())
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => return,
            Err(error) if attempt == PUBLISH_ATTEMPTS => {
                tracing::error!(order_id = %order.id, %error, "order event lost after retries");
            }
            Err(error) => {
                tracing::warn!(order_id = %order.id, %error, attempt, "order event publish failed");
            }
        }
    }
}
