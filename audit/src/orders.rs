//! Every order has its audit event: matching rows of `orders` to the authorised
//! credential accesses the verifier read (the rule is documented in `docs/AUDIT.md`).

use std::collections::HashMap;

use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use pinnacle_store::entities::orders;

/// An authorised credential access, as the order check needs it.
#[derive(Debug, Clone)]
pub struct Access {
    /// `ts_ms` of the event.
    pub ts_ms: i64,
    /// Its purpose.
    pub purpose: String,
}

/// What the order check needs of an order row.
#[derive(Debug, Clone)]
pub struct OrderRef {
    /// The order id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Account it went through.
    pub broker_account_id: String,
    /// The client order id (`sqoff-…` for square-off orders).
    pub client_order_id: String,
    /// When it was stored, ms since the epoch.
    pub created_ms: i64,
}

impl From<orders::Model> for OrderRef {
    fn from(o: orders::Model) -> Self {
        Self {
            id: o.id,
            user_id: o.user_id,
            broker_account_id: o.broker_account_id,
            client_order_id: o.client_order_id,
            created_ms: o.created_at.timestamp_millis(),
        }
    }
}

/// Every order in `db`, or only `user`'s, as the order check needs them.
pub async fn load(db: &DatabaseConnection, user: Option<&str>) -> Result<Vec<OrderRef>, DbErr> {
    let mut query = orders::Entity::find();
    if let Some(user) = user {
        query = query.filter(orders::Column::UserId.eq(user));
    }
    let rows = query.all(db).await?;
    Ok(rows.into_iter().map(OrderRef::from).collect())
}

/// How far an event's timestamp may be after its order's (clock granularity).
pub const ORDER_SKEW_MS: i64 = 1_000;

/// The ids of orders with no audit event that accounts for them.
///
/// The worker records an authorised `order.place` event (same user and broker account)
/// before it stores the order, and one request stores at most one order. So each order
/// needs its own such event with `ts_ms ≤ created + ORDER_SKEW_MS`; events are matched
/// one-to-one, oldest order first (a greedy match that is maximal here because any event
/// early enough for one order is early enough for every later one). A square-off order
/// (`sqoff-…`) may instead share one `order.squareoff` event of its account from before it.
pub fn orders_without_audit(
    orders: &[OrderRef],
    accesses: &HashMap<(String, String), Vec<Access>>,
) -> Vec<String> {
    let mut by_account: HashMap<(&str, &str), Vec<&OrderRef>> = HashMap::new();
    for order in orders {
        by_account
            .entry((order.user_id.as_str(), order.broker_account_id.as_str()))
            .or_default()
            .push(order);
    }
    let mut missing = Vec::new();
    for ((user, account), mut orders) in by_account {
        orders.sort_by_key(|o| o.created_ms);
        let empty = Vec::new();
        let events = accesses
            .get(&(user.to_string(), account.to_string()))
            .unwrap_or(&empty);
        let mut places: Vec<i64> = events
            .iter()
            .filter(|a| a.purpose == "order.place")
            .map(|a| a.ts_ms)
            .collect();
        places.sort_unstable();
        let first_squareoff = events
            .iter()
            .filter(|a| a.purpose == "order.squareoff")
            .map(|a| a.ts_ms)
            .min();
        let mut next = 0;
        for order in orders {
            let limit = order.created_ms + ORDER_SKEW_MS;
            if next < places.len() && places[next] <= limit {
                next += 1;
                continue;
            }
            let squareoff = order.client_order_id.starts_with("sqoff-")
                && first_squareoff.is_some_and(|ts| ts <= limit);
            if !squareoff {
                missing.push(order.id.clone());
            }
        }
    }
    missing.sort();
    missing
}
