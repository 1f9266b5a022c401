//! The closed sets an order is made of: side, product, order type and status, with the
//! state machine that says which status may follow which.

use serde::{Deserialize, Serialize};

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

crate::model::wire_text::from_wire_text!(Side, "side");

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

crate::model::wire_text::from_wire_text!(Product, "product");

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

crate::model::wire_text::from_wire_text!(OrderType, "order type");
crate::model::wire_text::from_wire_text!(OrderStatus, "status");

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

    /// [`Self::can_become`] for an order with `filled` units filled, which the store
    /// checks: an order with fills is never `REJECTED`, from any state (what filled
    /// stands; the engine records a broker's "rejected" for such an order as `CANCELLED`).
    pub fn can_become_with(self, next: Self, filled: i64) -> bool {
        self.can_become(next) && !(next == Self::Rejected && filled > 0)
    }

    /// The state a broker's report of `self` is recorded as, for an order with `filled`
    /// units filled: a rejection of an order with fills is its end, `CANCELLED` (no exchange
    /// rejects what it has filled; [`Self::can_become_with`]); anything else as it is.
    pub fn recorded_as(self, filled: i64) -> Self {
        if self == Self::Rejected && filled > 0 {
            Self::Cancelled
        } else {
            self
        }
    }

    /// The transition table, by state ([`Self::can_become_with`] adds the fill).
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
            // The broker had rejected the order before the change reached it (its update had
            // not arrived): what `OPEN → REJECTED` would have been, so only with nothing
            // filled ([`Self::can_become_with`]).
            (PendingModify | PendingCancel, Rejected) => true,
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
