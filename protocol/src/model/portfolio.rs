//! Portfolio views: funds, positions and the trade book, as any broker reports them.

use serde::{Deserialize, Serialize};

use super::order::{Product, Side};

/// Which account a portfolio query is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortfolioRequest {
    /// Broker account label; may be left out when the user has exactly one.
    #[serde(default)]
    pub account: Option<String>,
}

/// Cash and margin, all in paise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funds {
    /// Starting (or deposited) cash.
    pub cash: i64,
    /// Net cash spent by fills: buys minus sells.
    pub used: i64,
    /// Held back: for open and submitted orders (their reservations) and, on paper, twice
    /// the value of open intraday shorts (the proceeds plus a 100 % margin).
    pub blocked: i64,
    /// What a new order can use: `cash - used - blocked`.
    pub available: i64,
}

/// The net holding in one instrument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// The product the position is held under.
    pub product: Product,
    /// Bought minus sold, units; negative is short.
    pub net_quantity: i64,
    /// Average price of the open position, paise (`None` when flat).
    pub average_price: Option<i64>,
    /// Units bought today.
    pub buy_quantity: i64,
    /// Units sold today.
    pub sell_quantity: i64,
    /// Profit or loss booked by closing trades, paise.
    pub realized_pnl: i64,
}

/// One fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Pinnacle's order id.
    pub order_id: String,
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// The product.
    pub product: Product,
    /// `BUY` or `SELL`.
    pub side: Side,
    /// Units filled.
    pub quantity: i64,
    /// Fill price, paise.
    pub price: i64,
    /// When, milliseconds since the Unix epoch.
    pub ts_ms: i64,
}

/// The reply to `positions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    /// One per instrument traded.
    pub positions: Vec<Position>,
}

/// A delivery holding: shares owned outright, carried across days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// Units held.
    pub quantity: i64,
    /// Average cost, paise.
    pub average_price: i64,
}

/// The reply to `holdings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    /// One per instrument held.
    pub holdings: Vec<Holding>,
}

/// The reply to `trades`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trades {
    /// Fills, oldest first.
    pub trades: Vec<Trade>,
}
