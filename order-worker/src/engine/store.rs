//! Order persistence. The `(user_id, client_order_id)` unique key is the idempotency guard:
//! whichever worker inserts first owns the order; every other attempt reads it back. Every
//! state change is a compare-and-set through the state machine ([`transition`]), and every
//! one writes its lifecycle event to the outbox in the same transaction
//! ([`super::outbox`]), so a committed change is never without its event.
//!
//! In-flight orders (`SUBMITTED`, `PENDING_MODIFY`, `PENDING_CANCEL`) carry a lease
//! ([`Ownership`]): only its holder may settle them, and reconciliation [`take`]s one only
//! once the lease has expired (see [`super::lease`]).

use chrono::Utc;
use pinnacle_common::broker::BrokerOutcome;
use pinnacle_common::db::span as db_span;
use pinnacle_common::entities::orders;
use pinnacle_common::error::ErrorBody;
use pinnacle_common::model::{OrderRequest, OrderStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, Set, SqlErr, TransactionTrait, UpdateMany,
};
use tracing::Instrument as _;

use super::ledger;
use super::outbox;
pub use super::row::{now_ms, reply_for, status_of, view, CorruptOrder};

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

/// Finds a user's order by client order id.
pub async fn find(
    db: &impl ConnectionTrait,
    user_id: &str,
    client_order_id: &str,
) -> Result<Option<orders::Model>, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::UserId.eq(user_id))
        .filter(orders::Column::ClientOrderId.eq(client_order_id))
        .one(db)
        .instrument(db_span(db, "SELECT", "orders"))
        .await
}

/// Inserts the order, already `SUBMITTED` and leased to `owner` until `lease_until_ms`, or
/// returns the one that already holds its client order id.
///
/// `NEW → SUBMITTED` happens in this one commit, with both events in the outbox: the row
/// exists before the broker is called, so a crash after this point leaves an order that
/// reconciliation asks the broker about once the lease has expired, never one that is
/// silently re-sent.
pub async fn insert_new(
    db: &DatabaseConnection,
    order_id: &str,
    user_id: &str,
    broker_account_id: &str,
    request: &OrderRequest,
    owner: &str,
    lease_until_ms: i64,
) -> Result<Inserted, DbErr> {
    let now = Utc::now();
    let row = orders::ActiveModel {
        id: Set(order_id.to_string()),
        user_id: Set(user_id.to_string()),
        broker_account_id: Set(broker_account_id.to_string()),
        client_order_id: Set(request.client_order_id.clone()),
        exchange: Set(request.exchange.clone()),
        symbol: Set(request.symbol.clone()),
        side: Set(request.side.as_str().to_string()),
        order_type: Set(request.order_type.as_str().to_string()),
        quantity: Set(request.quantity),
        price: Set(request.price),
        trigger_price: Set(request.trigger_price),
        product: Set(request.product.as_str().to_string()),
        status: Set(OrderStatus::Submitted.as_str().to_string()),
        filled_quantity: Set(0),
        average_price: Set(None),
        broker_order_id: Set(None),
        reject_code: Set(None),
        reject_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        lease_owner: Set(Some(owner.to_string())),
        lease_until_ms: Set(Some(lease_until_ms)),
    };
    let inserted = async {
        let txn = db.begin().await?;
        let model = row.insert(&txn).await?;
        let mut new = model.clone();
        new.status = OrderStatus::New.as_str().to_string();
        outbox::record_all(&txn, &[(None, &new), (Some(OrderStatus::New), &model)]).await?;
        txn.commit().await?;
        Ok::<_, DbErr>(model)
    }
    .instrument(db_span(db, "INSERT", "orders"))
    .await;
    match inserted {
        Ok(model) => Ok(Inserted::Created(model)),
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            find(db, user_id, &request.client_order_id)
                .await?
                .map(Inserted::Existing)
                .ok_or(err)
        }
        Err(err) => Err(err),
    }
}

/// A state change to apply, with the fields that change with it.
#[derive(Debug, Default, Clone)]
pub struct Patch {
    /// The broker's order id.
    pub broker_order_id: Option<String>,
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
}

impl Patch {
    /// The fields a broker outcome sets.
    pub fn from_outcome(outcome: &BrokerOutcome) -> Self {
        Self {
            broker_order_id: Some(outcome.broker_order_id.clone()),
            filled_quantity: Some(outcome.filled_quantity),
            average_price: outcome.average_price,
            ..Self::default()
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

/// Sets what `patch` changes, both in `update` and in `next` (the row as it will be).
fn with_patch(
    mut update: UpdateMany<orders::Entity>,
    next: &mut orders::Model,
    patch: Patch,
) -> UpdateMany<orders::Entity> {
    if let Some(id) = patch.broker_order_id {
        update = update.col_expr(orders::Column::BrokerOrderId, Expr::value(id.clone()));
        next.broker_order_id = Some(id);
    }
    if let Some(filled) = patch.filled_quantity {
        update = update.col_expr(orders::Column::FilledQuantity, Expr::value(filled));
        next.filled_quantity = filled;
    }
    if let Some(price) = patch.average_price {
        update = update.col_expr(orders::Column::AveragePrice, Expr::value(price));
        next.average_price = Some(price);
    }
    if let Some(quantity) = patch.quantity {
        update = update.col_expr(orders::Column::Quantity, Expr::value(quantity));
        next.quantity = quantity;
    }
    if let Some(price) = patch.price {
        update = update.col_expr(orders::Column::Price, Expr::value(price));
        next.price = Some(price);
    }
    if let Some(trigger) = patch.trigger_price {
        update = update.col_expr(orders::Column::TriggerPrice, Expr::value(trigger));
        next.trigger_price = Some(trigger);
    }
    if let Some(error) = patch.rejection {
        update = update
            .col_expr(orders::Column::RejectCode, Expr::value(error.code.as_str()))
            .col_expr(
                orders::Column::RejectReason,
                Expr::value(error.message.clone()),
            );
        next.reject_code = Some(error.code.as_str().to_string());
        next.reject_reason = Some(error.message);
    }
    update
}

/// Moves `order` to `to`, if the state machine allows it, nobody else moved it first and
/// `ownership` allows it; the order's event goes to the outbox in the same transaction,
/// and so does its effect on the paper broker's `books` ([`ledger::apply`]: a fill moves
/// funds and positions, an end releases the order's reservation).
///
/// The update is a compare-and-set on the current status (and, for [`Ownership::Held`], on
/// the lease owner), so two workers can never both apply a transition from the same state.
/// Entering an in-flight state takes the lease given by [`Ownership::Acquire`]; leaving one
/// releases it.
pub async fn transition(
    db: &DatabaseConnection,
    books: &ledger::Books,
    order: &orders::Model,
    to: OrderStatus,
    patch: Patch,
    ownership: Ownership<'_>,
) -> Result<orders::Model, TransitionError> {
    let from = status_of(order)?;
    if !from.can_become(to) {
        return Err(TransitionError::Illegal { from, to });
    }
    let now = Utc::now();
    let mut update = orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::value(to.as_str()))
        .col_expr(orders::Column::UpdatedAt, Expr::value(now));
    let mut next = order.clone();
    next.status = to.as_str().to_string();
    next.updated_at = now;
    let (lease_owner, lease_until_ms) = match ownership {
        Ownership::Acquire { owner, until_ms } if to.is_in_flight() => {
            (Some(owner.to_string()), Some(until_ms))
        }
        _ => (None, None),
    };
    update = update
        .col_expr(orders::Column::LeaseOwner, Expr::value(lease_owner.clone()))
        .col_expr(orders::Column::LeaseUntilMs, Expr::value(lease_until_ms));
    next.lease_owner = lease_owner;
    next.lease_until_ms = lease_until_ms;
    let update = with_patch(update, &mut next, patch);
    let mut update = update
        .filter(orders::Column::Id.eq(order.id.as_str()))
        .filter(orders::Column::Status.eq(from.as_str()));
    if let Ownership::Held(owner) = ownership {
        update = update.filter(orders::Column::LeaseOwner.eq(owner));
    }
    let applied = async {
        let txn = db.begin().await?;
        let result = update.exec(&txn).await?;
        if result.rows_affected != 1 {
            return Ok(false);
        }
        ledger::apply(&txn, books, order, &next).await?;
        outbox::record(&txn, Some(from), &next).await?;
        txn.commit().await?;
        Ok::<_, DbErr>(true)
    }
    .instrument(db_span(db, "UPDATE", "orders"))
    .await?;
    if applied {
        Ok(next)
    } else {
        Err(TransitionError::Conflict)
    }
}

/// Takes an abandoned in-flight or `UNKNOWN` order for reconciliation: the lease passes to
/// `owner` until `until_ms` only if the order is still exactly as `order` shows it (status
/// and lease), so of several reconcilers exactly one wins, and never while a live lease
/// holder could still call the broker (the caller checked [`super::lease::is_abandoned`]).
pub async fn take(
    db: &impl ConnectionTrait,
    order: &orders::Model,
    owner: &str,
    until_ms: i64,
) -> Result<Option<orders::Model>, DbErr> {
    let mut update = orders::Entity::update_many()
        .col_expr(orders::Column::LeaseOwner, Expr::value(owner))
        .col_expr(orders::Column::LeaseUntilMs, Expr::value(until_ms))
        .filter(orders::Column::Id.eq(order.id.as_str()))
        .filter(orders::Column::Status.eq(order.status.as_str()));
    update = match &order.lease_owner {
        Some(previous) => update.filter(orders::Column::LeaseOwner.eq(previous.as_str())),
        None => update.filter(orders::Column::LeaseOwner.is_null()),
    };
    update = match order.lease_until_ms {
        Some(previous) => update.filter(orders::Column::LeaseUntilMs.eq(previous)),
        None => update.filter(orders::Column::LeaseUntilMs.is_null()),
    };
    let result = update
        .exec(db)
        .instrument(db_span(db, "UPDATE", "orders"))
        .await?;
    Ok((result.rows_affected == 1).then(|| {
        let mut taken = order.clone();
        taken.lease_owner = Some(owner.to_string());
        taken.lease_until_ms = Some(until_ms);
        taken
    }))
}

/// Extends `owner`'s lease on an order to `until_ms`; `false` when `owner` no longer holds
/// it.
pub async fn renew(
    db: &impl ConnectionTrait,
    order_id: &str,
    owner: &str,
    until_ms: i64,
) -> Result<bool, DbErr> {
    let result = orders::Entity::update_many()
        .col_expr(orders::Column::LeaseUntilMs, Expr::value(until_ms))
        .filter(orders::Column::Id.eq(order_id))
        .filter(orders::Column::LeaseOwner.eq(owner))
        .exec(db)
        .instrument(db_span(db, "UPDATE", "orders"))
        .await?;
    Ok(result.rows_affected == 1)
}
