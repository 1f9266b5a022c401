//! `get` and `list`: reading a user's own orders. No credentials are involved.

use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{ListRequest, OrderList, OrderRef, OrderReply};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::core::Engine;
use super::errors::internal;
use super::store;

/// The most orders one `list` returns.
pub const MAX_LIST: u64 = 500;
/// How many `list` returns by default.
pub const DEFAULT_LIST: u64 = 100;

/// Finds one of `user_id`'s orders by `order_id` or `client_order_id` (both: they must name
/// the same order).
pub(super) async fn resolve(
    engine: &Engine,
    user_id: &str,
    target: &OrderRef,
) -> Result<orders::Model, ErrorBody> {
    let found = match (&target.order_id, &target.client_order_id) {
        (Some(order_id), Some(client_order_id)) => orders::Entity::find_by_id(order_id.clone())
            .filter(orders::Column::UserId.eq(user_id))
            .filter(orders::Column::ClientOrderId.eq(client_order_id.as_str()))
            .one(&engine.db)
            .await
            .map_err(|e| internal("loading the order", e))?,
        (Some(order_id), None) => orders::Entity::find_by_id(order_id.clone())
            .filter(orders::Column::UserId.eq(user_id))
            .one(&engine.db)
            .await
            .map_err(|e| internal("loading the order", e))?,
        (None, Some(client_order_id)) => store::find(&engine.db, user_id, client_order_id)
            .await
            .map_err(|e| internal("loading the order", e))?,
        (None, None) => {
            return Err(ErrorBody::new(
                ErrorCode::InvalidRequest,
                "name the order with order_id or client_order_id",
            ))
        }
    };
    found.ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, "no such order"))
}

/// Fetches one order.
pub(super) async fn get(
    engine: &Engine,
    user_id: &str,
    target: &OrderRef,
) -> Result<OrderReply, ErrorBody> {
    let order = resolve(engine, user_id, target).await?;
    Ok(store::view(&order)?)
}

/// Lists orders, newest first.
pub(super) async fn list(
    engine: &Engine,
    user_id: &str,
    filter: &ListRequest,
) -> Result<OrderList, ErrorBody> {
    let limit = filter.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            format!("limit must be 1 to {MAX_LIST}"),
        ));
    }
    let mut query = orders::Entity::find()
        .filter(orders::Column::UserId.eq(user_id))
        .order_by_desc(orders::Column::CreatedAt)
        .order_by_desc(orders::Column::Id)
        .limit(limit);
    if let Some(statuses) = &filter.status {
        query = query.filter(orders::Column::Status.is_in(statuses.iter().map(|s| s.as_str())));
    }
    let rows = query
        .all(&engine.db)
        .await
        .map_err(|e| internal("listing orders", e))?;
    Ok(OrderList {
        orders: rows.iter().map(store::view).collect::<Result<_, _>>()?,
    })
}
