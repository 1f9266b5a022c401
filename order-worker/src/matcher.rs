//! The paper broker's matching engine: resting limit and stop-loss orders fill from the
//! live tick stream.
//!
//! Every worker keeps a book of resting paper orders (loaded from the database at start,
//! then kept current from `events.orders.>`, so it sees orders placed through any worker).
//! On each tick it fills the marketable ones at the traded price, at most the tick's traded
//! quantity at a time, so large orders fill across several ticks (`PARTIALLY_FILLED` →
//! `FILLED`). Every worker's matcher sees every tick, and each fills an order only from
//! the view of it the tick crossed: an order whose stored fill differs from that view
//! was filled meanwhile by another worker's matcher (from this tick or a later one), and
//! is left alone. With the compare-and-set on the order's status and fill count, one tick
//! fills an order once however many workers match it, and a lagging worker never fills
//! from a tick another worker already used. (A view only moves forward: an event with
//! fewer units filled than the view a worker holds, such as its own fill's event arriving
//! after a later fill it applied directly, is ignored.)
//!
//! Hours ([`MarketHours`]): ticks for an exchange that is closed by the worker's calendar
//! fill nothing. An order that joins the book while its exchange is closed is an
//! after-market order: the first tick of the next session fills it in full at that
//! tick's price if it crosses it (a MARKET order always does), as an order placed at that
//! moment would fill; otherwise it rests from then on like any other order. A resting
//! MARKET order (only an after-market one rests) always fills in full.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use pinnacle_common::codec::Encoding;
use pinnacle_common::entities::orders;
use pinnacle_common::model::{OrderEvent, OrderReply, OrderStatus, OrderType, Tick};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;

use crate::engine::{row, Engine, Patch};
use crate::paper::MarketHours;
use crate::worker::Worker;

pub use crate::engine::ledger::PAPER_PREFIX;

/// Resting paper orders by `EXCHANGE:SYMBOL`, then by order id.
#[derive(Debug, Default)]
struct Book {
    by_symbol: HashMap<String, HashMap<String, Resting>>,
}

/// A resting order, and whether it is an after-market order waiting for its exchange's
/// next session (it joined the book while the exchange was closed).
#[derive(Debug, Clone)]
struct Resting {
    order: OrderReply,
    after_market: bool,
}

/// An order a tick crosses, and whether it fills in full at once (a MARKET order, or an
/// after-market order at the session's first tick, both filled as an order placed then
/// would be) or by up to the tick's traded quantity.
#[derive(Debug)]
struct Crossing {
    order: OrderReply,
    in_full: bool,
}

fn key(exchange: &str, symbol: &str) -> String {
    format!("{exchange}:{symbol}")
}

impl Book {
    /// Adds, updates or removes an order according to its state; `closed` says whether
    /// its exchange is closed now (an order that joins then is an after-market order).
    fn apply(&mut self, order: OrderReply, closed: bool) {
        let is_paper = order
            .broker_order_id
            .as_deref()
            .is_some_and(|id| id.starts_with(PAPER_PREFIX));
        let entry = self
            .by_symbol
            .entry(key(&order.exchange, &order.symbol))
            .or_default();
        let held = entry.get(&order.order_id);
        // A fill is never undone, so a view with fewer units filled is older (by fill
        // count, not by time: workers' clocks differ).
        if held.is_some_and(|r| order.filled_quantity < r.order.filled_quantity) {
            return;
        }
        if is_paper && order.status.is_working() {
            let after_market = closed || held.is_some_and(|r| r.after_market);
            entry.insert(
                order.order_id.clone(),
                Resting {
                    order,
                    after_market,
                },
            );
        } else {
            entry.remove(&order.order_id);
        }
    }

    /// The orders a tick crosses while its exchange is open. The tick opens the session
    /// for the symbol's after-market orders: from then on they rest as any other order.
    fn cross(&mut self, tick: &Tick) -> Vec<Crossing> {
        let Some(orders) = self.by_symbol.get_mut(&key(&tick.exchange, &tick.symbol)) else {
            return Vec::new();
        };
        let mut crossed = Vec::new();
        for resting in orders.values_mut() {
            let o = &resting.order;
            if o.order_type
                .fills_at(o.side, o.price, o.trigger_price, tick.ltp)
            {
                crossed.push(Crossing {
                    order: o.clone(),
                    in_full: resting.after_market || o.order_type == OrderType::Market,
                });
            }
            resting.after_market = false;
        }
        crossed
    }
}

/// Fills `order` at `tick.ltp`, in full or by up to `tick.last_qty`; returns the order
/// after the fill.
async fn fill(
    engine: &Engine,
    order: &OrderReply,
    tick: &Tick,
    in_full: bool,
) -> Option<orders::Model> {
    let row = engine.order(&order.order_id).await.ok()??;
    match row::status_of(&row) {
        Ok(status) if status.is_working() => {}
        Ok(_) => return None,
        Err(error) => {
            tracing::error!(%error, "not filling a corrupt paper order");
            return None;
        }
    }
    // Filled meanwhile by another worker's matcher: this tick (or a later one) was its.
    if row.filled_quantity != order.filled_quantity {
        return None;
    }
    let remaining = row.quantity - row.filled_quantity;
    let quantity = if in_full {
        remaining
    } else {
        remaining.min(tick.last_qty.max(1))
    };
    let filled = row.filled_quantity + quantity;
    let to = if filled >= row.quantity {
        OrderStatus::Filled
    } else {
        OrderStatus::PartiallyFilled
    };
    let patch = Patch {
        filled_quantity: Some(filled),
        // The part's own value; the store keeps the order's total and its average.
        fill_value: Some(tick.ltp.saturating_mul(quantity)),
        ..Patch::default()
    };
    // Losing the compare-and-set to another worker's fill (or a cancel) is normal.
    engine.apply_update(&row, to, patch).await.ok()
}

/// Runs the matcher until `shutdown` fires. Ticks for an exchange that `hours` says is
/// closed fill nothing.
pub async fn run(
    worker: Arc<Worker>,
    hours: MarketHours,
    shutdown: Shutdown,
) -> Result<(), async_nats::SubscribeError> {
    let engine = worker.engine();
    let mut events = worker
        .client()
        .subscribe(subjects::ORDER_EVENTS_ALL)
        .await?;
    let mut ticks = worker.client().subscribe(subjects::MD_TICK_ALL).await?;
    let mut book = load(engine, &hours).await;
    loop {
        match next(&shutdown, &mut ticks, &mut events).await {
            Input::Tick(message) => {
                let Ok(tick) = Encoding::MsgPack.decode::<Tick>(&message.payload) else {
                    continue;
                };
                if hours.is_open(&tick.exchange) {
                    on_tick(engine, &mut book, &tick).await;
                }
            }
            Input::Event(message) => {
                if let Ok(event) = Encoding::MsgPack.decode::<OrderEvent>(&message.payload) {
                    let closed = !hours.is_open(&event.order.exchange);
                    book.apply(event.order, closed);
                }
            }
            Input::Done => break,
        }
    }
    Ok(())
}

/// What the matcher takes next.
#[derive(Debug)]
enum Input<T> {
    Tick(T),
    Event(T),
    /// Shutdown, or both subscriptions ended.
    Done,
}

/// The next input, **a waiting tick before a waiting event**.
///
/// Both subscriptions share the worker's one connection, so a tick reaches this worker
/// before any event of a fill made from it: nats-server routes the tick to every worker
/// at once, and the event exists only after another worker received that tick, filled
/// from it and published. Taking the ticks first therefore crosses every tick with a view
/// older than the events of fills made from it; [`fill`] then finds the stored fill moved
/// on and leaves the order alone. Taken in any other order (as an unbiased `select!`
/// does, at random, when both wait), a worker could first apply another worker's fill
/// from tick *k* and then fill the order again from the same tick *k*, its view now equal
/// to the row. Events wait only while ticks do: applying a tick that crosses nothing costs
/// a lookup.
async fn next<T>(
    shutdown: &Shutdown,
    ticks: &mut (impl futures::Stream<Item = T> + Unpin),
    events: &mut (impl futures::Stream<Item = T> + Unpin),
) -> Input<T> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Input::Done,
        Some(tick) = ticks.next() => Input::Tick(tick),
        Some(event) = events.next() => Input::Event(event),
        else => Input::Done,
    }
}

/// The book of the resting paper orders in the database.
async fn load(engine: &Engine, hours: &MarketHours) -> Book {
    let mut book = Book::default();
    match engine.resting_paper_orders().await {
        Ok(resting) => {
            for order in &resting {
                match row::view(order) {
                    Ok(view) => {
                        let closed = !hours.is_open(&view.exchange);
                        book.apply(view, closed);
                    }
                    Err(error) => tracing::error!(%error, "a resting paper order is corrupt"),
                }
            }
        }
        Err(error) => tracing::error!(%error, "could not load resting paper orders"),
    }
    book
}

/// Fills what `tick` crosses.
async fn on_tick(engine: &Engine, book: &mut Book, tick: &Tick) {
    for crossing in book.cross(tick) {
        if let Some(after) = fill(engine, &crossing.order, tick, crossing.in_full).await {
            match row::view(&after) {
                Ok(view) => book.apply(view, false),
                Err(error) => tracing::error!(%error, "a filled paper order is corrupt"),
            }
        }
    }
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

    /// The ids `ltp` crosses, sorted, each with whether it fills in full.
    fn crossed(book: &mut Book, ltp: i64) -> Vec<(String, bool)> {
        let mut ids: Vec<_> = book
            .cross(&tick(ltp))
            .into_iter()
            .map(|c| (c.order.order_id, c.in_full))
            .collect();
        ids.sort();
        ids
    }

    fn ids(book: &mut Book, ltp: i64) -> Vec<String> {
        crossed(book, ltp).into_iter().map(|(id, _)| id).collect()
    }

    #[tokio::test]
    async fn a_waiting_tick_is_taken_before_a_waiting_event() {
        let shutdown = Shutdown::new();
        let (tick_tx, tick_rx) = futures::channel::mpsc::unbounded();
        let (event_tx, event_rx) = futures::channel::mpsc::unbounded();
        let (mut ticks, mut events) = (tick_rx, event_rx);
        // The event of a fill from tick 1 waits beside tick 1 itself (and tick 2).
        event_tx.unbounded_send("fill from tick 1").expect("queued");
        tick_tx.unbounded_send("tick 1").expect("queued");
        tick_tx.unbounded_send("tick 2").expect("queued");
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(match next(&shutdown, &mut ticks, &mut events).await {
                Input::Tick(t) | Input::Event(t) => t,
                Input::Done => "done",
            });
        }
        assert_eq!(taken, ["tick 1", "tick 2", "fill from tick 1"]);
        // Shutdown comes before anything still waiting.
        tick_tx.unbounded_send("tick 3").expect("queued");
        shutdown.cancel();
        assert!(matches!(
            next(&shutdown, &mut ticks, &mut events).await,
            Input::Done
        ));
    }

    #[test]
    fn the_book_crosses_buys_below_and_sells_above_and_forgets_finished_orders() {
        let mut book = Book::default();
        book.apply(resting("b", Side::Buy, 100), false);
        book.apply(resting("s", Side::Sell, 120), false);
        assert_eq!(ids(&mut book, 110), Vec::<String>::new());
        assert_eq!(crossed(&mut book, 100), [("b".to_string(), false)]);
        assert_eq!(ids(&mut book, 125), ["s"]);
        let mut done = resting("b", Side::Buy, 100);
        done.status = OrderStatus::Filled;
        book.apply(done, false);
        assert_eq!(ids(&mut book, 90), Vec::<String>::new());
        let mut angel = resting("a", Side::Buy, 100);
        angel.broker_order_id = Some("ANGEL-1".into());
        book.apply(angel, false);
        assert_eq!(
            ids(&mut book, 90),
            Vec::<String>::new(),
            "only paper orders are matched here"
        );
    }

    #[test]
    fn a_view_older_than_the_one_held_is_ignored() {
        let mut book = Book::default();
        let mut newer = resting("b", Side::Buy, 100);
        newer.filled_quantity = 6;
        newer.status = OrderStatus::PartiallyFilled;
        book.apply(newer, false);
        let mut older = resting("b", Side::Buy, 100);
        older.filled_quantity = 3;
        older.status = OrderStatus::PartiallyFilled;
        book.apply(older, false);
        let crossed = book.cross(&tick(100));
        assert_eq!(crossed.len(), 1);
        assert_eq!(crossed[0].order.filled_quantity, 6);
        // An end with fewer units filled is older too; one with as many ends the order.
        let mut ended = resting("b", Side::Buy, 100);
        ended.status = OrderStatus::Cancelled;
        ended.filled_quantity = 3;
        book.apply(ended.clone(), false);
        assert_eq!(ids(&mut book, 100), ["b"]);
        ended.filled_quantity = 6;
        book.apply(ended, false);
        assert_eq!(ids(&mut book, 100), Vec::<String>::new());
    }

    #[test]
    fn after_market_orders_fill_in_full_at_the_first_session_tick_only() {
        let mut book = Book::default();
        // Placed while the exchange was closed: a limit buy at 100 and a market sell.
        book.apply(resting("amo", Side::Buy, 100), true);
        let mut market = resting("mkt", Side::Sell, 0);
        market.order_type = OrderType::Market;
        market.price = None;
        book.apply(market, true);
        // Modified while still closed: it stays an after-market order.
        book.apply(resting("amo", Side::Buy, 105), false);
        // The session's first tick (105): both cross, both in full.
        assert_eq!(
            crossed(&mut book, 105),
            [("amo".to_string(), true), ("mkt".to_string(), true)]
        );
        // Had the limit not crossed, it would rest as any other order from then on.
        let mut book = Book::default();
        book.apply(resting("late", Side::Buy, 90), true);
        assert_eq!(ids(&mut book, 105), Vec::<String>::new());
        assert_eq!(
            crossed(&mut book, 90),
            [("late".to_string(), false)],
            "after the first session tick it fills by the tick's quantity"
        );
        // A resting MARKET order always fills in full, and every tick crosses it.
        let mut book = Book::default();
        let mut market = resting("m", Side::Buy, 0);
        market.order_type = OrderType::Market;
        market.price = None;
        book.apply(market, false);
        assert_eq!(crossed(&mut book, 1), [("m".to_string(), true)]);
    }
}
