//! Order requests and replies on `orders.<user_id>.place`.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorBody, ErrorCode};

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl Side {
    /// Both sides.
    pub const ALL: [Self; 2] = [Self::Buy, Self::Sell];

    /// The stored and wire form, `BUY` or `SELL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "BUY",
            Self::Sell => "SELL",
        }
    }
}

super::from_wire_text!(Side, "side");

/// Angel One's product: how long the position may be held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Product {
    /// Cash delivery (CNC): held across days. The default.
    #[default]
    Delivery,
    /// Intraday (MIS): squared off before the close.
    Intraday,
    /// Derivatives carried forward (NRML).
    Carryforward,
    /// Margin trading.
    Margin,
}

impl Product {
    /// Every product.
    pub const ALL: [Self; 4] = [
        Self::Delivery,
        Self::Intraday,
        Self::Carryforward,
        Self::Margin,
    ];

    /// The stored form, e.g. `INTRADAY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivery => "DELIVERY",
            Self::Intraday => "INTRADAY",
            Self::Carryforward => "CARRYFORWARD",
            Self::Margin => "MARGIN",
        }
    }
}

super::from_wire_text!(Product, "product");

/// How the order is priced (Angel One's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderType {
    /// Fill at the prevailing price.
    Market,
    /// Fill at `price` or better.
    Limit,
    /// Once the price reaches `trigger_price`, a `LIMIT` order at `price`.
    StoplossLimit,
    /// Once the price reaches `trigger_price`, a `MARKET` order.
    StoplossMarket,
}

impl OrderType {
    /// Every order type.
    pub const ALL: [Self; 4] = [
        Self::Market,
        Self::Limit,
        Self::StoplossLimit,
        Self::StoplossMarket,
    ];

    /// The stored and wire form, e.g. `STOPLOSS_LIMIT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Market => "MARKET",
            Self::Limit => "LIMIT",
            Self::StoplossLimit => "STOPLOSS_LIMIT",
            Self::StoplossMarket => "STOPLOSS_MARKET",
        }
    }

    /// Whether the order waits for `trigger_price`.
    pub fn is_stop(self) -> bool {
        matches!(self, Self::StoplossLimit | Self::StoplossMarket)
    }

    /// Whether the order carries a limit `price`.
    pub fn has_limit(self) -> bool {
        matches!(self, Self::Limit | Self::StoplossLimit)
    }

    /// Whether an order of this type fills when the market trades at `ltp`: market orders
    /// always; limit orders at or better than `price`; stop orders once `ltp` reaches
    /// `trigger` (a buy stop at or above it, a sell stop at or below it), then as a market
    /// (`STOPLOSS_MARKET`) or limit (`STOPLOSS_LIMIT`) order.
    pub fn fills_at(self, side: Side, price: Option<i64>, trigger: Option<i64>, ltp: i64) -> bool {
        let within_limit = match (side, price) {
            (Side::Buy, Some(limit)) => ltp <= limit,
            (Side::Sell, Some(limit)) => ltp >= limit,
            _ => false,
        };
        let triggered = match (side, trigger) {
            (Side::Buy, Some(trigger)) => ltp >= trigger,
            (Side::Sell, Some(trigger)) => ltp <= trigger,
            _ => false,
        };
        match self {
            Self::Market => true,
            Self::Limit => within_limit,
            Self::StoplossMarket => triggered,
            Self::StoplossLimit => triggered && within_limit,
        }
    }
}

super::from_wire_text!(OrderType, "order type");
super::from_wire_text!(OrderStatus, "status");

/// Where an order stands: the states of the order state machine.
///
/// ```text
/// NEW ─▶ SUBMITTED ─▶ OPEN ─▶ PARTIALLY_FILLED ─▶ FILLED
///  │         │          │  ╲        │
///  ▼         ▼          ▼   ▶ PENDING_MODIFY / PENDING_CANCEL ─▶ CANCELLED
/// REJECTED  UNKNOWN (ambiguous broker outcome, resolved by asking the broker)
/// ```
/// [`OrderStatus::can_become`] is the whole transition table; the store refuses anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Stored, not yet sent to the broker.
    New,
    /// Being sent to the broker.
    Submitted,
    /// Resting at the broker, nothing filled.
    Open,
    /// Resting at the broker, partly filled.
    PartiallyFilled,
    /// Completely filled (terminal).
    Filled,
    /// A modification is on its way to the broker.
    PendingModify,
    /// A cancellation is on its way to the broker.
    PendingCancel,
    /// Cancelled, possibly after partial fills (terminal).
    Cancelled,
    /// Refused by a check or by the broker (terminal).
    Rejected,
    /// The broker's answer was lost (timeout, empty reply); never re-sent blindly, it is
    /// reconciled by asking the broker.
    Unknown,
}

impl OrderStatus {
    /// Every state, for tests and documentation.
    pub const ALL: [Self; 10] = [
        Self::New,
        Self::Submitted,
        Self::Open,
        Self::PartiallyFilled,
        Self::Filled,
        Self::PendingModify,
        Self::PendingCancel,
        Self::Cancelled,
        Self::Rejected,
        Self::Unknown,
    ];

    /// The stored and wire form, e.g. `PARTIALLY_FILLED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Submitted => "SUBMITTED",
            Self::Open => "OPEN",
            Self::PartiallyFilled => "PARTIALLY_FILLED",
            Self::Filled => "FILLED",
            Self::PendingModify => "PENDING_MODIFY",
            Self::PendingCancel => "PENDING_CANCEL",
            Self::Cancelled => "CANCELLED",
            Self::Rejected => "REJECTED",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Parses the stored form (`None` on an unknown one; [`str::parse`] says which).
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Filled | Self::Cancelled | Self::Rejected)
    }

    /// Whether the order is live at the broker and may be modified or cancelled.
    pub fn is_working(self) -> bool {
        matches!(self, Self::Open | Self::PartiallyFilled)
    }

    /// Whether a worker is talking to the broker about the order right now (placing,
    /// modifying or cancelling it): such an order has an owner holding a lease.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            Self::Submitted | Self::PendingModify | Self::PendingCancel
        )
    }

    /// The transition table.
    pub fn can_become(self, next: Self) -> bool {
        use OrderStatus::*;
        match (self, next) {
            (New, Submitted | Rejected) => true,
            (Submitted, Open | PartiallyFilled | Filled | Rejected | Cancelled | Unknown) => true,
            (Open, PartiallyFilled | Filled | PendingModify | PendingCancel | Cancelled) => true,
            // A broker that acknowledges an order before its risk checks and the exchange
            // have seen it (Angel One) can still reject it, before anything fills.
            (Open, Rejected) => true,
            (
                PartiallyFilled,
                PartiallyFilled | Filled | PendingModify | PendingCancel | Cancelled,
            ) => true,
            // A modification lands (or is refused, and the order stays as it was); fills race it.
            (PendingModify, Open | PartiallyFilled | Filled | Cancelled | Unknown) => true,
            // A fill can beat the cancel; a refused cancel leaves the order working.
            (PendingCancel, Cancelled | Filled | Open | PartiallyFilled | Unknown) => true,
            // Reconciliation with the broker settles an ambiguous outcome either way.
            (Unknown, Open | PartiallyFilled | Filled | Cancelled | Rejected) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
mod tests {
    use super::*;

    fn request() -> OrderRequest {
        OrderRequest {
            client_order_id: "c-1".into(),
            exchange: "NSE".into(),
            symbol: "SBIN-EQ".into(),
            side: Side::Buy,
            order_type: OrderType::Market,
            quantity: 10,
            price: None,
            trigger_price: None,
            product: Default::default(),
            account: None,
        }
    }

    #[test]
    fn the_state_machine_has_no_exit_from_terminal_states() {
        for from in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(from.as_str()), Some(from));
            let json = serde_json::to_string(&from).expect("serialize");
            assert_eq!(json, format!("\"{}\"", from.as_str()));
            for to in OrderStatus::ALL {
                if from.is_terminal() {
                    assert!(!from.can_become(to), "{from} -> {to}");
                }
            }
        }
        use OrderStatus::*;
        assert!(New.can_become(Submitted));
        assert!(
            !New.can_become(Filled),
            "an order must be submitted before it fills"
        );
        assert!(!Open.can_become(New));
        assert!(PendingCancel.can_become(Filled), "a fill may beat a cancel");
        assert!(
            Open.can_become(Rejected) && !PartiallyFilled.can_become(Rejected),
            "an acknowledged order can be rejected until something fills"
        );
        assert!(Unknown.can_become(Filled) && Unknown.can_become(Rejected));
        assert!(
            !Unknown.can_become(Submitted),
            "an ambiguous order is never re-sent"
        );
    }

    #[test]
    fn stop_orders_trigger_then_fill_as_market_or_limit() {
        use OrderType::*;
        // A sell stop-market at 950 triggers on the way down.
        assert!(!StoplossMarket.fills_at(Side::Sell, None, Some(950), 960));
        assert!(StoplossMarket.fills_at(Side::Sell, None, Some(950), 950));
        // A buy stop-limit 100/102 fills between its trigger and its limit.
        assert!(!StoplossLimit.fills_at(Side::Buy, Some(102), Some(100), 99));
        assert!(StoplossLimit.fills_at(Side::Buy, Some(102), Some(100), 101));
        assert!(!StoplossLimit.fills_at(Side::Buy, Some(102), Some(100), 103));
        assert!(Limit.fills_at(Side::Buy, Some(102), None, 101));
        assert!(Market.fills_at(Side::Sell, None, None, 1));
        let stop = OrderRequest {
            order_type: StoplossLimit,
            price: Some(102),
            trigger_price: Some(100),
            ..request()
        };
        assert!(stop.validate(100).is_ok());
        for bad in [
            OrderRequest {
                trigger_price: None,
                product: Default::default(),
                ..stop.clone()
            },
            OrderRequest {
                trigger_price: Some(0),
                ..stop.clone()
            },
            OrderRequest {
                trigger_price: Some(105),
                ..stop.clone()
            },
            OrderRequest {
                price: None,
                ..stop.clone()
            },
        ] {
            assert_eq!(
                bad.validate(100).err().map(|e| e.code),
                Some(ErrorCode::InvalidRequest)
            );
        }
        let json = serde_json::to_string(&StoplossMarket).expect("serialize");
        assert_eq!(json, "\"STOPLOSS_MARKET\"");
    }

    #[test]
    fn rejects_bad_quantities_and_prices() {
        assert!(request().validate(100).is_ok());
        for qty in [0, -5, 101, i64::MAX, i64::MIN] {
            let err = OrderRequest {
                quantity: qty,
                ..request()
            }
            .validate(100)
            .expect_err("must reject");
            assert_eq!(err.code, ErrorCode::InvalidRequest);
        }
        let limit = OrderRequest {
            order_type: OrderType::Limit,
            ..request()
        };
        assert!(limit.validate(100).is_err());
        assert!(OrderRequest {
            price: Some(-1),
            ..limit.clone()
        }
        .validate(100)
        .is_err());
        assert!(OrderRequest {
            price: Some(82_000),
            ..limit
        }
        .validate(100)
        .is_ok());
        assert!(OrderRequest {
            client_order_id: "x".repeat(65),
            ..request()
        }
        .validate(100)
        .is_err());
        assert!(OrderRequest {
            client_order_id: "drop table;".into(),
            ..request()
        }
        .validate(100)
        .is_err());
    }
}
