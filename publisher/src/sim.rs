//! The simulated feed: a deterministic, seedable random walk over a symbol list.
//!
//! Prices move in whole ticks of 5 paise. The same seed and symbol list give the same
//! price path (timestamps are wall-clock). Symbols are configured as
//! `EXCHANGE:SYMBOL[@PRICE]`, with the starting price in rupees.

use std::time::Duration;

use async_trait::async_trait;
use pinnacle_common::feed::{FeedError, MarketFeed};
use pinnacle_common::model::Tick;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Price granularity in paise.
pub const TICK_SIZE: i64 = 5;

/// A symbol list entry could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid symbol spec {spec:?}: {reason}")]
pub struct SymbolSpecError {
    /// The offending entry.
    pub spec: String,
    /// Why.
    pub reason: &'static str,
}

/// One instrument's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSpec {
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// Starting price in paise; derived from the seed when not given.
    pub start_price: Option<i64>,
}

/// Parses `NSE:SBIN-EQ@820.50,NSE:TCS-EQ`.
pub fn parse_symbols(list: &str) -> Result<Vec<SymbolSpec>, SymbolSpecError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|spec| {
            let err = |reason| SymbolSpecError {
                spec: spec.to_string(),
                reason,
            };
            let (instrument, price) = match spec.split_once('@') {
                Some((i, p)) => (i, Some(parse_rupees(p).ok_or_else(|| err("bad price"))?)),
                None => (spec, None),
            };
            let (exchange, symbol) = instrument
                .split_once(':')
                .ok_or_else(|| err("expected EXCHANGE:SYMBOL"))?;
            if exchange.is_empty() || symbol.is_empty() {
                return Err(err("empty exchange or symbol"));
            }
            Ok(SymbolSpec {
                exchange: exchange.to_ascii_uppercase(),
                symbol: symbol.to_string(),
                start_price: price,
            })
        })
        .collect()
}

/// Parses a positive rupee amount with up to two decimals into paise, without floats.
pub fn parse_rupees(text: &str) -> Option<i64> {
    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty() || frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    let paise = whole.checked_mul(100)?.checked_add(frac)?;
    (paise > 0).then_some(paise)
}

#[derive(Debug)]
struct Instrument {
    exchange: String,
    symbol: String,
    seq: u64,
    ltp: i64,
    volume: i64,
}

/// The simulated feed.
#[derive(Debug)]
pub struct SimFeed {
    /// Deterministic generator; the seed fixes the whole price path.
    rng: ChaCha8Rng,
    /// Per-instrument state: price, volume and sequence number.
    instruments: Vec<Instrument>,
    /// Paces the rounds.
    interval: tokio::time::Interval,
}

impl SimFeed {
    /// A feed over `symbols`, one round every `interval`, seeded with `seed`.
    pub fn new(symbols: Vec<SymbolSpec>, seed: u64, interval: Duration) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let instruments = symbols
            .into_iter()
            .map(|s| {
                let start = s
                    .start_price
                    .unwrap_or_else(|| rng.gen_range(100..=5_000) * 100);
                Instrument {
                    exchange: s.exchange,
                    symbol: s.symbol,
                    seq: 0,
                    ltp: start - start % TICK_SIZE,
                    volume: 0,
                }
            })
            .collect();
        let mut interval = tokio::time::interval(interval.max(Duration::from_millis(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            rng,
            instruments,
            interval,
        }
    }

    /// Advances every instrument by one step and returns the ticks, without waiting.
    pub fn step(&mut self) -> Vec<Tick> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let rng = &mut self.rng;
        self.instruments
            .iter_mut()
            .map(|inst| {
                let moves = rng.gen_range(-3i64..=3);
                inst.ltp = (inst.ltp + moves * TICK_SIZE).max(TICK_SIZE);
                let last_qty = rng.gen_range(1..=500);
                inst.volume += last_qty;
                inst.seq += 1;
                Tick {
                    exchange: inst.exchange.clone(),
                    symbol: inst.symbol.clone(),
                    seq: inst.seq,
                    ts_ms: now_ms,
                    ltp: inst.ltp,
                    last_qty,
                    volume: inst.volume,
                    bid: (inst.ltp - TICK_SIZE).max(TICK_SIZE),
                    ask: inst.ltp + TICK_SIZE,
                }
            })
            .collect()
    }
}

#[async_trait]
impl MarketFeed for SimFeed {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn next_batch(&mut self) -> Result<Vec<Tick>, FeedError> {
        self.interval.tick().await;
        Ok(self.step())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<SymbolSpec> {
        parse_symbols("NSE:SBIN-EQ@820.50, NSE:TCS-EQ, BSE:NIFTY 50@24000").expect("parses")
    }

    #[test]
    fn parses_symbol_lists() {
        let s = specs();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].start_price, Some(82_050));
        assert_eq!(s[1].start_price, None);
        assert_eq!(s[2].symbol, "NIFTY 50");
        assert!(parse_symbols("SBIN").is_err());
        assert!(parse_symbols("NSE:SBIN@-1").is_err());
        assert!(parse_symbols("NSE:SBIN@1.234").is_err());
        assert_eq!(parse_rupees("820.5"), Some(82_050));
        assert_eq!(parse_rupees("0"), None);
    }

    #[tokio::test]
    async fn same_seed_same_path_and_sequences_count_up() {
        let mut a = SimFeed::new(specs(), 7, Duration::from_millis(1));
        let mut b = SimFeed::new(specs(), 7, Duration::from_millis(1));
        let mut c = SimFeed::new(specs(), 8, Duration::from_millis(1));
        let mut differs = false;
        for round in 1..=50u64 {
            let (ta, tb, tc) = (a.step(), b.step(), c.step());
            for ((x, y), z) in ta.iter().zip(&tb).zip(&tc) {
                assert_eq!((x.ltp, x.volume, x.seq), (y.ltp, y.volume, y.seq));
                assert_eq!(x.seq, round);
                assert!(x.ltp > 0 && x.ltp % TICK_SIZE == 0 && x.bid < x.ask);
                differs |= x.ltp != z.ltp;
            }
        }
        assert!(differs, "a different seed should walk differently");
    }
}
