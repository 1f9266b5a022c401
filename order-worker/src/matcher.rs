//! The paper broker's matching engine: resting limit and stop-loss orders fill from the
//! live tick stream.
//!
//! Every worker keeps a book of resting paper orders (loaded from the database at start,
//! then kept current from `events.orders.>`, so it sees orders placed through any worker).
//! On each tick it fills the marketable ones at the traded price, at most the tick's traded
//! quantity at a time, so large orders fill across several ticks (`PARTIALLY_FILLED` →
//! `FILLED`). Several workers may try the same fill: the status compare-and-set lets
//! exactly one apply it.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use pinnacle_common::codec::Encoding;
use pinnacle_common::entities::orders;
use pinnacle_common::model::{OrderEvent, OrderReply, OrderStatus, OrderType, Tick};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;

use crate::engine::{row, Engine, Patch};
use crate::worker::Worker;

pub use crate::engine::ledger::PAPER_PREFIX;

/// Resting paper orders by `EXCHANGE:SYMBOL`, then by order id.
#[derive(Debug, Default)]
struct Book {
    by_symbol: HashMap<String, HashMap<String, OrderReply>>,
}

fn key(exchange: &str, symbol: &str) -> String {
    format!("{exchange}:{symbol}")
}

impl Book {
    /// Adds, updates or removes an order according to its state.
    fn apply(&mut self, order: OrderReply) {
        let is_paper = order
            .broker_order_id
            .as_deref()
            .is_some_and(|id| id.starts_with(PAPER_PREFIX));
        let entry = self
            .by_symbol
            .entry(key(&order.exchange, &order.symbol))
            .or_default();
        if is_paper && order.status.is_working() && order.order_type != OrderType::Market {
            entry.insert(order.order_id.clone(), order);
        } else {
            entry.remove(&order.order_id);
        }
    }

    /// The orders a tick crosses.
    fn marketable(&self, tick: &Tick) -> Vec<OrderReply> {
        self.by_symbol
            .get(&key(&tick.exchange, &tick.symbol))
            .map(|orders| {
                orders
                    .values()
                    .filter(|o| {
                        o.order_type
                            .fills_at(o.side, o.price, o.trigger_price, tick.ltp)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Fills `order` by up to `tick.last_qty` at `tick.ltp`; returns the order after the fill.
async fn fill(engine: &Engine, order: &OrderReply, tick: &Tick) -> Option<orders::Model> {
    let row = engine.order(&order.order_id).await.ok()??;
    match row::status_of(&row) {
        Ok(status) if status.is_working() => {}
        Ok(_) => return None,
        Err(error) => {
            tracing::error!(%error, "not filling a corrupt paper order");
            return None;
        }
    }
    let remaining = row.quantity - row.filled_quantity;
    let quantity = remaining.min(tick.last_qty.max(1));
    let filled = row.filled_quantity + quantity;
    let average =
        (row.average_price.unwrap_or(0) * row.filled_quantity + tick.ltp * quantity) / filled;
    let to = if filled >= row.quantity {
        OrderStatus::Filled
    } else {
        OrderStatus::PartiallyFilled
    };
    let patch = Patch {
        filled_quantity: Some(filled),
        average_price: Some(average),
        ..Patch::default()
    };
    // Losing the compare-and-set to another worker's fill (or a cancel) is normal.
    engine.apply_update(&row, to, patch).await.ok()
}

/// Runs the matcher until `shutdown` fires.
pub async fn run(
    worker: Arc<Worker>,
    shutdown: Shutdown,
) -> Result<(), async_nats::SubscribeError> {
    let engine = worker.engine();
    let mut events = worker
        .client()
        .subscribe(subjects::ORDER_EVENTS_ALL)
        .await?;
    let mut ticks = worker.client().subscribe(subjects::MD_TICK_ALL).await?;
    let mut book = Book::default();
    match engine.resting_paper_orders().await {
        Ok(resting) => {
            for order in &resting {
                match row::view(order) {
                    Ok(view) => book.apply(view),
                    Err(error) => tracing::error!(%error, "a resting paper order is corrupt"),
                }
            }
        }
        Err(error) => tracing::error!(%error, "could not load resting paper orders"),
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(message) = events.next() => {
                if let Ok(event) = Encoding::MsgPack.decode::<OrderEvent>(&message.payload) {
                    book.apply(event.order);
                }
            }
            Some(message) = ticks.next() => {
                let Ok(tick) = Encoding::MsgPack.decode::<Tick>(&message.payload) else { continue };
                for order in book.marketable(&tick) {
                    if let Some(after) = fill(engine, &order, &tick).await {
                        match row::view(&after) {
                            Ok(view) => book.apply(view),
                            Err(error) => tracing::error!(%error, "a filled paper order is corrupt"),
                        }
                    }
                }
            }
            else => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_common::model::Side;

    fn resting(id: &str, side: Side, price: i64) -> OrderReply {
        OrderReply {
            order_id: id.into(),
            client_order_id: id.into(),
            exchange: "NSE".into(),
            symbol: "SBIN-EQ".into(),
            side,
            order_type: OrderType::Limit,
            quantity: 10,
            price: Some(price),
            trigger_price: None,
            product: Default::default(),
            broker_order_id: Some(format!("{PAPER_PREFIX}{id}")),
            status: OrderStatus::Open,
            filled_quantity: 0,
            average_price: None,
            reject_reason: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn tick(ltp: i64) -> Tick {
        Tick {
            exchange: "NSE".into(),
            symbol: "SBIN-EQ".into(),
            seq: 1,
            ts_ms: 0,
            ltp,
            last_qty: 3,
            volume: 3,
            bid: ltp - 5,
            ask: ltp + 5,
        }
    }

    #[test]
    fn the_book_crosses_buys_below_and_sells_above_and_forgets_finished_orders() {
        let mut book = Book::default();
        book.apply(resting("b", Side::Buy, 100));
        book.apply(resting("s", Side::Sell, 120));
        let ids = |t| {
            let mut ids: Vec<_> = book
                .marketable(&tick(t))
                .into_iter()
                .map(|o| o.order_id)
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(110), Vec::<String>::new());
        assert_eq!(ids(100), ["b"]);
        assert_eq!(ids(125), ["s"]);
        let mut done = resting("b", Side::Buy, 100);
        done.status = OrderStatus::Filled;
        book.apply(done);
        assert_eq!(book.marketable(&tick(90)).len(), 0);
        let mut angel = resting("a", Side::Buy, 100);
        angel.broker_order_id = Some("ANGEL-1".into());
        book.apply(angel);
        assert_eq!(
            book.marketable(&tick(90)).len(),
            0,
            "only paper orders are matched here"
        );
    }
}
