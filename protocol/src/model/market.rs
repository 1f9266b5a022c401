//! Market-data request and reply types: last value, snapshot, candles, symbols, market
//! status.
//!
//! Served by the publisher on `md.req.<verb>` (see [`crate::subjects::md`]). Every price
//! is integer paise; every time is ms since the Unix epoch, except candle `from`/`to`,
//! which use Angel One's `yyyy-MM-dd HH:mm` IST format.

use serde::{Deserialize, Serialize};

/// `md.req.last`: the latest tick of one symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRequest {
    /// Exchange segment, e.g. `NSE`.
    pub exchange: String,
    /// Trading symbol, e.g. `SBIN-EQ`.
    pub symbol: String,
}

/// `md.req.snapshot`: the latest tick of many symbols in one request, either an explicit
/// list or every symbol whose tick subject matches a `md.tick.` wildcard (paged).
///
/// Exactly one of `symbols` and `subject` is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// Explicit symbols (at most the service's limit, 1000).
    #[serde(default)]
    pub symbols: Vec<LastRequest>,
    /// A tick-subject filter, the one the client subscribed with: `md.tick.>`,
    /// `md.tick.NSE.*`, `md.tick.*.SBIN-EQ` (NATS wildcards, escaped symbols).
    #[serde(default)]
    pub subject: Option<String>,
    /// With `subject`: only ticks whose subject sorts after this one (the previous page's
    /// `next`).
    #[serde(default)]
    pub after: Option<String>,
    /// With `subject`: the page size (default and largest: the service's limit, 1000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The reply to [`SnapshotRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotReply {
    /// The latest tick of each symbol, ordered by tick subject; each carries its `seq`.
    pub ticks: Vec<super::tick::MarketTick>,
    /// Listed symbols the service knows but has no tick for yet.
    #[serde(default)]
    pub missing: Vec<LastRequest>,
    /// Every exchange's current status (what `md.status.<EXCHANGE>` last said).
    pub status: Vec<ExchangeStatus>,
    /// With `subject`: the `after` of the next page, absent on the last one.
    #[serde(default)]
    pub next: Option<String>,
    /// When the snapshot was taken, ms since the epoch.
    pub ts_ms: i64,
}

/// `md.req.candles`: historical candles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandleRequest {
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// Angel One interval name, e.g. `ONE_MINUTE`, `ONE_DAY`.
    pub interval: String,
    /// Start, `yyyy-MM-dd HH:mm` in IST (inclusive).
    pub from: String,
    /// End, `yyyy-MM-dd HH:mm` in IST (inclusive).
    pub to: String,
}

/// One OHLCV candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candle {
    /// Start of the candle, ms since the epoch.
    pub ts_ms: i64,
    /// Open, paise.
    pub open: i64,
    /// High, paise.
    pub high: i64,
    /// Low, paise.
    pub low: i64,
    /// Close, paise.
    pub close: i64,
    /// Volume traded in the candle.
    pub volume: i64,
}

/// The reply to [`CandleRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandleReply {
    /// Exchange segment, echoed.
    pub exchange: String,
    /// Trading symbol, echoed.
    pub symbol: String,
    /// Interval, echoed.
    pub interval: String,
    /// Where the candles came from: `simulated`, `stored` or `angel_one`.
    pub source: String,
    /// Candles in time order, only within market hours.
    pub candles: Vec<Candle>,
}

/// One instrument from the instrument master (SPEC §5), with numbers parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instrument {
    /// Exchange token (Angel One's `symboltoken`).
    pub token: String,
    /// Trading symbol, e.g. `SBIN-EQ`.
    pub symbol: String,
    /// Underlying or company name.
    pub name: String,
    /// Exchange segment, e.g. `NSE`, `NFO`.
    pub exchange: String,
    /// Expiry as `DDMMMYYYY`, or empty.
    pub expiry: String,
    /// Strike in paise, for options; `None` when not applicable.
    pub strike: Option<i64>,
    /// Lot size, units.
    pub lot_size: i64,
    /// Angel One instrument type: empty for cash equity, `AMXIDX`, `FUTIDX`, `OPTSTK`, …
    pub instrument_type: String,
    /// Price step, paise.
    pub tick_size: i64,
}

/// `md.req.symbols.search`: instruments whose symbol or name matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolSearch {
    /// Case-insensitive text: a symbol prefix, or a word of the name.
    pub query: String,
    /// Only this exchange segment.
    #[serde(default)]
    pub exchange: Option<String>,
    /// At most this many results (default 20, at most 500).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `md.req.symbols.lookup`: one instrument by token or by symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolLookup {
    /// Exchange segment (required: tokens repeat across segments).
    pub exchange: String,
    /// Exchange token.
    #[serde(default)]
    pub token: Option<String>,
    /// Trading symbol.
    #[serde(default)]
    pub symbol: Option<String>,
}

/// The reply to [`SymbolSearch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolList {
    /// Matches, exact symbol matches first, then by symbol.
    pub instruments: Vec<Instrument>,
}

/// A market's trading phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MarketPhase {
    /// Pre-open call auction (equities, 09:00–09:15 IST).
    PreOpen,
    /// Continuous trading.
    Open,
    /// Closed: outside hours, a weekend or a holiday.
    Closed,
}

/// One exchange's status: the payload of `md.status.<EXCHANGE>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeStatus {
    /// Exchange segment.
    pub exchange: String,
    /// Current phase.
    pub status: MarketPhase,
    /// Why it is closed, when it is: `weekend`, `holiday: <name>`, `before hours`, `after hours`.
    pub reason: Option<String>,
    /// When this status was computed, ms since the epoch.
    pub ts_ms: i64,
    /// When the phase next changes, ms since the epoch (within the next 10 days).
    pub next_change_ms: Option<i64>,
}

/// `md.req.status`: one exchange, or all when `exchange` is left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StatusRequest {
    /// Exchange segment; all known ones when absent.
    #[serde(default)]
    pub exchange: Option<String>,
}

/// The reply to [`StatusRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusList {
    /// One entry per exchange.
    pub exchanges: Vec<ExchangeStatus>,
}
