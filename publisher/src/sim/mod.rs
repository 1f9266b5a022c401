//! The simulated feed: a deterministic, seedable random walk that looks like a market.
//!
//! Each instrument takes its tick size and lot size from the instrument master (5 paise
//! and 1 when it is not listed), starts from a configured or seed-derived price (the
//! previous close), and stays within circuit limits of ±20 % of that close. Every round
//! each instrument trades: the price moves a few ticks, the quantity is whole lots, and
//! the day's open, high, low, volume and average price follow. A five-level book sits
//! one tick either side of the last price. The same seed and symbol list give the same
//! ticks (timestamps are wall-clock). State is a few integers per instrument, so tens of
//! thousands of symbols are cheap.
//!
//! With [`SimFeed::with_hours`] a symbol ticks only while its exchange is open by the
//! calendar (hours, weekends, holidays) at the feed's [`Clock`]; outside them rounds are
//! empty, so nothing trades (and paper orders fill nothing) after hours.

mod spec;

use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use pinnacle_common::clock::Clock;
use pinnacle_common::feed::{FeedError, MarketFeed};
use pinnacle_common::model::{Book, FeedMode, Level, MarketTick};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use spec::{parse_rupees, parse_symbols, synthetic, SymbolSpec, SymbolSpecError};

use crate::calendar::Calendar;
use crate::instruments::Catalog;

/// Default price granularity in paise, for instruments missing from the master.
pub const TICK_SIZE: i64 = 5;
/// Circuit band around the previous close, percent.
pub const CIRCUIT_PERCENT: i64 = 20;
/// Levels per side of the simulated book.
pub const BOOK_LEVELS: usize = 5;

#[derive(Debug)]
struct Instrument {
    exchange: String,
    symbol: String,
    tick: i64,
    lot: i64,
    seq: u64,
    ltp: i64,
    prev_close: i64,
    open: i64,
    high: i64,
    low: i64,
    volume: i64,
    /// Σ price × quantity, for the average price.
    turnover: i128,
    lower: i64,
    upper: i64,
}

fn round_to(price: i64, tick: i64) -> i64 {
    (price - price % tick).max(tick)
}

/// The simulated feed.
#[derive(Debug)]
pub struct SimFeed {
    /// Deterministic generator; the seed fixes the whole price path.
    rng: ChaCha8Rng,
    /// Per-instrument state.
    instruments: Vec<Instrument>,
    /// Whether ticks carry a five-level book (published on `md.depth.*`).
    depth: bool,
    /// Time between rounds.
    period: Duration,
    /// Paces the rounds; made on first use, so a feed can be built outside a runtime.
    interval: Option<tokio::time::Interval>,
    /// When set, symbols tick only while their exchange is open at the clock.
    hours: Option<(Arc<Calendar>, Clock)>,
    /// The last batch, handed back by the publisher to be overwritten by the next round.
    spare: Vec<MarketTick>,
}

impl SimFeed {
    /// A feed over `symbols`, one round every `interval`, seeded with `seed`; tick and lot
    /// sizes come from `catalog`.
    pub fn new(
        symbols: Vec<SymbolSpec>,
        catalog: &Catalog,
        seed: u64,
        interval: Duration,
        depth: bool,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let instruments = symbols
            .into_iter()
            .map(|s| {
                let listed = catalog.by_symbol(&s.exchange, &s.symbol);
                let tick = listed.map_or(TICK_SIZE, |i| i.tick_size).max(1);
                let lot = listed.map_or(1, |i| i.lot_size).max(1);
                let start = s
                    .start_price
                    .unwrap_or_else(|| rng.gen_range(100..=5_000) * 100);
                let close = round_to(start, tick);
                let band = close * CIRCUIT_PERCENT / 100;
                Instrument {
                    exchange: s.exchange,
                    symbol: s.symbol,
                    tick,
                    lot,
                    seq: 0,
                    ltp: close,
                    prev_close: close,
                    open: 0,
                    high: close,
                    low: close,
                    volume: 0,
                    turnover: 0,
                    lower: round_to(close - band, tick),
                    upper: round_to(close + band, tick),
                }
            })
            .collect();
        Self {
            rng,
            instruments,
            depth,
            period: interval.max(Duration::from_millis(1)),
            interval: None,
            hours: None,
            spare: Vec::new(),
        }
    }

    /// Ticks each symbol only while `calendar` says its exchange is open at `clock`.
    pub fn with_hours(mut self, calendar: Arc<Calendar>, clock: Clock) -> Self {
        self.hours = Some((calendar, clock));
        self
    }

    /// How many instruments it simulates.
    pub fn len(&self) -> usize {
        self.instruments.len()
    }

    /// Whether it simulates none.
    pub fn is_empty(&self) -> bool {
        self.instruments.is_empty()
    }

    /// Advances every instrument by one trade and returns the ticks, without waiting.
    /// The batch handed back by [`MarketFeed::recycle`], if any, is overwritten in place,
    /// so a steady feed allocates nothing per tick.
    pub fn step(&mut self) -> Vec<MarketTick> {
        let now = self
            .hours
            .as_ref()
            .map_or_else(chrono::Utc::now, |(_, clock)| clock.now());
        let now_ms = now.timestamp_millis();
        let rng = &mut self.rng;
        let depth = self.depth;
        let hours = self.hours.as_ref();
        let mut out = std::mem::take(&mut self.spare);
        let mut used = 0;
        // One look per exchange per round, not per symbol.
        let mut open: Vec<(String, bool)> = Vec::new();
        for inst in &mut self.instruments {
            if let Some((calendar, _)) = hours {
                let is_open = match open.iter().find(|(e, _)| *e == inst.exchange) {
                    Some((_, is_open)) => *is_open,
                    None => {
                        let is_open = calendar.is_open(&inst.exchange, now);
                        open.push((inst.exchange.clone(), is_open));
                        is_open
                    }
                };
                if !is_open {
                    continue;
                }
            }
            let moves = rng.gen_range(-3i64..=3);
            inst.ltp = (inst.ltp + moves * inst.tick).clamp(inst.lower, inst.upper);
            let last_qty = rng.gen_range(1..=50) * inst.lot;
            if inst.seq == 0 {
                inst.open = inst.ltp;
            }
            inst.high = inst.high.max(inst.ltp);
            inst.low = inst.low.min(inst.ltp);
            inst.volume += last_qty;
            inst.turnover += i128::from(inst.ltp) * i128::from(last_qty);
            inst.seq += 1;
            let avg = (inst.turnover / i128::from(inst.volume.max(1))) as i64;
            let bid = (inst.ltp - inst.tick).max(inst.lower);
            let ask = (inst.ltp + inst.tick).min(inst.upper).max(bid + inst.tick);
            let book = depth.then(|| {
                let mut level = |price: i64| Level {
                    price,
                    qty: rng.gen_range(1..=200) * inst.lot,
                    orders: rng.gen_range(1..=20),
                };
                let bids = (0..BOOK_LEVELS as i64)
                    .map(|k| level((bid - k * inst.tick).max(inst.tick)))
                    .collect::<Vec<_>>();
                let asks = (0..BOOK_LEVELS as i64)
                    .map(|k| level(ask + k * inst.tick))
                    .collect::<Vec<_>>();
                Box::new(Book { bids, asks })
            });
            let (total_buy, total_sell) = book.as_ref().map_or((0, 0), |b| {
                (
                    b.bids.iter().map(|l| l.qty).sum::<i64>() * 3,
                    b.asks.iter().map(|l| l.qty).sum::<i64>() * 3,
                )
            });
            // The recycled slot's strings already hold (almost always) these names.
            let (exchange, symbol) = match out.get_mut(used) {
                Some(old) => (
                    reuse(&mut old.exchange, &inst.exchange),
                    reuse(&mut old.symbol, &inst.symbol),
                ),
                None => (inst.exchange.clone(), inst.symbol.clone()),
            };
            let tick = MarketTick {
                exchange,
                symbol,
                seq: inst.seq,
                ts_ms: now_ms,
                ltp: inst.ltp,
                last_qty,
                volume: inst.volume,
                bid,
                ask,
                mode: FeedMode::SnapQuote,
                open: Some(inst.open),
                high: Some(inst.high),
                low: Some(inst.low),
                close: Some(inst.prev_close),
                avg_price: Some(avg),
                total_buy_qty: depth.then_some(total_buy),
                total_sell_qty: depth.then_some(total_sell),
                upper_circuit: Some(inst.upper),
                lower_circuit: Some(inst.lower),
                open_interest: None,
                depth: book,
            };
            match out.get_mut(used) {
                Some(slot) => *slot = tick,
                None => out.push(tick),
            }
            used += 1;
        }
        out.truncate(used);
        out
    }
}

/// `value` in the allocation `slot` held (taken out of it).
fn reuse(slot: &mut String, value: &str) -> String {
    let mut reused = std::mem::take(slot);
    reused.clear();
    reused.push_str(value);
    reused
}

#[async_trait]
impl MarketFeed for SimFeed {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn next_batch(&mut self) -> Result<Vec<MarketTick>, FeedError> {
        let period = self.period;
        let interval = self.interval.get_or_insert_with(|| {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        interval.tick().await;
        Ok(self.step())
    }

    fn recycle(&mut self, batch: Vec<MarketTick>) {
        self.spare = batch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<SymbolSpec> {
        parse_symbols(
            "NSE:SBIN-EQ@820.50, NSE:TCS-EQ, BSE:NIFTY 50@24000, NFO:NIFTY30DEC26FUT@24000",
        )
        .expect("parses")
    }

    fn feed(seed: u64) -> SimFeed {
        SimFeed::new(
            specs(),
            &Catalog::sample(),
            seed,
            Duration::from_millis(1),
            true,
        )
    }

    #[tokio::test]
    async fn same_seed_same_path_and_sequences_count_up() {
        let (mut a, mut b, mut c) = (feed(7), feed(7), feed(8));
        let mut differs = false;
        for round in 1..=200u64 {
            let (ta, tb, tc) = (a.step(), b.step(), c.step());
            for ((x, y), z) in ta.iter().zip(&tb).zip(&tc) {
                let same_time = MarketTick {
                    ts_ms: x.ts_ms,
                    ..y.clone()
                };
                assert_eq!(x, &same_time);
                assert_eq!(x.seq, round);
                differs |= x.ltp != z.ltp;
            }
        }
        assert!(differs, "a different seed should walk differently");
    }

    #[test]
    fn a_recycled_batch_gives_the_same_ticks_as_a_fresh_one() {
        let (mut fresh, mut recycled) = (feed(3), feed(3));
        for round in 1..=50u64 {
            let (a, b) = (fresh.step(), recycled.step());
            assert_eq!(a.len(), specs().len());
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(
                    x,
                    &MarketTick {
                        ts_ms: x.ts_ms,
                        ..y.clone()
                    }
                );
                assert_eq!(y.seq, round);
            }
            // Names of different lengths land in each slot in turn.
            let mut b = b;
            b.rotate_left(1);
            recycled.recycle(b);
        }
    }

    #[tokio::test]
    async fn ticks_respect_tick_size_lots_circuits_and_the_book() {
        let mut sim = feed(1);
        let mut last_volume = vec![0; sim.len()];
        for _ in 0..2_000 {
            for (i, t) in sim.step().into_iter().enumerate() {
                let (Some(lower), Some(upper)) = (t.lower_circuit, t.upper_circuit) else {
                    panic!("circuits missing");
                };
                assert!(lower <= t.ltp && t.ltp <= upper, "{t:?}");
                let tick = if t.symbol == "NIFTY30DEC26FUT" { 10 } else { 5 };
                assert_eq!(t.ltp % tick, 0, "{t:?}");
                if t.symbol == "NIFTY30DEC26FUT" {
                    assert_eq!(t.last_qty % 75, 0, "whole lots");
                }
                assert!(t.bid < t.ask && t.volume > last_volume[i]);
                last_volume[i] = t.volume;
                let (high, low) = (t.high.unwrap_or(0), t.low.unwrap_or(0));
                assert!(low <= t.ltp && t.ltp <= high);
                let book = t.depth_message().expect("book");
                assert_eq!(
                    (book.bids.len(), book.asks.len()),
                    (BOOK_LEVELS, BOOK_LEVELS)
                );
                assert_eq!((book.bids[0].price, book.asks[0].price), (t.bid, t.ask));
                assert!(book.bids.windows(2).all(|w| w[0].price > w[1].price));
            }
        }
    }

    #[test]
    fn with_hours_symbols_tick_only_while_their_exchange_is_open() {
        let calendar = Arc::new(Calendar::load(None).expect("bundled"));
        let at = |t: &str| Clock::from_setting(t).expect("time");
        let specs = parse_symbols("NSE:SBIN-EQ@820, MCX:CRUDEOIL18DEC26FUT@6500").expect("specs");
        let feed = |clock| {
            SimFeed::new(
                specs.clone(),
                &Catalog::sample(),
                1,
                Duration::from_millis(1),
                false,
            )
            .with_hours(calendar.clone(), clock)
        };
        let symbols = |mut f: SimFeed| f.step().into_iter().map(|t| t.symbol).collect::<Vec<_>>();
        // Wednesday 11:00: both; 20:00: MCX only; 03:16, Saturday, Christmas: none.
        assert_eq!(symbols(feed(at("2026-12-02T11:00:00+05:30"))).len(), 2);
        assert_eq!(
            symbols(feed(at("2026-12-02T20:00:00+05:30"))),
            vec!["CRUDEOIL18DEC26FUT".to_string()]
        );
        assert!(symbols(feed(at("2026-12-02T03:16:00+05:30"))).is_empty());
        assert!(symbols(feed(at("2026-12-05T11:00:00+05:30"))).is_empty());
        assert_eq!(
            symbols(feed(at("2026-12-25T11:00:00+05:30"))).len(),
            1,
            "MCX trades"
        );
        let tick = feed(at("2026-12-02T11:00:00+05:30")).step().remove(0);
        let ist = chrono::DateTime::from_timestamp_millis(tick.ts_ms)
            .expect("ts")
            .with_timezone(&pinnacle_common::clock::ist());
        assert_eq!(
            ist.format("%Y-%m-%d %H").to_string(),
            "2026-12-02 11",
            "clock time"
        );
    }

    #[test]
    fn thousands_of_symbols_are_cheap() {
        let mut sim = SimFeed::new(
            synthetic(5_000),
            &Catalog::default(),
            3,
            Duration::from_millis(1),
            false,
        );
        let started = std::time::Instant::now();
        for _ in 0..10 {
            assert_eq!(sim.step().len(), 5_000);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
