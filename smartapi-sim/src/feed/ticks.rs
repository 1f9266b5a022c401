//! Binary tick packets of SmartWebSocketV2 (SPEC §8.5, §8.6): little-endian, one packet
//! per message, 51 / 123 / 379 / 443 bytes for LTP / QUOTE / SNAP_QUOTE / DEPTH, and the
//! packets of a connection's subscriptions from the current market.

use axum::extract::ws::Message;

use crate::config::exchange_name;
use crate::market::Quote;
use crate::state::{lock, FeedSub, Shared};

pub const LTP: u8 = 1;
pub const QUOTE: u8 = 2;
pub const SNAP_QUOTE: u8 = 3;
pub const DEPTH: u8 = 4;

/// Packet length of a mode; None for an unknown mode.
pub fn packet_len(mode: u8) -> Option<usize> {
    Some(match mode {
        LTP => 51,
        QUOTE => 123,
        SNAP_QUOTE => 379,
        DEPTH => 443,
        _ => return None,
    })
}

/// Encodes the current state of `q` as a packet of `mode` for `exchange_type`.
pub fn encode(mode: u8, exchange_type: u8, q: &Quote) -> Vec<u8> {
    // Currency derivatives use the 10^7 divisor on the wire; everything else paise.
    let scale = if exchange_type == 13 { 100_000 } else { 1 };
    let px = |paise: i64| paise.saturating_mul(scale);
    let mut b = Vec::with_capacity(packet_len(mode).unwrap_or(51));
    put_header(&mut b, mode, exchange_type, q);
    if mode == DEPTH {
        put_depth(&mut b, q, px);
        return b;
    }
    put_ltp(&mut b, q, px);
    if mode == LTP {
        return b;
    }
    put_quote(&mut b, q, px);
    if mode == QUOTE {
        return b;
    }
    put_snap_quote(&mut b, q, px);
    b
}

/// Mode, exchange type and the token, NUL-padded to 25 bytes.
fn put_header(b: &mut Vec<u8>, mode: u8, exchange_type: u8, q: &Quote) {
    b.push(mode);
    b.push(exchange_type);
    let mut token = [0u8; 25];
    let raw = q.instrument.token.as_bytes();
    let n = raw.len().min(25);
    token[..n].copy_from_slice(&raw[..n]);
    b.extend_from_slice(&token);
}

/// DEPTH (§8.6): timestamps, then 20 bid and 20 ask levels one tick apart.
fn put_depth(b: &mut Vec<u8>, q: &Quote, px: impl Fn(i64) -> i64) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    b.extend_from_slice(&q.exchange_ms.to_le_bytes());
    b.extend_from_slice(&now_ms.to_le_bytes());
    for side in [-1i64, 1] {
        for level in 1..=20i64 {
            let price = px(q.ltp + side * level * q.tick_size());
            b.extend_from_slice(&(i32::try_from(100 * level).unwrap_or(i32::MAX)).to_le_bytes());
            b.extend_from_slice(&i32::try_from(price).unwrap_or(i32::MAX).to_le_bytes());
            b.extend_from_slice(&(i16::try_from(level).unwrap_or(1)).to_le_bytes());
        }
    }
}

/// The LTP part: sequence (0 for an index), exchange time, last price.
fn put_ltp(b: &mut Vec<u8>, q: &Quote, px: impl Fn(i64) -> i64) {
    let seq = if q.instrument.is_index() {
        0
    } else {
        q.sequence
    };
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&q.exchange_ms.to_le_bytes());
    b.extend_from_slice(&px(q.ltp).to_le_bytes());
}

/// The QUOTE part: last quantity, average price, volume, buy and sell totals, day OHLC.
fn put_quote(b: &mut Vec<u8>, q: &Quote, px: impl Fn(i64) -> i64) {
    for v in [q.last_qty, px(q.average_price()), q.volume] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let (buy_total, sell_total) = if q.instrument.is_index() {
        (0.0, 0.0)
    } else {
        (1500.0f64, 1500.0f64)
    };
    b.extend_from_slice(&buy_total.to_le_bytes());
    b.extend_from_slice(&sell_total.to_le_bytes());
    for v in [q.open, q.high, q.low, q.close] {
        b.extend_from_slice(&px(v).to_le_bytes());
    }
}

/// The SNAP_QUOTE part: last trade time, open interest and its change, best five each
/// side, circuits and the 52-week range.
fn put_snap_quote(b: &mut Vec<u8>, q: &Quote, px: impl Fn(i64) -> i64) {
    b.extend_from_slice(&(q.exchange_ms / 1000).to_le_bytes());
    b.extend_from_slice(&q.open_interest.to_le_bytes());
    let oi_change: f64 = if q.open_interest > 0 { 0.25 } else { 0.0 };
    b.extend_from_slice(&oi_change.to_le_bytes());
    for (flag, side) in [(1u16, -1i64), (0u16, 1)] {
        for level in 1..=5i64 {
            b.extend_from_slice(&flag.to_le_bytes());
            b.extend_from_slice(&(100 * level).to_le_bytes());
            b.extend_from_slice(&px(q.ltp + side * level * q.tick_size()).to_le_bytes());
            b.extend_from_slice(&(u16::try_from(level).unwrap_or(1)).to_le_bytes());
        }
    }
    let (upper, lower) = q.circuits();
    for v in [upper, lower, q.close * 13 / 10, q.close * 7 / 10] {
        b.extend_from_slice(&px(v).to_le_bytes());
    }
}

/// Encodes the current state of each subscription (unknown tokens produce nothing).
pub fn packets(shared: &Shared, subs: &[FeedSub]) -> Vec<Message> {
    let market = lock(&shared.market);
    subs.iter()
        .filter_map(|(mode, et, token)| {
            let q = market.get(exchange_name(*et)?, token)?;
            Some(Message::Binary(encode(*mode, *et, q).into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimInstrument;
    use crate::market::Market;

    #[test]
    fn sizes_per_mode() {
        let market = Market::new(&SimInstrument::builtin(), Default::default());
        let q = market.get("NSE", "3045").expect("SBIN is built in");
        for mode in 1..=4u8 {
            assert_eq!(
                Some(encode(mode, 1, q).len()),
                packet_len(mode),
                "mode {mode}"
            );
        }
    }
}
