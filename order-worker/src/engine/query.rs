//! `get` and `list`: reading a user's own orders. No credentials are involved.

use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{ListRequest, OrderList, OrderRef, OrderReply};

use super::core::Engine;
use super::errors::internal;
use super::store::{self, OrderQuery};

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
        (Some(order_id), client_order_id) => engine
            .orders
            .get(order_id)
            .await
            .map_err(|e| internal("loading the order", e))?
            .filter(|o| o.user_id == user_id)
            .filter(|o| {
                client_order_id
                    .as_ref()
                    .is_none_or(|c| o.client_order_id == *c)
            }),
        (None, Some(client_order_id)) => engine
            .orders
            .find(user_id, client_order_id)
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
    let query = OrderQuery::OfUser {
        user_id,
        statuses: filter.status.as_deref(),
        limit,
    };
    let rows = engine
        .orders
        .list(query)
        .await
        .map_err(|e| internal("listing orders", e))?;
    Ok(OrderList {
        orders: rows.iter().map(store::view).collect::<Result<_, _>>()?,
    })
}
