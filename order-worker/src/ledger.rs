//! The paper broker's books, derived from the orders table: funds, positions and trades.
//!
//! Nothing is kept in memory, so a restart loses nothing and every worker in the queue
//! group sees the same books. Cash flows use each order's filled quantity and average
//! price; resting buy orders block `remaining quantity × limit price`.

use std::collections::BTreeMap;

use pinnacle_common::entities::orders;
use pinnacle_common::model::{Funds, OrderStatus, Position, Side, Trade};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

fn side(order: &orders::Model) -> Side {
    if order.side == "SELL" {
        Side::Sell
    } else {
        Side::Buy
    }
}

/// The account's orders, oldest change first.
async fn orders_of(
    db: &impl ConnectionTrait,
    account_id: &str,
) -> Result<Vec<orders::Model>, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::BrokerAccountId.eq(account_id))
        .order_by_asc(orders::Column::UpdatedAt)
        .order_by_asc(orders::Column::Id)
        .all(db)
        .await
}

/// Funds, with `cash` as the starting balance; `exclude` leaves one order's block out (the
/// order being modified).
pub async fn funds(
    db: &impl ConnectionTrait,
    account_id: &str,
    cash: i64,
    exclude: Option<&str>,
) -> Result<Funds, DbErr> {
    let mut used: i64 = 0;
    let mut blocked: i64 = 0;
    for order in orders_of(db, account_id).await? {
        let filled_value = order
            .average_price
            .unwrap_or(0)
            .saturating_mul(order.filled_quantity);
        match side(&order) {
            Side::Buy => used = used.saturating_add(filled_value),
            Side::Sell => used = used.saturating_sub(filled_value),
        }
        let status = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Unknown);
        let resting = status.is_working()
            || matches!(
                status,
                OrderStatus::PendingModify | OrderStatus::PendingCancel
            );
        if resting && side(&order) == Side::Buy && exclude != Some(order.id.as_str()) {
            let remaining = (order.quantity - order.filled_quantity).max(0);
            // A stop-market order has no limit: block it at its trigger.
            let price = order.price.or(order.trigger_price).unwrap_or(0);
            blocked = blocked.saturating_add(price.saturating_mul(remaining));
        }
    }
    Ok(Funds {
        cash,
        used,
        blocked,
        available: cash.saturating_sub(used).saturating_sub(blocked),
    })
}

/// Every fill as a trade, oldest first.
pub async fn trades(db: &impl ConnectionTrait, account_id: &str) -> Result<Vec<Trade>, DbErr> {
    Ok(orders_of(db, account_id)
        .await?
        .into_iter()
        .filter(|o| o.filled_quantity > 0)
        .filter_map(|o| {
            Some(Trade {
                product: serde_json::from_value(serde_json::Value::String(o.product.clone()))
                    .unwrap_or_default(),
                side: side(&o),
                price: o.average_price?,
                quantity: o.filled_quantity,
                ts_ms: o.updated_at.timestamp_millis(),
                exchange: o.exchange,
                symbol: o.symbol,
                order_id: o.id,
            })
        })
        .collect())
}

/// Net positions per instrument and product, with weighted average prices and realised P&L.
pub async fn positions(
    db: &impl ConnectionTrait,
    account_id: &str,
) -> Result<Vec<Position>, DbErr> {
    Ok(fold_positions(&trades(db, account_id).await?))
}

/// Folds trades into positions (pure, for testing).
pub fn fold_positions(trades: &[Trade]) -> Vec<Position> {
    let mut book: BTreeMap<(String, String, &'static str), Position> = BTreeMap::new();
    for t in trades {
        let p = book
            .entry((t.exchange.clone(), t.symbol.clone(), t.product.as_str()))
            .or_insert_with(|| Position {
                exchange: t.exchange.clone(),
                symbol: t.symbol.clone(),
                product: t.product,
                net_quantity: 0,
                average_price: None,
                buy_quantity: 0,
                sell_quantity: 0,
                realized_pnl: 0,
            });
        let signed = match t.side {
            Side::Buy => {
                p.buy_quantity += t.quantity;
                t.quantity
            }
            Side::Sell => {
                p.sell_quantity += t.quantity;
                -t.quantity
            }
        };
        let (net, avg) = (p.net_quantity, p.average_price.unwrap_or(0));
        let total = net + signed;
        let next_avg = if net == 0 || net.signum() == signed.signum() {
            // Opening or adding: weighted average.
            (avg * net.abs() + t.price * signed.abs()) / total.abs().max(1)
        } else {
            // Reducing, closing or flipping: book the P&L on the closed part.
            p.realized_pnl += signed.abs().min(net.abs()) * (t.price - avg) * net.signum();
            if total.signum() == net.signum() {
                avg
            } else {
                t.price
            }
        };
        p.net_quantity = total;
        p.average_price = (total != 0).then_some(next_avg);
    }
    book.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(side: Side, quantity: i64, price: i64) -> Trade {
        Trade {
            order_id: "o".into(),
            exchange: "NSE".into(),
            symbol: "SBIN-EQ".into(),
            product: Default::default(),
            side,
            quantity,
            price,
            ts_ms: 0,
        }
    }

    #[test]
    fn averages_up_books_pnl_on_reduction_and_flips() {
        let p = fold_positions(&[trade(Side::Buy, 10, 100), trade(Side::Buy, 10, 200)]);
        assert_eq!((p[0].net_quantity, p[0].average_price), (20, Some(150)));
        let p = fold_positions(&[
            trade(Side::Buy, 10, 100),
            trade(Side::Buy, 10, 200),
            trade(Side::Sell, 5, 250),
        ]);
        assert_eq!(
            (p[0].net_quantity, p[0].average_price, p[0].realized_pnl),
            (15, Some(150), 500)
        );
        let p = fold_positions(&[trade(Side::Buy, 10, 100), trade(Side::Sell, 15, 120)]);
        assert_eq!(
            (p[0].net_quantity, p[0].average_price, p[0].realized_pnl),
            (-5, Some(120), 200)
        );
        let p = fold_positions(&[trade(Side::Sell, 4, 300), trade(Side::Buy, 4, 280)]);
        assert_eq!(
            (p[0].net_quantity, p[0].average_price, p[0].realized_pnl),
            (0, None, 80)
        );
    }
}
