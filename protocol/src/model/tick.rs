//! A market tick as published on `md.tick.<EXCHANGE>.<SYMBOL>`, and its richer forms.
//!
//! [`Tick`] is the core every consumer may rely on (the paper broker decodes exactly
//! these fields). [`MarketTick`] is what the publisher actually sends: the same fields
//! plus optional QUOTE and SNAP_QUOTE fields, named after Angel One's subscription modes.
//! Because unknown fields are ignored, a [`MarketTick`] payload decodes as a [`Tick`].
//! The five-level book travels separately on `md.depth.<EXCHANGE>.<SYMBOL>` as a [`Depth`].

use serde::{Deserialize, Serialize};

/// One price update for one instrument: the core fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// Exchange segment, e.g. `NSE`.
    pub exchange: String,
    /// Trading symbol, unescaped, e.g. `SBIN-EQ`.
    pub symbol: String,
    /// Per-symbol sequence number, starting at 1, so subscribers can detect gaps.
    pub seq: u64,
    /// Exchange timestamp, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Last traded price, in paise.
    pub ltp: i64,
    /// Quantity of the last trade.
    pub last_qty: i64,
    /// Cumulative volume traded today.
    pub volume: i64,
    /// Best bid price, in paise.
    pub bid: i64,
    /// Best ask price, in paise.
    pub ask: i64,
}

/// How much a tick carries, after Angel One's SmartWebSocketV2 modes (SPEC §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeedMode {
    /// Price only (plus the core fields).
    Ltp,
    /// Adds the day's OHLC, average price and buy/sell totals.
    #[default]
    Quote,
    /// Adds circuit limits, 52-week range and open interest; the book goes to `md.depth`.
    SnapQuote,
}

/// A tick with every field a source can provide. The wire form of `md.tick.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketTick {
    /// Exchange segment, e.g. `NSE`.
    pub exchange: String,
    /// Trading symbol, unescaped.
    pub symbol: String,
    /// Per-symbol sequence number, +1 per tick.
    pub seq: u64,
    /// Exchange timestamp, ms since the epoch.
    pub ts_ms: i64,
    /// Last traded price, paise.
    pub ltp: i64,
    /// Quantity of the last trade.
    pub last_qty: i64,
    /// Cumulative volume today.
    pub volume: i64,
    /// Best bid, paise.
    pub bid: i64,
    /// Best ask, paise.
    pub ask: i64,
    /// Which optional groups below are filled.
    #[serde(default)]
    pub mode: FeedMode,
    /// QUOTE: day open, paise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<i64>,
    /// QUOTE: day high, paise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<i64>,
    /// QUOTE: day low, paise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<i64>,
    /// QUOTE: previous session's close, paise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<i64>,
    /// QUOTE: volume-weighted average traded price today, paise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_price: Option<i64>,
    /// QUOTE: total quantity bid across the book.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_buy_qty: Option<i64>,
    /// QUOTE: total quantity offered across the book.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_sell_qty: Option<i64>,
    /// SNAP_QUOTE: upper circuit limit, paise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_circuit: Option<i64>,
    /// SNAP_QUOTE: lower circuit limit, paise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_circuit: Option<i64>,
    /// SNAP_QUOTE: open interest (derivatives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_interest: Option<i64>,
    /// The five-level book, when the source has one; published on `md.depth.*`, never
    /// inside the tick.
    #[serde(skip)]
    pub depth: Option<Box<Book>>,
}

impl MarketTick {
    /// The core fields.
    pub fn core(&self) -> Tick {
        Tick {
            exchange: self.exchange.clone(),
            symbol: self.symbol.clone(),
            seq: self.seq,
            ts_ms: self.ts_ms,
            ltp: self.ltp,
            last_qty: self.last_qty,
            volume: self.volume,
            bid: self.bid,
            ask: self.ask,
        }
    }

    /// A tick with only the core fields (mode LTP).
    pub fn from_core(tick: Tick) -> Self {
        Self {
            exchange: tick.exchange,
            symbol: tick.symbol,
            seq: tick.seq,
            ts_ms: tick.ts_ms,
            ltp: tick.ltp,
            last_qty: tick.last_qty,
            volume: tick.volume,
            bid: tick.bid,
            ask: tick.ask,
            mode: FeedMode::Ltp,
            open: None,
            high: None,
            low: None,
            close: None,
            avg_price: None,
            total_buy_qty: None,
            total_sell_qty: None,
            upper_circuit: None,
            lower_circuit: None,
            open_interest: None,
            depth: None,
        }
    }

    /// The depth message for this tick, if it has a book.
    pub fn depth_message(&self) -> Option<Depth> {
        self.depth.as_ref().map(|book| Depth {
            exchange: self.exchange.clone(),
            symbol: self.symbol.clone(),
            seq: self.seq,
            ts_ms: self.ts_ms,
            bids: book.bids.clone(),
            asks: book.asks.clone(),
        })
    }
}

/// One price level of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    /// Price, paise.
    pub price: i64,
    /// Quantity resting at this price.
    pub qty: i64,
    /// Number of orders at this price.
    pub orders: i64,
}

/// Best bids (highest first) and asks (lowest first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Book {
    /// Bids, best first.
    pub bids: Vec<Level>,
    /// Asks, best first.
    pub asks: Vec<Level>,
}

/// The wire form of `md.depth.<EXCHANGE>.<SYMBOL>`: the book as of tick `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Depth {
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol, unescaped.
    pub symbol: String,
    /// The `seq` of the tick this book belongs to.
    pub seq: u64,
    /// Exchange timestamp, ms since the epoch.
    pub ts_ms: i64,
    /// Bids, best (highest) first.
    pub bids: Vec<Level>,
    /// Asks, best (lowest) first.
    pub asks: Vec<Level>,
}
