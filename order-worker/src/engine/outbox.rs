//! The transactional outbox's write side: every state change of an order writes its
//! lifecycle event into `order_outbox` in the same transaction as the order row
//! ([`record`], called by [`super::store`]), so a committed change always has its event,
//! whatever fails afterwards. Publishing those rows (the relay, [`crate::events`]) is the
//! transport's business; the engine only rings the [`Nudge`] after a commit.

use std::sync::Arc;

use pinnacle_common::codec::Encoding;
use pinnacle_common::entities::{order_outbox, orders};
use pinnacle_common::model::{OrderEvent, OrderStatus};
use pinnacle_common::subjects;
use pinnacle_common::telemetry;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Set};
use tokio::sync::Notify;

use super::row;

/// Tells whoever publishes the outbox (the relay) that this process committed events, so
/// it need not wait for its next poll. Cheap to clone; every clone rings the same bell.
#[derive(Debug, Clone, Default)]
pub struct Nudge(Arc<Notify>);

impl Nudge {
    /// Events were committed.
    pub fn ring(&self) {
        self.0.notify_one();
    }

    /// Waits for the next [`Nudge::ring`] (or one that came while nobody waited).
    pub async fn rung(&self) {
        self.0.notified().await;
    }
}

/// Writes the event for `order`'s current state (`previous` is the state it left) into the
/// outbox, inside the caller's transaction.
pub async fn record(
    txn: &impl ConnectionTrait,
    previous: Option<OrderStatus>,
    order: &orders::Model,
) -> Result<(), DbErr> {
    record_all(txn, &[(previous, order)]).await
}

/// [`record`] for several states of one or more orders, oldest first, in one statement.
pub async fn record_all(
    txn: &impl ConnectionTrait,
    states: &[(Option<OrderStatus>, &orders::Model)],
) -> Result<(), DbErr> {
    let traceparent = telemetry::current_traceparent();
    let now_ms = row::now_ms();
    let mut rows = Vec::with_capacity(states.len());
    for &(previous, order) in states {
        let event = OrderEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            ts_ms: order.updated_at.timestamp_millis(),
            previous_status: previous,
            order: row::view(order)?,
        };
        let payload = Encoding::MsgPack
            .encode(&event)
            .map_err(|e| DbErr::Custom(format!("encoding an order event: {e}")))?;
        rows.push(order_outbox::ActiveModel {
            event_id: Set(event.event_id),
            order_id: Set(order.id.clone()),
            subject: Set(subjects::order_events(&order.user_id)),
            payload: Set(payload.to_vec()),
            claimed_by: Set(None),
            claimed_until_ms: Set(None),
            created_at_ms: Set(now_ms),
            traceparent: Set(traceparent.clone()),
            ..Default::default()
        });
    }
    order_outbox::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}
