//! Order persistence. The `(user_id, client_order_id)` unique key is the idempotency guard:
//! whichever worker inserts first owns the order; every other attempt reads it back. Every
//! state change is a compare-and-set through the state machine ([`transition`]).

use chrono::Utc;
use pinnacle_common::broker::BrokerOutcome;
use pinnacle_common::db::span as db_span;
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{OrderReply, OrderRequest, OrderStatus, OrderType, Side};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, SqlErr,
};
use tracing::Instrument as _;

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

/// Inserts the order, already `SUBMITTED`, or returns the one that already holds its client
/// order id.
///
/// `NEW → SUBMITTED` happens in this one commit: the row exists before the broker is
/// called, so a crash after this point leaves an order that reconciliation asks the broker
/// about, never one that is silently re-sent. The caller announces both states.
pub async fn insert_new(
    db: &impl ConnectionTrait,
    user_id: &str,
    broker_account_id: &str,
    request: &OrderRequest,
) -> Result<Inserted, DbErr> {
    let now = Utc::now();
    let row = orders::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        user_id: Set(user_id.to_string()),
        broker_account_id: Set(broker_account_id.to_string()),
        client_order_id: Set(request.client_order_id.clone()),
        exchange: Set(request.exchange.clone()),
        symbol: Set(request.symbol.clone()),
        side: Set(enum_text(&request.side)),
        order_type: Set(enum_text(&request.order_type)),
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
    };
    match row
        .insert(db)
        .instrument(db_span(db, "INSERT", "orders"))
        .await
    {
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
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Moves `order` to `to`, if the state machine allows it and nobody else moved it first.
///
/// The update is a compare-and-set on the current status, so two workers can never both
/// apply a transition from the same state.
pub async fn transition(
    db: &impl ConnectionTrait,
    order: &orders::Model,
    to: OrderStatus,
    patch: Patch,
) -> Result<orders::Model, TransitionError> {
    let from = status_of(order);
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
    let result = update
        .filter(orders::Column::Id.eq(order.id.as_str()))
        .filter(orders::Column::Status.eq(from.as_str()))
        .exec(db)
        .instrument(db_span(db, "UPDATE", "orders"))
        .await?;
    if result.rows_affected == 1 {
        Ok(next)
    } else {
        Err(TransitionError::Conflict)
    }
}

/// The stored status (an unparseable one reads as `UNKNOWN`, which forces reconciliation).
pub fn status_of(order: &orders::Model) -> OrderStatus {
    OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Unknown)
}

/// The order as the wire shows it.
pub fn view(order: &orders::Model) -> OrderReply {
    OrderReply {
        order_id: order.id.clone(),
        client_order_id: order.client_order_id.clone(),
        exchange: order.exchange.clone(),
        symbol: order.symbol.clone(),
        side: parse_enum(&order.side).unwrap_or(Side::Buy),
        order_type: parse_enum(&order.order_type).unwrap_or(OrderType::Limit),
        quantity: order.quantity,
        price: order.price,
        trigger_price: order.trigger_price,
        product: parse_enum(&order.product).unwrap_or_default(),
        broker_order_id: order.broker_order_id.clone(),
        status: status_of(order),
        filled_quantity: order.filled_quantity,
        average_price: order.average_price,
        reject_reason: order.reject_reason.clone(),
        created_at_ms: order.created_at.timestamp_millis(),
        updated_at_ms: order.updated_at.timestamp_millis(),
    }
}

/// The reply for a placed order: its state, or for a rejected one the original error.
pub fn reply_for(order: &orders::Model) -> Result<OrderReply, ErrorBody> {
    if status_of(order) == OrderStatus::Rejected {
        let code = order
            .reject_code
            .as_deref()
            .and_then(parse_enum)
            .unwrap_or(ErrorCode::BrokerRejected);
        return Err(ErrorBody::new(
            code,
            order.reject_reason.clone().unwrap_or_default(),
        ));
    }
    Ok(view(order))
}

fn parse_enum<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

fn enum_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
