//! The broker's order book: placement, modification, cancellation and fills against the
//! simulated last traded price, producing one event per order state change (SPEC §9).
//!
//! With market hours enforced ([`Hours`]), an order placed while its exchange is closed is
//! an after-market order (SPEC §3.1: "any order placed after hours is treated as AMO"):
//! status `after market order req received` (AB06), modifiable (AB08) and cancellable
//! (AB07), and sent to the exchange at the next open ([`OrderBook::release_after_market`]),
//! where it works like any other order. Nothing fills while the exchange is closed.

mod input;
mod order;
pub mod record;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use crate::calendar::{SimCalendar, SimClock};
use crate::codes;
pub use input::OrderInput;
use order::{event, rejection, step};
pub use order::{OrderEvent, Refusal, SimOrder, AFTER_MARKET};

/// When the book may fill: the simulator's clock and calendar.
#[derive(Debug, Clone, Default)]
pub struct Hours {
    pub clock: SimClock,
    pub calendar: Arc<SimCalendar>,
    /// Off (the default), exchanges never close.
    pub enforce: bool,
}

impl Hours {
    /// Whether `exchange` trades now.
    pub fn open(&self, exchange: &str) -> bool {
        !self.enforce || self.calendar.is_open(exchange, self.clock.now())
    }

    fn now(&self) -> DateTime<FixedOffset> {
        self.clock.now_ist()
    }
}

/// Orders of every client.
#[derive(Debug, Default)]
pub struct OrderBook {
    orders: HashMap<String, Vec<SimOrder>>,
    counter: u64,
    hours: Hours,
}

impl OrderBook {
    /// An empty book that fills only when `hours` say the exchange is open.
    pub fn new(hours: Hours) -> Self {
        Self {
            hours,
            ..Self::default()
        }
    }

    pub fn orders(&self, client_code: &str) -> Vec<SimOrder> {
        self.orders.get(client_code).cloned().unwrap_or_default()
    }

    fn find_mut(&mut self, client_code: &str, orderid: &str) -> Option<&mut SimOrder> {
        self.orders
            .get_mut(client_code)?
            .iter_mut()
            .find(|o| o.orderid == orderid)
    }

    /// Places an order; `ltp` is the instrument's current price.
    pub fn place(
        &mut self,
        client_code: &str,
        input: &OrderInput,
        lot_size: i64,
        ltp: i64,
        source_ip: IpAddr,
    ) -> (SimOrder, Vec<OrderEvent>) {
        self.counter += 1;
        let now = self.hours.now();
        let placed = Placed {
            client_code,
            lot_size,
            source_ip,
            counter: self.counter,
            now,
        };
        let mut order = new_order(input, &placed);
        let events = self.take_in(&mut order, ltp, now);
        self.orders
            .entry(client_code.to_owned())
            .or_default()
            .push(order.clone());
        (order, events)
    }

    /// A new order's first events: rejected by the exchange's checks, held for the open
    /// (after hours), or working, and then filled at once if `ltp` crosses it.
    fn take_in(
        &mut self,
        order: &mut SimOrder,
        ltp: i64,
        now: DateTime<FixedOffset>,
    ) -> Vec<OrderEvent> {
        let mut events = vec![event(order, "AB09")];
        if let Some(reason) = rejection(order) {
            order.status = "rejected".into();
            order.text = reason;
            events.push(event(order, "AB03"));
        } else if !self.hours.open(&order.exchange) {
            order.status = AFTER_MARKET.into();
            events = vec![event(order, "AB06")];
        } else {
            order.status = if order.ordertype.starts_with("STOPLOSS") {
                "trigger pending"
            } else {
                "open"
            }
            .into();
            let code = if order.status == "open" {
                "AB01"
            } else {
                "AB10"
            };
            events.push(event(order, code));
            events.extend(step(order, ltp, &mut self.counter, now));
        }
        events
    }

    /// Modifies an open or trigger-pending order. The body must name the order's variety;
    /// a refused modification changes nothing.
    pub fn modify(
        &mut self,
        client_code: &str,
        orderid: &str,
        input: &Value,
        ltp_of: impl Fn(&str, &str) -> i64,
    ) -> Result<(SimOrder, Vec<OrderEvent>), Refusal> {
        let mut counter = self.counter;
        let now = self.hours.now();
        let open = self.hours.clone();
        let order = self.find_mut(client_code, orderid).ok_or_else(not_found)?;
        if !matches!(
            order.status.as_str(),
            "open" | "trigger pending" | AFTER_MARKET
        ) {
            return Err((
                codes::GENERAL,
                format!("Order {orderid} cannot be modified: it is {}", order.status),
            ));
        }
        check_variety(order, input)?;
        let mut changed = order.clone();
        input::apply_modification(&mut changed, input)?;
        *order = changed;
        order.updated_at = now;
        if order.status == AFTER_MARKET {
            return Ok((order.clone(), vec![event(order, "AB08")]));
        }
        let mut shown = order.clone();
        shown.status = "modified".into();
        let mut events = vec![event(&shown, "AB04")];
        order.status = if order.ordertype.starts_with("STOPLOSS") {
            "trigger pending"
        } else {
            "open"
        }
        .into();
        events.push(event(
            order,
            if order.status == "open" {
                "AB01"
            } else {
                "AB10"
            },
        ));
        if open.open(&order.exchange) {
            let ltp = ltp_of(&order.exchange, &order.token);
            events.extend(step(order, ltp, &mut counter, now));
        }
        let result = order.clone();
        self.counter = counter;
        Ok((result, events))
    }

    /// Cancels an open or trigger-pending order; `input` (the cancelOrder body) must name
    /// the order's variety.
    pub fn cancel(
        &mut self,
        client_code: &str,
        orderid: &str,
        input: &Value,
    ) -> Result<(SimOrder, Vec<OrderEvent>), Refusal> {
        let now = self.hours.now();
        let order = self.find_mut(client_code, orderid).ok_or_else(not_found)?;
        check_variety(order, input)?;
        if order.status == AFTER_MARKET {
            order.status = "cancelled".into();
            order.updated_at = now;
            return Ok((order.clone(), vec![event(order, "AB07")]));
        }
        if !matches!(order.status.as_str(), "open" | "trigger pending") {
            return Err((
                codes::GENERAL,
                format!(
                    "Order {orderid} cannot be cancelled: it is {}",
                    order.status
                ),
            ));
        }
        order.status = "cancelled".into();
        order.updated_at = now;
        Ok((order.clone(), vec![event(order, "AB02")]))
    }

    /// The price of (exchange, token) moved to `ltp`: trigger and fill what now crosses.
    /// Nothing fills while the exchange is closed.
    pub fn on_price(&mut self, exchange: &str, token: &str, ltp: i64) -> Vec<OrderEvent> {
        if !self.hours.open(exchange) {
            return Vec::new();
        }
        let now = self.hours.now();
        let mut counter = self.counter;
        let mut events = Vec::new();
        for order in self.orders.values_mut().flatten() {
            if order.exchange == exchange && order.token == token {
                events.extend(step(order, ltp, &mut counter, now));
            }
        }
        self.counter = counter;
        events
    }

    /// Sends every after-market order whose exchange is now open to the exchange: it
    /// becomes `open` (AB01) or `trigger pending` (AB10) and fills at the current price
    /// when marketable.
    pub fn release_after_market(&mut self, ltp_of: impl Fn(&str, &str) -> i64) -> Vec<OrderEvent> {
        let now = self.hours.now();
        let hours = self.hours.clone();
        let mut counter = self.counter;
        let mut events = Vec::new();
        for order in self.orders.values_mut().flatten() {
            if order.status != AFTER_MARKET || !hours.open(&order.exchange) {
                continue;
            }
            order.status = if order.ordertype.starts_with("STOPLOSS") {
                "trigger pending"
            } else {
                "open"
            }
            .into();
            order.updated_at = now;
            events.push(event(
                order,
                if order.status == "open" {
                    "AB01"
                } else {
                    "AB10"
                },
            ));
            let ltp = ltp_of(&order.exchange, &order.token);
            events.extend(step(order, ltp, &mut counter, now));
        }
        self.counter = counter;
        events
    }

    /// The exchange or the broker's risk system rejects a working order with nothing
    /// filled (an after-market order at the open, a margin call): it becomes `rejected`
    /// with `reason` (AB03). `None` when there is no such order, or it is not working or
    /// has fills.
    pub fn reject(
        &mut self,
        client_code: &str,
        orderid: &str,
        reason: &str,
    ) -> Option<Vec<OrderEvent>> {
        let now = self.hours.now();
        let order = self.find_mut(client_code, orderid)?;
        let working = matches!(
            order.status.as_str(),
            "open" | "trigger pending" | AFTER_MARKET
        );
        if !working || order.filled > 0 {
            return None;
        }
        order.status = "rejected".into();
        order.text = reason.to_string();
        order.updated_at = now;
        Some(vec![event(order, "AB03")])
    }

    /// Whether any after-market order waits for its open.
    pub fn has_after_market(&self) -> bool {
        self.orders
            .values()
            .flatten()
            .any(|o| o.status == AFTER_MARKET)
    }
}

/// Modify and cancel name the order's variety (SPEC §3.1, route 8). The simulator is
/// strict: a variety other than the one the order was placed with is AB1008, so a client
/// that guesses it wrong finds out here rather than at the broker.
fn check_variety(order: &SimOrder, input: &Value) -> Result<(), Refusal> {
    let named = crate::json::text(input, "variety")
        .map(|v| v.trim().to_ascii_uppercase())
        .unwrap_or_default();
    if named == order.variety {
        Ok(())
    } else {
        Err((codes::INVALID_VARIETY, "Invalid Order Variety".into()))
    }
}

fn not_found() -> Refusal {
    (codes::ORDER_NOT_FOUND, "Order not found".into())
}

/// Who placed an order, and when.
#[derive(Debug)]
struct Placed<'a> {
    client_code: &'a str,
    lot_size: i64,
    /// TCP peer of the placing request.
    source_ip: IpAddr,
    /// The book's counter after this placement (order and exchange order ids).
    counter: u64,
    now: DateTime<FixedOffset>,
}

/// The order `input` asks for, `open pending` until it is taken in.
fn new_order(input: &OrderInput, placed: &Placed<'_>) -> SimOrder {
    SimOrder {
        orderid: format!("{}{:09}", placed.now.format("%y%m%d"), placed.counter),
        uniqueorderid: uuid::Uuid::new_v4().to_string(),
        ordertag: input.ordertag.clone(),
        status: "open pending".into(),
        symbol: input.symbol.clone(),
        token: input.token.clone(),
        exchange: input.exchange.clone(),
        side: input.side.clone(),
        ordertype: input.ordertype.clone(),
        variety: input.variety.clone(),
        producttype: input.producttype.clone(),
        duration: input.duration.clone(),
        quantity: input.quantity,
        disclosed_quantity: input.disclosed_quantity,
        filled: 0,
        price_paise: input.price_paise,
        average_price_paise: 0,
        trigger_price_paise: input.trigger_price_paise,
        text: String::new(),
        source_ip: placed.source_ip,
        client_code: placed.client_code.to_owned(),
        lot_size: placed.lot_size,
        updated_at: placed.now,
        filled_at: None,
        fill_id: String::new(),
        exchange_order_id: format!("1100000{:09}", placed.counter),
    }
}
