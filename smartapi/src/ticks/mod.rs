//! Decoding one SmartWebSocketV2 binary packet (SPEC §8.5–8.6) into a typed [`Packet`].
//!
//! ```text
//! decode(&frame) -> Result<Decoded { packet: Packet, trailing_bytes }, TickError>
//! ```
//!
//! * Little-endian throughout; modes 1 LTP (51 bytes), 2 QUOTE (123), 3 SNAP_QUOTE (379),
//!   4 DEPTH (443, its own layout).
//! * Prices stay raw integers; [`ExchangeType::price_divisor`] scales them (100, or 10^7
//!   for exchange type 13, currency).
//! * Bytes past the mode's length are accepted and ignored, like the SDKs, and counted in
//!   [`Decoded::trailing_bytes`].
//! * Frames longer than [`MAX_FRAME_BYTES`] are refused before any field is read.
//! * Never panics: every read is bounds-checked (a proptest in `tests` feeds arbitrary
//!   bytes and truncations).
//!
//! Layout: [`layout`] holds the offsets, `types` the decoded shapes.

pub mod layout;
mod types;

#[cfg(test)]
mod tests;

pub use types::{
    BestFive, Decoded, Depth, DepthLevel, ExchangeType, Ltp, Mode, Packet, Quote, SnapQuote,
};

use layout as at;

/// The longest frame decoded: the largest packet (DEPTH, 443 bytes) with generous room
/// for the trailing bytes newer servers may add. The WebSocket layer refuses messages
/// past [`crate::bounds::MAX_WS_MESSAGE_BYTES`] before they get here.
pub const MAX_FRAME_BYTES: usize = 4096;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TickError {
    #[error("empty frame")]
    Empty,
    #[error("unknown subscription mode {0} (expected 1..=4)")]
    UnknownMode(u8),
    #[error("unknown exchange type {0} (expected 1, 2, 3, 4, 5, 7 or 13)")]
    UnknownExchangeType(u8),
    #[error("{mode} frame too short: expected {expected} bytes, got {got}")]
    TooShort {
        mode: Mode,
        expected: usize,
        got: usize,
    },
    #[error("frame is {got} bytes; the limit is {limit}")]
    TooLong { got: usize, limit: usize },
    #[error("token is not ASCII: byte 0x{byte:02x} at token offset {offset}")]
    NonAsciiToken { offset: usize, byte: u8 },
}

/// Decodes one binary WebSocket message.
pub fn decode(frame: &[u8]) -> Result<Decoded, TickError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(TickError::TooLong {
            got: frame.len(),
            limit: MAX_FRAME_BYTES,
        });
    }
    let code = *frame.first().ok_or(TickError::Empty)?;
    let mode = Mode::from_code(code).ok_or(TickError::UnknownMode(code))?;
    let expected = mode.packet_len();
    if frame.len() < expected {
        return Err(TickError::TooShort {
            mode,
            expected,
            got: frame.len(),
        });
    }
    let r = Reader {
        buf: frame,
        mode,
        expected,
    };
    let exchange_code = r.u8(at::EXCHANGE_TYPE)?;
    let exchange_type = ExchangeType::from_code(exchange_code)
        .ok_or(TickError::UnknownExchangeType(exchange_code))?;
    let token = r.token()?;
    let packet = match mode {
        Mode::Depth => Packet::Depth(depth(&r, exchange_type, token)?),
        Mode::Ltp => Packet::Ltp(ltp(&r, exchange_type, token)?),
        Mode::Quote => Packet::Quote(quote(&r, ltp(&r, exchange_type, token)?)?),
        Mode::SnapQuote => {
            Packet::SnapQuote(snap_quote(&r, quote(&r, ltp(&r, exchange_type, token)?)?)?)
        }
    };
    Ok(Decoded {
        packet,
        trailing_bytes: frame.len() - expected,
    })
}

fn ltp(r: &Reader<'_>, exchange_type: ExchangeType, token: String) -> Result<Ltp, TickError> {
    Ok(Ltp {
        exchange_type,
        token,
        sequence_number: r.i64(at::SEQUENCE_NUMBER)?,
        exchange_timestamp_ms: r.i64(at::EXCHANGE_TIMESTAMP)?,
        last_traded_price: r.i64(at::LAST_TRADED_PRICE)?,
    })
}

fn quote(r: &Reader<'_>, ltp: Ltp) -> Result<Quote, TickError> {
    Ok(Quote {
        ltp,
        last_traded_quantity: r.i64(at::LAST_TRADED_QUANTITY)?,
        average_traded_price: r.i64(at::AVERAGE_TRADED_PRICE)?,
        volume: r.i64(at::VOLUME)?,
        total_buy_quantity: r.f64(at::TOTAL_BUY_QUANTITY)?,
        total_sell_quantity: r.f64(at::TOTAL_SELL_QUANTITY)?,
        open: r.i64(at::OPEN)?,
        high: r.i64(at::HIGH)?,
        low: r.i64(at::LOW)?,
        close: r.i64(at::CLOSE)?,
    })
}

fn snap_quote(r: &Reader<'_>, quote: Quote) -> Result<SnapQuote, TickError> {
    let mut best_five_buy = Vec::with_capacity(at::BEST_FIVE_ENTRIES);
    let mut best_five_sell = Vec::with_capacity(at::BEST_FIVE_ENTRIES);
    for i in 0..at::BEST_FIVE_ENTRIES {
        let base = at::BEST_FIVE + i * at::BEST_FIVE_ENTRY_LEN;
        let entry = BestFive {
            flag: r.u16(base + at::BEST_FIVE_FLAG)?,
            quantity: r.i64(base + at::BEST_FIVE_QUANTITY)?,
            price: r.i64(base + at::BEST_FIVE_PRICE)?,
            orders: r.u16(base + at::BEST_FIVE_ORDERS)?,
        };
        // Grouped by flag, like the SDKs: non-zero is buy, zero is sell.
        if entry.flag != 0 {
            best_five_buy.push(entry);
        } else {
            best_five_sell.push(entry);
        }
    }
    Ok(SnapQuote {
        quote,
        last_traded_timestamp_s: r.i64(at::LAST_TRADED_TIMESTAMP)?,
        open_interest: r.i64(at::OPEN_INTEREST)?,
        open_interest_change_pct: r.f64(at::OPEN_INTEREST_CHANGE_PCT)?,
        best_five_buy,
        best_five_sell,
        upper_circuit: r.i64(at::UPPER_CIRCUIT)?,
        lower_circuit: r.i64(at::LOWER_CIRCUIT)?,
        week_52_high: r.i64(at::WEEK_52_HIGH)?,
        week_52_low: r.i64(at::WEEK_52_LOW)?,
    })
}

fn depth(r: &Reader<'_>, exchange_type: ExchangeType, token: String) -> Result<Depth, TickError> {
    let levels = |start: usize| -> Result<Vec<DepthLevel>, TickError> {
        (0..at::DEPTH_LEVELS)
            .map(|i| {
                let base = start + i * at::DEPTH_LEVEL_LEN;
                Ok(DepthLevel {
                    quantity: r.i32(base + at::DEPTH_QUANTITY)?,
                    price: r.i32(base + at::DEPTH_PRICE)?,
                    orders: r.i16(base + at::DEPTH_ORDERS)?,
                })
            })
            .collect()
    };
    Ok(Depth {
        exchange_type,
        token,
        exchange_timestamp_ms: r.i64(at::DEPTH_EXCHANGE_TIMESTAMP)?,
        packet_received_time_ms: r.i64(at::DEPTH_PACKET_RECEIVED)?,
        bids: levels(at::DEPTH_BIDS)?,
        asks: levels(at::DEPTH_ASKS)?,
    })
}

/// Bounds-checked little-endian reads. `decode` checks the length first, so the
/// `TooShort` these return is unreachable in practice; it exists so no read can panic.
struct Reader<'a> {
    buf: &'a [u8],
    mode: Mode,
    expected: usize,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, offset: usize) -> Result<[u8; N], TickError> {
        offset
            .checked_add(N)
            .and_then(|end| self.buf.get(offset..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(TickError::TooShort {
                mode: self.mode,
                expected: self.expected,
                got: self.buf.len(),
            })
    }

    fn u8(&self, offset: usize) -> Result<u8, TickError> {
        Ok(u8::from_le_bytes(self.bytes(offset)?))
    }

    fn u16(&self, offset: usize) -> Result<u16, TickError> {
        Ok(u16::from_le_bytes(self.bytes(offset)?))
    }

    fn i16(&self, offset: usize) -> Result<i16, TickError> {
        Ok(i16::from_le_bytes(self.bytes(offset)?))
    }

    fn i32(&self, offset: usize) -> Result<i32, TickError> {
        Ok(i32::from_le_bytes(self.bytes(offset)?))
    }

    fn i64(&self, offset: usize) -> Result<i64, TickError> {
        Ok(i64::from_le_bytes(self.bytes(offset)?))
    }

    fn f64(&self, offset: usize) -> Result<f64, TickError> {
        Ok(f64::from_le_bytes(self.bytes(offset)?))
    }

    /// The token: ASCII up to the first NUL (or all 25 bytes when there is none).
    fn token(&self) -> Result<String, TickError> {
        let raw: [u8; at::TOKEN_LEN] = self.bytes(at::TOKEN)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let token = &raw[..end];
        if let Some(offset) = token.iter().position(|b| !b.is_ascii()) {
            return Err(TickError::NonAsciiToken {
                offset,
                byte: token[offset],
            });
        }
        Ok(token.iter().map(|&b| char::from(b)).collect())
    }
}
