//! An order as the broker holds it, the events its state changes produce, and how one
//! order moves against a price: the exchange's checks at placement, then trigger, fill or
//! IOC cancel (SPEC §3, §9).

use std::net::IpAddr;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

/// The status of an after-market order waiting for the open (SPEC §3.2).
pub const AFTER_MARKET: &str = "after market order req received";

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

pub(super) fn event(order: &SimOrder, code: &'static str) -> OrderEvent {
    OrderEvent {
        client_code: order.client_code.clone(),
        code,
        order: order.clone(),
    }
}

/// Why the exchange would reject this order, if it would.
pub(super) fn rejection(o: &SimOrder) -> Option<String> {
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
pub(super) fn step(
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
