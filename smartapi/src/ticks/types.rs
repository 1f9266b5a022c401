//! The decoded shapes of a SmartWebSocketV2 packet: modes, exchange types, and one struct
//! per mode. Prices stay raw integers (paise, or 10^-7 rupees for currency); see
//! [`ExchangeType::price_divisor`] to scale them.

use serde::Serialize;

/// Subscription mode: the first byte of every packet and the `mode` of a subscribe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// 1: last traded price only (51 bytes).
    Ltp = 1,
    /// 2: LTP plus OHLC, volumes and buy/sell totals (123 bytes).
    Quote = 2,
    /// 3: QUOTE plus OI, best five, circuits and 52-week range (379 bytes).
    SnapQuote = 3,
    /// 4: 20-level depth, NSE_CM only (443 bytes).
    Depth = 4,
}

impl Mode {
    /// The mode for a wire byte, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Ltp),
            2 => Some(Self::Quote),
            3 => Some(Self::SnapQuote),
            4 => Some(Self::Depth),
            _ => None,
        }
    }

    /// The wire byte.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The length of a packet in this mode; longer frames are accepted, shorter are not.
    pub fn packet_len(self) -> usize {
        use super::layout::{DEPTH_LEN, LTP_LEN, QUOTE_LEN, SNAP_QUOTE_LEN};
        match self {
            Self::Ltp => LTP_LEN,
            Self::Quote => QUOTE_LEN,
            Self::SnapQuote => SNAP_QUOTE_LEN,
            Self::Depth => DEPTH_LEN,
        }
    }

    /// The SDK's name: `LTP`, `QUOTE`, `SNAP_QUOTE`, `DEPTH`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ltp => "LTP",
            Self::Quote => "QUOTE",
            Self::SnapQuote => "SNAP_QUOTE",
            Self::Depth => "DEPTH",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Exchange segment as the feed numbers it (SPEC §4: `exchangeType` ↔ REST exchange).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeType {
    /// 1: NSE cash (REST `NSE`).
    NseCm = 1,
    /// 2: NSE F&O (REST `NFO`).
    NseFo = 2,
    /// 3: BSE cash (REST `BSE`).
    BseCm = 3,
    /// 4: BSE F&O (REST `BFO`).
    BseFo = 4,
    /// 5: MCX commodities (REST `MCX`).
    McxFo = 5,
    /// 7: NCDEX commodities (REST `NCDEX`).
    NcxFo = 7,
    /// 13: currency derivatives (REST `CDS`); prices carry seven decimals.
    CdeFo = 13,
}

impl ExchangeType {
    /// The exchange type for a wire byte, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::NseCm),
            2 => Some(Self::NseFo),
            3 => Some(Self::BseCm),
            4 => Some(Self::BseFo),
            5 => Some(Self::McxFo),
            7 => Some(Self::NcxFo),
            13 => Some(Self::CdeFo),
            _ => None,
        }
    }

    /// The wire byte (and the `exchangeType` of a subscribe request).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// What a raw wire price is divided by to get rupees.
    ///
    /// The feed carries prices as integers: paise (÷100) on every exchange type except
    /// **13, CDE_FO (currency)**, where Angel One's docs say to divide by 10^7
    /// (832525000 → 83.2525). No official SDK applies either divisor.
    pub fn price_divisor(self) -> i64 {
        match self {
            Self::CdeFo => 10_000_000,
            _ => 100,
        }
    }

    /// A raw wire price in rupees (`raw / price_divisor()`), as a float for display.
    pub fn to_rupees(self, raw: i64) -> f64 {
        // Exact for |raw| < 2^53, which covers every real price.
        raw as f64 / self.price_divisor() as f64
    }
}

/// Fields every non-DEPTH packet starts with (the 51-byte LTP packet).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ltp {
    pub exchange_type: ExchangeType,
    /// The instrument token, without NUL padding.
    pub token: String,
    /// Exchange sequence number; index feeds carry none, so ignore it there.
    pub sequence_number: i64,
    /// Exchange timestamp, epoch milliseconds.
    pub exchange_timestamp_ms: i64,
    /// Raw price (see [`ExchangeType::price_divisor`]).
    pub last_traded_price: i64,
}

/// A QUOTE packet: [`Ltp`] plus the day's trading summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quote {
    #[serde(flatten)]
    pub ltp: Ltp,
    pub last_traded_quantity: i64,
    /// Raw price.
    pub average_traded_price: i64,
    pub volume: i64,
    /// Sent as an IEEE-754 double.
    pub total_buy_quantity: f64,
    /// Sent as an IEEE-754 double.
    pub total_sell_quantity: f64,
    /// Raw prices; `close` is the previous close.
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
}

/// One entry of the best-five book in a SNAP_QUOTE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BestFive {
    /// Raw flag, unsigned 16-bit as Angel One's Python parser reads it: 0 = sell,
    /// anything else = buy.
    pub flag: u16,
    pub quantity: i64,
    /// Raw price.
    pub price: i64,
    /// Number of orders at this price, unsigned 16-bit (0..=65535) as Angel One's Python
    /// parser reads it; a count is never negative.
    pub orders: u16,
}

/// A SNAP_QUOTE packet: [`Quote`] plus OI, best five, circuits and the 52-week range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapQuote {
    #[serde(flatten)]
    pub quote: Quote,
    /// Epoch **seconds** (unlike the millisecond exchange timestamp).
    pub last_traded_timestamp_s: i64,
    pub open_interest: i64,
    /// Sent as an IEEE-754 double (not the Python SDK's i64 reading of the same bytes).
    pub open_interest_change_pct: f64,
    /// Entries whose flag is non-zero, in wire order (grouped by flag like the SDKs).
    pub best_five_buy: Vec<BestFive>,
    /// Entries whose flag is zero, in wire order.
    pub best_five_sell: Vec<BestFive>,
    /// Raw prices.
    pub upper_circuit: i64,
    pub lower_circuit: i64,
    pub week_52_high: i64,
    pub week_52_low: i64,
}

/// One level of the 20-level book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DepthLevel {
    pub quantity: i32,
    /// Raw price.
    pub price: i32,
    pub orders: i16,
}

/// A DEPTH packet (SPEC §8.6): its own layout after the token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Depth {
    pub exchange_type: ExchangeType,
    pub token: String,
    /// Exchange timestamp (epoch ms) at offset 27, where other modes have the sequence number.
    pub exchange_timestamp_ms: i64,
    /// Packet-received time at offset 35 (documented as a dummy, to be deprecated).
    pub packet_received_time_ms: i64,
    /// Levels 1..20, best first.
    pub bids: Vec<DepthLevel>,
    /// Levels 1..20, best first.
    pub asks: Vec<DepthLevel>,
}

/// One decoded packet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Packet {
    Ltp(Ltp),
    Quote(Quote),
    SnapQuote(SnapQuote),
    Depth(Depth),
}

impl Packet {
    pub fn mode(&self) -> Mode {
        match self {
            Self::Ltp(_) => Mode::Ltp,
            Self::Quote(_) => Mode::Quote,
            Self::SnapQuote(_) => Mode::SnapQuote,
            Self::Depth(_) => Mode::Depth,
        }
    }

    pub fn exchange_type(&self) -> ExchangeType {
        match self {
            Self::Ltp(p) => p.exchange_type,
            Self::Quote(p) => p.ltp.exchange_type,
            Self::SnapQuote(p) => p.quote.ltp.exchange_type,
            Self::Depth(p) => p.exchange_type,
        }
    }

    pub fn token(&self) -> &str {
        match self {
            Self::Ltp(p) => &p.token,
            Self::Quote(p) => &p.ltp.token,
            Self::SnapQuote(p) => &p.quote.ltp.token,
            Self::Depth(p) => &p.token,
        }
    }

    /// The LTP header, for every mode but DEPTH.
    pub fn ltp(&self) -> Option<&Ltp> {
        match self {
            Self::Ltp(p) => Some(p),
            Self::Quote(p) => Some(&p.ltp),
            Self::SnapQuote(p) => Some(&p.quote.ltp),
            Self::Depth(_) => None,
        }
    }

    /// The named single-value prices in this packet, raw, in wire order (book levels not
    /// included). Handy for showing rupees beside raw values.
    pub fn price_fields(&self) -> Vec<(&'static str, i64)> {
        let mut out = Vec::new();
        let quote = match self {
            Self::Ltp(p) => {
                out.push(("last_traded_price", p.last_traded_price));
                None
            }
            Self::Quote(q) => Some(q),
            Self::SnapQuote(s) => Some(&s.quote),
            Self::Depth(_) => None,
        };
        if let Some(q) = quote {
            out.extend([
                ("last_traded_price", q.ltp.last_traded_price),
                ("average_traded_price", q.average_traded_price),
                ("open", q.open),
                ("high", q.high),
                ("low", q.low),
                ("close", q.close),
            ]);
        }
        if let Self::SnapQuote(s) = self {
            out.extend([
                ("upper_circuit", s.upper_circuit),
                ("lower_circuit", s.lower_circuit),
                ("week_52_high", s.week_52_high),
                ("week_52_low", s.week_52_low),
            ]);
        }
        out
    }
}

/// A decoded frame: the packet, and how many bytes followed the mode's length (accepted
/// and ignored, as the SDKs do, but reported so a caller can notice a protocol change).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decoded {
    #[serde(flatten)]
    pub packet: Packet,
    pub trailing_bytes: usize,
}
