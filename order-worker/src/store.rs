//! Order persistence. The `(user_id, client_order_id)` unique key is the idempotency guard:
//! whichever worker inserts first owns the order; every other attempt reads it back.

use chrono::Utc;
use pinnacle_common::broker::BrokerOutcome;
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{OrderReply, OrderRequest, OrderStatus};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, SqlErr,
};

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
        .await
}

/// Inserts a `NEW` order, or returns the one that already holds its client order id.
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
        status: Set(OrderStatus::New.as_str().to_string()),
        filled_quantity: Set(0),
        average_price: Set(None),
        broker_order_id: Set(None),
        reject_code: Set(None),
        reject_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    match row.insert(db).await {
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

/// Records the broker's outcome.
pub async fn record_outcome(
    db: &impl ConnectionTrait,
    order: orders::Model,
    outcome: &BrokerOutcome,
) -> Result<orders::Model, DbErr> {
    let mut row: orders::ActiveModel = order.into();
    row.status = Set(outcome.status.as_str().to_string());
    row.broker_order_id = Set(Some(outcome.broker_order_id.clone()));
    row.filled_quantity = Set(outcome.filled_quantity);
    row.average_price = Set(outcome.average_price);
    row.updated_at = Set(Utc::now());
    row.update(db).await
}

/// Records a rejection with its stable code, so a retry replays the same error.
pub async fn record_rejection(
    db: &impl ConnectionTrait,
    order: orders::Model,
    error: &ErrorBody,
) -> Result<orders::Model, DbErr> {
    let mut row: orders::ActiveModel = order.into();
    row.status = Set(OrderStatus::Rejected.as_str().to_string());
    row.reject_code = Set(Some(error.code.as_str().to_string()));
    row.reject_reason = Set(Some(error.message.clone()));
    row.updated_at = Set(Utc::now());
    row.update(db).await
}

/// The reply for a stored order: its state, or for a rejected one the original error.
pub fn reply_for(order: &orders::Model) -> Result<OrderReply, ErrorBody> {
    let status = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::New);
    if status == OrderStatus::Rejected {
        let code = order
            .reject_code
            .as_deref()
            .and_then(|c| serde_json::from_value(serde_json::Value::String(c.into())).ok())
            .unwrap_or(ErrorCode::BrokerRejected);
        return Err(ErrorBody::new(
            code,
            order.reject_reason.clone().unwrap_or_default(),
        ));
    }
    Ok(OrderReply {
        order_id: order.id.clone(),
        client_order_id: order.client_order_id.clone(),
        broker_order_id: order.broker_order_id.clone(),
        status,
        filled_quantity: order.filled_quantity,
        average_price: order.average_price,
        reject_reason: order.reject_reason.clone(),
        created_at_ms: order.created_at.timestamp_millis(),
    })
}

fn enum_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
