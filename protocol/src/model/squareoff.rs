//! The `squareoff` verb: close a broker account's intraday book now, on demand, the way
//! the daily sweep does after `PINNACLE_WORKER_SQUARE_OFF_AT`.

use serde::{Deserialize, Serialize};

use super::order::OrderReply;
use crate::error::ErrorBody;

/// Which account to square off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SquareOffRequest {
    /// Broker account label; may be left out when the user has exactly one account or a
    /// default account.
    #[serde(default)]
    pub account: Option<String>,
}

/// What a square-off did. An empty `failed` means every working `INTRADAY` order is
/// cancelled and every open `INTRADAY` position has a closing order working or filled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SquareOffReply {
    /// The working `INTRADAY` orders it cancelled, as they now stand.
    pub cancelled: Vec<OrderReply>,
    /// One closing order per open `INTRADAY` position, as it now stands: placed by this
    /// request, or earlier (by another square-off or the daily sweep) and still working
    /// or filled. A closing order the broker refused is here as `REJECTED`, and its
    /// position is in `failed`.
    pub closing: Vec<OrderReply>,
    /// What it could not do. Sending the same request again retries it: a refused closing
    /// order is tried again under the next attempt's client order id.
    pub failed: Vec<SquareOffFailure>,
}

/// An order it could not cancel, or a position it could not close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SquareOffFailure {
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// The order concerned: the working order not cancelled, or the refused closing
    /// order; absent when no order was stored.
    pub order_id: Option<String>,
    /// Why.
    pub error: ErrorBody,
}
