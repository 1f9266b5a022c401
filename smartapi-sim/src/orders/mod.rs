//! The broker's order book: placement, modification, cancellation and fills against the
//! simulated last traded price, producing one event per order state change (SPEC §9).
//!
//! With market hours enforced ([`Hours`]), an order placed while its exchange is closed is
//! an after-market order (SPEC §3.1: "any order placed after hours is treated as AMO"):
//! status `after market order req received` (AB06), modifiable (AB08) and cancellable
//! (AB07), and sent to the exchange at the next open ([`OrderBook::release_after_market`]),
//! where it works like any other order. Nothing fills while the exchange is closed.

mod input;
pub mod record;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use serde_json::Value;

use crate::calendar::{SimCalendar, SimClock};
use crate::codes;
pub use input::OrderInput;

/// The status of an after-market order waiting for the open (SPEC §3.2).
pub const AFTER_MARKET: &str = "after market order req received";

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

/// An order as the broker holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimOrder {
    pub orderid: String,
    pub uniqueorderid: String,
    pub ordertag: String,
    /// Lowercase SmartAPI status: `open`, `complete`, `cancelled`, `rejected`,
    /// `trigger pending`, `after market order req received`.
    pub status: String,
    pub symbol: String,
    pub token: String,
    pub exchange: String,
    /// `BUY` or `SELL`.
    pub side: String,
    pub ordertype: String,
    pub variety: String,
    pub producttype: String,
    pub duration: String,
    pub quantity: i64,
    pub disclosed_quantity: i64,
    pub filled: i64,
    pub price_paise: i64,
    pub average_price_paise: i64,
    pub trigger_price_paise: i64,
    /// Rejection reason, empty otherwise.
    pub text: String,
    /// TCP peer address of the placing request (the static-IP check uses it).
    pub source_ip: IpAddr,
    pub client_code: String,
    pub lot_size: i64,
    pub updated_at: DateTime<FixedOffset>,
    pub filled_at: Option<DateTime<FixedOffset>>,
    pub fill_id: String,
    pub exchange_order_id: String,
}

/// One order state change, for the order-update WebSocket.
#[derive(Debug, Clone)]
pub struct OrderEvent {
    pub client_code: String,
    /// AB01 open, AB02 cancelled, AB03 rejected, AB04 modified, AB05 complete,
    /// AB06 after-market order received, AB07 after-market order cancelled, AB08
    /// after-market modify received, AB09 open pending, AB10 trigger pending.
    pub code: &'static str,
    pub order: SimOrder,
}

/// A refusal of the request itself (status:false envelope), not a rejected order.
pub type Refusal = (&'static str, String);

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
        let mut order = SimOrder {
            orderid: format!("{}{:09}", now.format("%y%m%d"), self.counter),
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
            source_ip,
            client_code: client_code.to_owned(),
            lot_size,
            updated_at: now,
            filled_at: None,
            fill_id: String::new(),
            exchange_order_id: format!("1100000{:09}", self.counter),
        };
        let mut events = vec![event(&order, "AB09")];
        if let Some(reason) = rejection(&order) {
            order.status = "rejected".into();
            order.text = reason;
            events.push(event(&order, "AB03"));
        } else if !self.hours.open(&order.exchange) {
            order.status = AFTER_MARKET.into();
            events = vec![event(&order, "AB06")];
        } else {
            order.status = if order.ordertype.starts_with("STOPLOSS") {
                "trigger pending"
            } else {
                "open"
            }
            .into();
            events.push(event(
                &order,
                if order.status == "open" {
                    "AB01"
                } else {
                    "AB10"
                },
            ));
            events.extend(step(&mut order, ltp, &mut self.counter, now));
        }
        self.orders
            .entry(client_code.to_owned())
            .or_default()
            .push(order.clone());
        (order, events)
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

fn event(order: &SimOrder, code: &'static str) -> OrderEvent {
    OrderEvent {
        client_code: order.client_code.clone(),
        code,
        order: order.clone(),
    }
}

/// Why the exchange would reject this order, if it would.
fn rejection(o: &SimOrder) -> Option<String> {
    if o.quantity <= 0 {
        return Some("Quantity should be greater than zero".into());
    }
    if o.lot_size > 1 && o.quantity % o.lot_size != 0 {
        return Some(format!(
            "Quantity should be a multiple of lot size {}",
            o.lot_size
        ));
    }
    if matches!(o.ordertype.as_str(), "LIMIT" | "STOPLOSS_LIMIT") && o.price_paise <= 0 {
        return Some("Price should be greater than zero for a limit order".into());
    }
    if o.ordertype.starts_with("STOPLOSS") && o.trigger_price_paise <= 0 {
        return Some("Trigger price should be greater than zero for a stop-loss order".into());
    }
    None
}

/// Advances one order against `ltp`: trigger, fill, or cancel an unfilled IOC.
fn step(
    o: &mut SimOrder,
    ltp: i64,
    counter: &mut u64,
    now: DateTime<FixedOffset>,
) -> Vec<OrderEvent> {
    let mut events = Vec::new();
    let buy = o.side == "BUY";
    if o.status == "trigger pending" {
        let triggered = if buy {
            ltp >= o.trigger_price_paise
        } else {
            ltp <= o.trigger_price_paise
        };
        if !triggered {
            return events;
        }
        o.ordertype = if o.ordertype == "STOPLOSS_MARKET" {
            "MARKET"
        } else {
            "LIMIT"
        }
        .into();
        o.status = "open".into();
        o.updated_at = now;
        events.push(event(o, "AB01"));
    }
    if o.status != "open" {
        return events;
    }
    let marketable = match o.ordertype.as_str() {
        "MARKET" => true,
        _ => {
            if buy {
                ltp <= o.price_paise
            } else {
                ltp >= o.price_paise
            }
        }
    };
    if marketable {
        *counter += 1;
        o.filled = o.quantity;
        o.average_price_paise = ltp;
        o.status = "complete".into();
        o.fill_id = format!("{:08}", *counter);
        o.filled_at = Some(now);
        o.updated_at = now;
        events.push(event(o, "AB05"));
    } else if o.duration == "IOC" {
        o.status = "cancelled".into();
        o.updated_at = now;
        events.push(event(o, "AB02"));
    }
    events
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CC: &str = "C1";

    fn input(ordertype: &str, price: i64, trigger: i64) -> OrderInput {
        OrderInput {
            variety: if ordertype.starts_with("STOPLOSS") {
                "STOPLOSS"
            } else {
                "NORMAL"
            }
            .into(),
            symbol: "SBIN-EQ".into(),
            token: "3045".into(),
            exchange: "NSE".into(),
            side: "BUY".into(),
            ordertype: ordertype.into(),
            producttype: "DELIVERY".into(),
            duration: "DAY".into(),
            quantity: 2,
            disclosed_quantity: 0,
            price_paise: price,
            trigger_price_paise: trigger,
            ordertag: "t".into(),
        }
    }

    /// A book holding one resting order (the price is 800.00; nothing crosses).
    fn resting(ordertype: &str, price: i64, trigger: i64) -> (OrderBook, String) {
        let mut book = OrderBook::default();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (order, _) = book.place(CC, &input(ordertype, price, trigger), 1, 80_000, ip);
        assert!(matches!(order.status.as_str(), "open" | "trigger pending"));
        (book, order.orderid)
    }

    fn modify(book: &mut OrderBook, id: &str, body: Value) -> Result<SimOrder, Refusal> {
        book.modify(CC, id, &body, |_, _| 80_000).map(|(o, _)| o)
    }

    #[test]
    fn modify_changes_quantity_price_trigger_and_order_type() {
        let (mut book, id) = resting("LIMIT", 70_000, 0);
        let o = modify(
            &mut book,
            &id,
            json!({"variety": "NORMAL", "quantity": "3"}),
        )
        .expect("qty");
        assert_eq!(
            (o.quantity, o.price_paise, o.status.as_str()),
            (3, 70_000, "open")
        );
        let o = modify(
            &mut book,
            &id,
            json!({"variety": "NORMAL", "price": "701.50"}),
        )
        .expect("price");
        assert_eq!((o.quantity, o.price_paise), (3, 70_150));

        let (mut book, id) = resting("STOPLOSS_LIMIT", 90_500, 90_000);
        let body = json!({"variety": "STOPLOSS", "ordertype": "STOPLOSS_LIMIT",
                          "triggerprice": "910", "price": "915"});
        let o = modify(&mut book, &id, body).expect("trigger");
        assert_eq!(
            (o.trigger_price_paise, o.price_paise, o.status.as_str()),
            (91_000, 91_500, "trigger pending")
        );
        let body = json!({"variety": "STOPLOSS", "ordertype": "STOPLOSS_MARKET"});
        let o = modify(&mut book, &id, body).expect("order type");
        assert_eq!(
            (o.ordertype.as_str(), o.status.as_str()),
            ("STOPLOSS_MARKET", "trigger pending")
        );
        assert_eq!(
            book.orders(CC)[0],
            o,
            "the book holds what the reply showed"
        );
    }

    #[test]
    fn a_refused_modification_changes_nothing() {
        let (mut book, id) = resting("LIMIT", 70_000, 0);
        let before = book.orders(CC)[0].clone();
        let body = json!({"variety": "NORMAL", "ordertype": "MARKET", "quantity": "-1"});
        assert!(modify(&mut book, &id, body).is_err());
        assert_eq!(book.orders(CC)[0], before);
    }

    #[test]
    fn modify_and_cancel_must_name_the_variety_the_order_was_placed_with() {
        let (mut book, id) = resting("STOPLOSS_LIMIT", 90_500, 90_000);
        let wrong = modify(
            &mut book,
            &id,
            json!({"variety": "NORMAL", "quantity": "3"}),
        );
        assert_eq!(
            wrong.map(|_| ()),
            Err((codes::INVALID_VARIETY, "Invalid Order Variety".into()))
        );
        let missing = book.cancel(CC, &id, &json!({"orderid": id}));
        assert_eq!(
            missing.map(|_| ()).expect_err("no variety").0,
            codes::INVALID_VARIETY
        );
        assert_eq!(book.orders(CC)[0].quantity, 2);
        let (o, events) = book
            .cancel(CC, &id, &json!({"variety": "STOPLOSS", "orderid": id}))
            .expect("cancel");
        assert_eq!(o.status, "cancelled");
        assert_eq!(events.len(), 1);
    }
}
