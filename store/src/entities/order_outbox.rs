//! `order_outbox`: order lifecycle events written in the same transaction as the state
//! change they describe, waiting for the relay to store them in `ORDER_EVENTS`.

use sea_orm::entity::prelude::*;

/// One event not yet acknowledged by JetStream.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "order_outbox")]
pub struct Model {
    /// Insertion order; per order it is the order of the transitions.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The event's UUIDv7, sent as `Nats-Msg-Id` so JetStream stores it once.
    pub event_id: String,
    /// The order it belongs to; the relay keeps one event per order in flight.
    pub order_id: String,
    /// `events.orders.<user_id>`.
    pub subject: String,
    /// The encoded `OrderEvent` (MessagePack).
    pub payload: Vec<u8>,
    /// The relay batch that is publishing it, if any.
    pub claimed_by: Option<String>,
    /// Until when that claim holds, ms since the epoch.
    pub claimed_until_ms: Option<i64>,
    /// When the transition was committed, ms since the epoch.
    pub created_at_ms: i64,
    /// The W3C `traceparent` of the span that made the transition (the order request's,
    /// a traced tick's), sent as the event's `traceparent` header; `None` without one.
    pub traceparent: Option<String>,
}

/// Relations: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
