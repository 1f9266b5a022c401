//! Order requests and replies on `orders.<user_id>.place`.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorBody, ErrorCode};

mod kinds;
pub use kinds::{OrderStatus, OrderType, Product, Side};

/// A request to place one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Caller-chosen id, unique per user; resending it never places a second order.
    pub client_order_id: String,
    /// Exchange segment, e.g. `NSE`.
    pub exchange: String,
    /// Trading symbol, e.g. `SBIN-EQ`.
    pub symbol: String,
    /// `BUY` or `SELL`.
    pub side: Side,
    /// `MARKET`, `LIMIT`, `STOPLOSS_LIMIT` or `STOPLOSS_MARKET`.
    pub order_type: OrderType,
    /// Number of shares (units); must be positive.
    pub quantity: i64,
    /// Limit price in paise; required for `LIMIT` and `STOPLOSS_LIMIT`, ignored otherwise.
    #[serde(default)]
    pub price: Option<i64>,
    /// Trigger price in paise; required for the stop-loss types, ignored otherwise.
    #[serde(default)]
    pub trigger_price: Option<i64>,
    /// `DELIVERY` (default), `INTRADAY`, `CARRYFORWARD` or `MARGIN`.
    #[serde(default)]
    pub product: Product,
    /// Which of the user's broker accounts to use, by label; defaults to the only one.
    #[serde(default)]
    pub account: Option<String>,
}

/// The longest accepted `client_order_id`.
pub const MAX_CLIENT_ORDER_ID_LEN: usize = 64;

impl OrderRequest {
    /// The order without the fields its type ignores: `price` on a `MARKET` or
    /// `STOPLOSS_MARKET` order, `trigger_price` on a `MARKET` or `LIMIT` one. What is
    /// stored, reported and sent to the broker then says only what the order means.
    #[must_use]
    pub fn without_ignored_fields(mut self) -> Self {
        if !self.order_type.has_limit() {
            self.price = None;
        }
        if !self.order_type.is_stop() {
            self.trigger_price = None;
        }
        self
    }

    /// Checks ranges and consistency; `max_quantity` is the configured ceiling.
    pub fn validate(&self, max_quantity: i64) -> Result<(), ErrorBody> {
        let invalid = |m: String| Err(ErrorBody::new(ErrorCode::InvalidRequest, m));
        if self.client_order_id.is_empty() || self.client_order_id.len() > MAX_CLIENT_ORDER_ID_LEN {
            return invalid(format!(
                "client_order_id must be 1 to {MAX_CLIENT_ORDER_ID_LEN} characters"
            ));
        }
        if !self
            .client_order_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return invalid("client_order_id may hold only ASCII letters, digits and -_.:".into());
        }
        if self.exchange.is_empty() || self.symbol.is_empty() {
            return invalid("exchange and symbol are required".into());
        }
        if self.quantity <= 0 {
            return invalid(format!("quantity must be positive, got {}", self.quantity));
        }
        if self.quantity > max_quantity {
            return invalid(format!(
                "quantity {} exceeds the maximum of {max_quantity}",
                self.quantity
            ));
        }
        if self.order_type.has_limit() {
            match self.price {
                None => return invalid("a LIMIT or STOPLOSS_LIMIT order needs a price".into()),
                Some(p) if p <= 0 => {
                    return invalid(format!("price must be positive paise, got {p}"))
                }
                Some(_) => {}
            }
        }
        if self.order_type.is_stop() {
            let Some(trigger) = self.trigger_price.filter(|t| *t > 0) else {
                return invalid("a stop-loss order needs a positive trigger_price".into());
            };
            if let (OrderType::StoplossLimit, Some(price)) = (self.order_type, self.price) {
                // A buy stop triggers on the way up and must be able to fill at its limit.
                let consistent = match self.side {
                    Side::Buy => trigger <= price,
                    Side::Sell => trigger >= price,
                };
                if !consistent {
                    return invalid(
                        "a BUY stop-loss needs trigger_price <= price; a SELL one, trigger_price >= price"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// What the worker knows about an order after handling a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReply {
    /// Pinnacle's id for the order (UUID).
    pub order_id: String,
    /// The caller's id, echoed.
    pub client_order_id: String,
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// `BUY` or `SELL`.
    pub side: Side,
    /// `MARKET`, `LIMIT`, `STOPLOSS_LIMIT` or `STOPLOSS_MARKET`.
    pub order_type: OrderType,
    /// Ordered quantity, units.
    pub quantity: i64,
    /// Limit price in paise, for `LIMIT` and `STOPLOSS_LIMIT` orders.
    pub price: Option<i64>,
    /// Trigger price in paise, for stop-loss orders.
    pub trigger_price: Option<i64>,
    /// The product.
    pub product: Product,
    /// The broker's id, once the broker has accepted it.
    pub broker_order_id: Option<String>,
    /// Current status.
    pub status: OrderStatus,
    /// Quantity filled so far.
    pub filled_quantity: i64,
    /// Average fill price in paise, once anything has filled.
    pub average_price: Option<i64>,
    /// Why the order was rejected, if it was.
    pub reject_reason: Option<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Time of the last change, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// Which order a modify, cancel or get refers to: `order_id` or `client_order_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRef {
    /// Pinnacle's id.
    #[serde(default)]
    pub order_id: Option<String>,
    /// The caller's id.
    #[serde(default)]
    pub client_order_id: Option<String>,
}

/// A request to change a working order. Unset fields keep their value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyRequest {
    /// Which order.
    #[serde(flatten)]
    pub order: OrderRef,
    /// New total quantity (units); must stay above what has already filled.
    #[serde(default)]
    pub quantity: Option<i64>,
    /// New limit price in paise.
    #[serde(default)]
    pub price: Option<i64>,
    /// New trigger price in paise (stop-loss orders).
    #[serde(default)]
    pub trigger_price: Option<i64>,
    /// The order's type, which cannot change: accepted only as the order's own, so a
    /// request to change it is refused rather than silently ignored.
    #[serde(default)]
    pub order_type: Option<OrderType>,
}

impl ModifyRequest {
    /// Checks the ranges a change must keep whatever the order is (a positive quantity no
    /// larger than `max_quantity`, positive prices), before the order is looked up; what
    /// depends on the order (its type, what has filled) is checked against it after.
    pub fn validate(&self, max_quantity: i64) -> Result<(), ErrorBody> {
        let invalid = |m: String| Err(ErrorBody::new(ErrorCode::InvalidRequest, m));
        if self.quantity.is_none() && self.price.is_none() && self.trigger_price.is_none() {
            let hint = if self.order_type.is_some() {
                " (the order type cannot be modified: cancel the order and place a new one)"
            } else {
                ""
            };
            return invalid(format!(
                "a modify needs a new quantity, price or trigger_price{hint}"
            ));
        }
        match self.quantity {
            Some(q) if q <= 0 => return invalid(format!("quantity must be positive, got {q}")),
            Some(q) if q > max_quantity => {
                return invalid(format!(
                    "quantity {q} exceeds the maximum of {max_quantity}"
                ))
            }
            _ => {}
        }
        if let Some(p) = self.price.filter(|p| *p <= 0) {
            return invalid(format!("price must be positive paise, got {p}"));
        }
        if let Some(t) = self.trigger_price.filter(|t| *t <= 0) {
            return invalid(format!("trigger_price must be positive paise, got {t}"));
        }
        Ok(())
    }
}

/// A request to list orders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    /// Only orders in these states.
    #[serde(default)]
    pub status: Option<Vec<OrderStatus>>,
    /// At most this many (1 to 500, default 100), newest first.
    #[serde(default)]
    pub limit: Option<u64>,
}

/// The reply to `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderList {
    /// Orders, newest first.
    pub orders: Vec<OrderReply>,
}

/// One state change of one order, on `events.orders.<user_id>` (stream `ORDER_EVENTS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// Unique id (UUIDv7); also the JetStream `Nats-Msg-Id`.
    pub event_id: String,
    /// When, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The state it left (absent for the first event).
    pub previous_status: Option<OrderStatus>,
    /// The order after the change.
    pub order: OrderReply,
}

/// Every reply: `{"ok": true, "result": …}` or `{"ok": false, "error": {code, message}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply<T> {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result, when `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    /// The error, when not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<T> Reply<T> {
    /// A successful reply.
    pub fn success(result: T) -> Self {
        Self {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failed reply.
    pub fn failure(error: ErrorBody) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

#[cfg(test)]
mod tests;
