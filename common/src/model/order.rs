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

/// How the order is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderType {
    /// Fill at the prevailing price.
    Market,
    /// Fill at `price` or better.
    Limit,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Stored, not yet sent to the broker.
    New,
    /// Resting at the broker.
    Open,
    /// Completely filled.
    Filled,
    /// Refused by the broker or by a check.
    Rejected,
}

impl OrderStatus {
    /// The stored and wire form, e.g. `FILLED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Open => "OPEN",
            Self::Filled => "FILLED",
            Self::Rejected => "REJECTED",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NEW" => Self::New,
            "OPEN" => Self::Open,
            "FILLED" => Self::Filled,
            "REJECTED" => Self::Rejected,
            _ => return None,
        })
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
    /// `MARKET` or `LIMIT`.
    pub order_type: OrderType,
    /// Number of shares (units); must be positive.
    pub quantity: i64,
    /// Limit price in paise; required for `LIMIT`, ignored for `MARKET`.
    #[serde(default)]
    pub price: Option<i64>,
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
        match (self.order_type, self.price) {
            (OrderType::Limit, None) => invalid("a LIMIT order needs a price".into()),
            (OrderType::Limit, Some(p)) if p <= 0 => {
                invalid(format!("price must be positive paise, got {p}"))
            }
            _ => Ok(()),
        }
    }
}

/// What the worker knows about an order after handling a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReply {
    /// Pinnacle's id for the order (UUID).
    pub order_id: String,
    /// The caller's id, echoed.
    pub client_order_id: String,
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
            account: None,
        }
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
