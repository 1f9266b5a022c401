//! A market tick as published on `md.tick.<EXCHANGE>.<SYMBOL>`.

use serde::{Deserialize, Serialize};

/// One price update for one instrument.
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
