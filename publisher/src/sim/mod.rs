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
//!
//! `instrument` holds one instrument's state, its trade each round and the tick that trade
//! becomes; `spec` parses the symbol list.

mod instrument;
mod spec;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pinnacle_common::clock::Clock;
use pinnacle_common::feed::{FeedError, MarketFeed};
use pinnacle_common::model::MarketTick;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use instrument::{BOOK_LEVELS, CIRCUIT_PERCENT, TICK_SIZE};
pub use spec::{parse_rupees, parse_symbols, synthetic, SymbolSpec, SymbolSpecError};

use crate::calendar::Calendar;
use crate::instruments::Catalog;
use instrument::Instrument;

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
            .map(|spec| Instrument::new(spec, catalog, &mut rng))
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
            .map_or_else(Utc::now, |(_, clock)| clock.now());
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
                if !exchange_open(&mut open, calendar, inst.exchange(), now) {
                    continue;
                }
            }
            let trade = inst.trade(rng);
            let book = depth.then(|| inst.book(rng, trade));
            let tick = inst.tick(out.get_mut(used), now_ms, trade, book);
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

/// Whether `exchange` is open at `now` by `calendar`, asked once a round: the answers of
/// this round are kept in `open`.
#[inline]
fn exchange_open(
    open: &mut Vec<(String, bool)>,
    calendar: &Calendar,
    exchange: &str,
    now: DateTime<Utc>,
) -> bool {
    if let Some((_, is_open)) = open.iter().find(|(e, _)| e == exchange) {
        return *is_open;
    }
    let is_open = calendar.is_open(exchange, now);
    open.push((exchange.to_string(), is_open));
    is_open
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

    async fn closing_prices(&mut self) -> Vec<MarketTick> {
        let Some((calendar, clock)) = &self.hours else {
            return Vec::new();
        };
        let now = clock.now();
        let mut open = Vec::new();
        self.instruments
            .iter()
            .filter(|inst| !exchange_open(&mut open, calendar, inst.exchange(), now))
            .map(|inst| inst.at_rest(now.timestamp_millis()))
            .collect()
    }

    fn recycle(&mut self, batch: Vec<MarketTick>) {
        self.spare = batch;
    }
}
