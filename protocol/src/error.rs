//! Stable error codes and the structured error that every failed request gets back.
//!
//! Codes are part of the wire contract (`docs/PROTOCOL.md`): add new ones, never rename.

use serde::{Deserialize, Serialize};

/// A machine-readable reason for a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The payload could not be decoded (malformed MessagePack or JSON, wrong types).
    BadPayload,
    /// The payload decoded but a field is out of range or inconsistent.
    InvalidRequest,
    /// The payload is larger than the service accepts.
    PayloadTooLarge,
    /// No API token, or one that is unknown, malformed, expired or revoked.
    Unauthenticated,
    /// The token is valid but may not act on this subject or resource.
    Forbidden,
    /// The subject names a verb this service does not serve.
    UnknownVerb,
    /// The symbol has no market data, so it cannot be priced.
    UnknownSymbol,
    /// The user has no broker account to trade with (or none with that label).
    NoBrokerAccount,
    /// The audit event could not be durably stored, so credentials were not touched.
    AuditUnavailable,
    /// Stored credentials could not be decrypted.
    CredentialUnavailable,
    /// The broker refused the request: an order, or a market-data query such as
    /// historical candles (the message carries the broker's code).
    BrokerRejected,
    /// The account cannot pay for the order.
    InsufficientFunds,
    /// A sell of more than the account holds, where short selling is not allowed (paper:
    /// every product but `INTRADAY` sells only what it holds).
    InsufficientHoldings,
    /// The order's outcome was lost (a worker stopped mid-flight) and the broker has no
    /// such order: nothing was placed.
    NotAtBroker,
    /// The order is in a state that does not allow this (e.g. cancelling a filled order).
    InvalidState,
    /// Pre-trade risk: the quantity is above the user's or the platform's limit.
    RiskMaxQuantity,
    /// Pre-trade risk: price × quantity is above the order-value limit.
    RiskMaxValue,
    /// Pre-trade risk: the exchange is not allowed for this user.
    RiskExchange,
    /// Pre-trade risk: the symbol is not allowed for this user.
    RiskSymbol,
    /// Too many requests: orders per second (Angel One allows 9 place/modify/cancel per
    /// second), or logins and bad tokens from one source or for one user. Retry later.
    RateLimited,
    /// The user's or the platform's kill switch is on: no new orders.
    KillSwitch,
    /// The resource does not exist.
    NotFound,
    /// The resource already exists.
    Conflict,
    /// Something failed inside Pinnacle; the message carries no detail and the logs do.
    Internal,
    /// A candle interval that is not one of Angel One's names (`ONE_MINUTE`, …).
    InvalidInterval,
    /// A date range that is inverted, malformed, or longer than the broker allows for
    /// the interval.
    RangeTooLarge,
    /// The exchange segment is not one Pinnacle knows.
    UnknownExchange,
    /// The account or order does not meet the exchange's algo-trading rules (static IP,
    /// algo id, barred order types); nothing was sent.
    Regulatory,
    /// The broker could not be reached, did not answer in time or answered something
    /// unreadable, or the platform's broker session could not be established; nothing was
    /// substituted for its answer. Retry later.
    BrokerUnavailable,
    /// The caller's `Pinnacle-Deadline` had passed when the request was taken; nothing was
    /// done (no credential was touched, no order stored).
    DeadlineExceeded,
    /// The worker has no price for the symbol yet (it has just started, or the feed is
    /// behind); nothing was stored. Retry with the same client order id.
    PriceUnavailable,
    /// The user has several broker accounts, the request names none and no default
    /// account is set: name one (`account`) or set a default.
    AmbiguousAccount,
    /// (`events`) The order event stream could not be read just now (JetStream is
    /// unavailable or did not answer in time); nothing was changed. Retry later.
    EventsUnavailable,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [Self; 33] = [
        Self::BadPayload,
        Self::InvalidRequest,
        Self::PayloadTooLarge,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::UnknownVerb,
        Self::UnknownSymbol,
        Self::NoBrokerAccount,
        Self::AuditUnavailable,
        Self::CredentialUnavailable,
        Self::BrokerRejected,
        Self::InsufficientFunds,
        Self::InsufficientHoldings,
        Self::NotAtBroker,
        Self::InvalidState,
        Self::RiskMaxQuantity,
        Self::RiskMaxValue,
        Self::RiskExchange,
        Self::RiskSymbol,
        Self::RateLimited,
        Self::KillSwitch,
        Self::NotFound,
        Self::Conflict,
        Self::Internal,
        Self::InvalidInterval,
        Self::RangeTooLarge,
        Self::UnknownExchange,
        Self::Regulatory,
        Self::BrokerUnavailable,
        Self::DeadlineExceeded,
        Self::PriceUnavailable,
        Self::AmbiguousAccount,
        Self::EventsUnavailable,
    ];

    /// Whether the code says only that the request could not be served *now* (an outage,
    /// a rate limit, a price not known yet, a deadline): nothing was stored, and the same
    /// request, client order id and all, is attempted again when it is resent. A stored
    /// order never carries one of these.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::AuditUnavailable
                | Self::RateLimited
                | Self::BrokerUnavailable
                | Self::DeadlineExceeded
                | Self::PriceUnavailable
                | Self::EventsUnavailable
        )
    }

    /// The code as it appears on the wire, e.g. `BAD_PAYLOAD`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadPayload => "BAD_PAYLOAD",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::UnknownVerb => "UNKNOWN_VERB",
            Self::UnknownSymbol => "UNKNOWN_SYMBOL",
            Self::NoBrokerAccount => "NO_BROKER_ACCOUNT",
            Self::AuditUnavailable => "AUDIT_UNAVAILABLE",
            Self::CredentialUnavailable => "CREDENTIAL_UNAVAILABLE",
            Self::BrokerRejected => "BROKER_REJECTED",
            Self::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Self::InsufficientHoldings => "INSUFFICIENT_HOLDINGS",
            Self::NotAtBroker => "NOT_AT_BROKER",
            Self::InvalidState => "INVALID_STATE",
            Self::RiskMaxQuantity => "RISK_MAX_QUANTITY",
            Self::RiskMaxValue => "RISK_MAX_VALUE",
            Self::RiskExchange => "RISK_EXCHANGE",
            Self::RiskSymbol => "RISK_SYMBOL",
            Self::RateLimited => "RATE_LIMITED",
            Self::KillSwitch => "KILL_SWITCH",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::Internal => "INTERNAL",
            Self::InvalidInterval => "INVALID_INTERVAL",
            Self::RangeTooLarge => "RANGE_TOO_LARGE",
            Self::UnknownExchange => "UNKNOWN_EXCHANGE",
            Self::Regulatory => "REGULATORY",
            Self::BrokerUnavailable => "BROKER_UNAVAILABLE",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::PriceUnavailable => "PRICE_UNAVAILABLE",
            Self::AmbiguousAccount => "AMBIGUOUS_ACCOUNT",
            Self::EventsUnavailable => "EVENTS_UNAVAILABLE",
        }
    }
}

crate::model::wire_text::from_wire_text!(ErrorCode, "error code");

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of a failed reply: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable reason.
    pub code: ErrorCode,
    /// For people; never contains a secret.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}
