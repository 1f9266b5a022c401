//! The [`OrderStore`] trait and the values it takes and returns.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pinnacle_common::broker::{BrokerOutcome, OrderTerms};
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{OrderRequest, OrderStatus};
use sea_orm::DbErr;

use crate::engine::row::CorruptOrder;

/// Where orders live. Errors are the database's ([`DbErr`]): a store that cannot answer
/// fails the request (`INTERNAL`), it never guesses.
#[async_trait]
pub trait OrderStore: Send + Sync + Debug {
    /// A user's order by client order id.
    async fn find(
        &self,
        user_id: &str,
        client_order_id: &str,
    ) -> Result<Option<orders::Model>, DbErr>;

    /// An order by Pinnacle's id.
    async fn get(&self, order_id: &str) -> Result<Option<orders::Model>, DbErr>;

    /// The order `account_id`'s broker knows as `broker_order_id`.
    async fn at_broker(
        &self,
        account_id: &str,
        broker_order_id: &str,
    ) -> Result<Option<orders::Model>, DbErr>;

    /// The orders `query` selects.
    async fn list(&self, query: OrderQuery<'_>) -> Result<Vec<orders::Model>, DbErr>;

    /// Inserts `order`, already `SUBMITTED` and leased, with its `NEW` and `SUBMITTED`
    /// events, in one commit; or returns the order that already holds its client order id.
    /// The row exists before the broker is called, so a crash after this point leaves an
    /// order that reconciliation asks the broker about once the lease has expired, never
    /// one that is silently re-sent.
    async fn insert_new(&self, order: NewOrder<'_>) -> Result<Inserted, DbErr>;

    /// Moves `order` to `to`, if the state machine allows it, nobody else moved it first
    /// (its status and fill count are still as `order` shows them) and `ownership` allows
    /// it; the order's event and its effect on the paper books are
    /// written in the same transaction. Entering an in-flight state takes the lease given
    /// by [`Ownership::Acquire`]; leaving one releases it.
    async fn transition(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, TransitionError>;

    /// Takes an abandoned in-flight or `UNKNOWN` order for reconciliation: the lease passes
    /// to `owner` until `until_ms` only if the order is still exactly as `order` shows it
    /// (status and lease), so of several reconcilers exactly one wins, and never while a
    /// live lease holder could still call the broker (the caller checked
    /// [`crate::engine::lease::is_abandoned`]).
    async fn take(
        &self,
        order: &orders::Model,
        owner: &str,
        until_ms: i64,
    ) -> Result<Option<orders::Model>, DbErr>;

    /// Extends `owner`'s lease on an order to `until_ms`; `false` when `owner` no longer
    /// holds it.
    async fn renew(&self, order_id: &str, owner: &str, until_ms: i64) -> Result<bool, DbErr>;

    /// Records the broker's id on an order settled as `REJECTED` / `NOT_AT_BROKER` that the
    /// broker reported after all (its state stays final); `true` only for the call that
    /// recorded it, so the finding is reported once.
    async fn found_at_broker(&self, order_id: &str, broker_order_id: &str) -> Result<bool, DbErr>;
}

/// A new order for [`OrderStore::insert_new`].
#[derive(Debug, Clone, Copy)]
pub struct NewOrder<'a> {
    /// Pinnacle's id for it.
    pub order_id: &'a str,
    /// Whose it is.
    pub user_id: &'a str,
    /// The broker account it goes to.
    pub broker_account_id: &'a str,
    /// What was asked.
    pub request: &'a OrderRequest,
    /// The lease token of the engine that will send it.
    pub owner: &'a str,
    /// Until when that lease holds, ms since the epoch.
    pub lease_until_ms: i64,
}

/// Which orders [`OrderStore::list`] returns.
#[derive(Debug, Clone, Copy)]
pub enum OrderQuery<'a> {
    /// A user's, newest first: at most `limit`, and only those in `statuses` if given.
    OfUser {
        /// Whose.
        user_id: &'a str,
        /// Only these states.
        statuses: Option<&'a [OrderStatus]>,
        /// At most this many.
        limit: u64,
    },
    /// Every order in one of `statuses`, of one broker account if given (reconciliation,
    /// the order-update follower).
    InStates {
        /// Only these states.
        statuses: &'a [OrderStatus],
        /// Only this account's.
        account_id: Option<&'a str>,
    },
    /// One broker account's orders settled as `REJECTED` / `NOT_AT_BROKER` since a time
    /// (to recognise one the broker reports afterwards).
    NotAtBrokerSince {
        /// The account.
        account_id: &'a str,
        /// Settled at or after this.
        since: DateTime<Utc>,
    },
    /// Working (`OPEN`, `PARTIALLY_FILLED`) paper orders, for the matcher's book.
    RestingPaper,
    /// `INTRADAY` orders changed since `since`, for the square-off.
    IntradaySince(DateTime<Utc>),
}

/// Who changes an order, as far as its lease is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership<'a> {
    /// Anyone: a fill from the tick stream or the broker's update stream. The status
    /// compare-and-set alone decides.
    Any,
    /// The lease holder settling the order: the change applies only while `owner` still
    /// holds it.
    Held(&'a str),
    /// A change into an in-flight state, which `owner` holds until `until_ms`.
    Acquire {
        /// The lease token.
        owner: &'a str,
        /// Ms since the epoch.
        until_ms: i64,
    },
}

/// The order already exists: the stored row, for replay.
#[derive(Debug)]
pub enum Inserted {
    /// This call created it and must send it to the broker.
    Created(orders::Model),
    /// Another attempt created it first.
    Existing(orders::Model),
}

/// A state change to apply, with the fields that change with it.
#[derive(Debug, Default, Clone)]
pub struct Patch {
    /// The broker's order id.
    pub broker_order_id: Option<String>,
    /// The broker's own unique id of the order.
    pub broker_unique_id: Option<String>,
    /// Units filled.
    pub filled_quantity: Option<i64>,
    /// Average fill price, paise.
    pub average_price: Option<i64>,
    /// New ordered quantity (modify).
    pub quantity: Option<i64>,
    /// New limit price (modify).
    pub price: Option<i64>,
    /// New trigger price (modify).
    pub trigger_price: Option<i64>,
    /// A rejection's code and reason.
    pub rejection: Option<ErrorBody>,
    /// The exact value, paise, of the units this change fills, where the caller knows it
    /// (the paper broker fills a part at one tick's price). The store adds it to the
    /// order's `filled_value` and sets the average price from that total, rounded down
    /// once (`average_price` is then ignored); the paper books and the trade book record
    /// it. `None`: the order's value is unknown from then on and the broker's average
    /// stands.
    pub fill_value: Option<i64>,
}

impl Patch {
    /// The fields a broker outcome sets; a rejection is `BROKER_REJECTED` with the broker's
    /// reason, where it gave one.
    pub fn from_outcome(outcome: &BrokerOutcome) -> Self {
        let rejection = (outcome.status == OrderStatus::Rejected).then(|| {
            let reason = match &outcome.reason {
                Some(text) => format!("the broker rejected the order: {text}"),
                None => "the broker rejected the order".to_string(),
            };
            ErrorBody::new(ErrorCode::BrokerRejected, reason)
        });
        Self {
            broker_order_id: Some(outcome.broker_order_id.clone()),
            broker_unique_id: outcome.broker_unique_id.clone(),
            filled_quantity: Some(outcome.filled_quantity),
            average_price: outcome.average_price,
            fill_value: outcome.fill_value,
            rejection,
            ..Self::default()
        }
    }

    /// The units `order` has filled once this patch is applied: a fill is never undone, so
    /// a patch that reports fewer leaves the recorded ones.
    pub fn filled_after(&self, order: &orders::Model) -> i64 {
        self.filled_quantity
            .map_or(order.filled_quantity, |f| f.max(order.filled_quantity))
    }

    /// Also sets the terms the broker holds the order on, where `terms` states them.
    pub fn with_terms(self, terms: OrderTerms) -> Self {
        Self {
            quantity: terms.quantity,
            price: terms.price,
            trigger_price: terms.trigger_price,
            ..self
        }
    }
}

/// A transition could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The state machine does not allow it.
    #[error("an order cannot go from {from} to {to}")]
    Illegal {
        /// Current state.
        from: OrderStatus,
        /// Requested state.
        to: OrderStatus,
    },
    /// Another writer changed the order first (compare-and-set lost).
    #[error("the order changed concurrently")]
    Conflict,
    /// The stored order is corrupt.
    #[error(transparent)]
    Corrupt(#[from] CorruptOrder),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}
