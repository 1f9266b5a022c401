//! One simulated instrument: its fixed terms (tick, lot, circuit band around the previous
//! close), its running day (last price, open, high, low, volume, turnover), and how one
//! round's trade turns into a [`MarketTick`] written over a recycled slot.
//!
//! Every step here runs once per tick: none allocates except the book (only when depth is
//! on) and the names of a slot that was not recycled.

use pinnacle_common::model::{Book, FeedMode, Level, MarketTick};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::spec::SymbolSpec;
use crate::instruments::Catalog;

/// Default price granularity in paise, for instruments missing from the master.
pub const TICK_SIZE: i64 = 5;
/// Circuit band around the previous close, percent.
pub const CIRCUIT_PERCENT: i64 = 20;
/// Levels per side of the simulated book.
pub const BOOK_LEVELS: usize = 5;

/// The state of one simulated instrument.
#[derive(Debug)]
pub(super) struct Instrument {
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

/// One round's trade of an instrument, as the tick reports it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trade {
    /// Quantity of this trade, whole lots.
    pub(super) last_qty: i64,
    /// Best bid, one tick under the last price (within the circuit).
    pub(super) bid: i64,
    /// Best ask, one tick over the last price (within the circuit, above the bid).
    pub(super) ask: i64,
}

fn round_to(price: i64, tick: i64) -> i64 {
    (price - price % tick).max(tick)
}

impl Instrument {
    /// `spec` with its tick and lot sizes from `catalog`, starting at its configured price
    /// or, without one, at a price drawn from `rng`.
    pub(super) fn new(spec: SymbolSpec, catalog: &Catalog, rng: &mut ChaCha8Rng) -> Self {
        let listed = catalog.by_symbol(&spec.exchange, &spec.symbol);
        let tick = listed.map_or(TICK_SIZE, |i| i.tick_size).max(1);
        let lot = listed.map_or(1, |i| i.lot_size).max(1);
        let start = spec
            .start_price
            .unwrap_or_else(|| rng.gen_range(100..=5_000) * 100);
        let close = round_to(start, tick);
        let band = close * CIRCUIT_PERCENT / 100;
        Self {
            exchange: spec.exchange,
            symbol: spec.symbol,
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
    }

    /// The exchange it trades on.
    #[inline]
    pub(super) fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Moves the price a few ticks (within the circuit), trades whole lots and updates the
    /// day's open, high, low, volume and turnover.
    #[inline]
    pub(super) fn trade(&mut self, rng: &mut ChaCha8Rng) -> Trade {
        let moves = rng.gen_range(-3i64..=3);
        self.ltp = (self.ltp + moves * self.tick).clamp(self.lower, self.upper);
        let last_qty = rng.gen_range(1..=50) * self.lot;
        if self.seq == 0 {
            self.open = self.ltp;
        }
        self.high = self.high.max(self.ltp);
        self.low = self.low.min(self.ltp);
        self.volume += last_qty;
        self.turnover += i128::from(self.ltp) * i128::from(last_qty);
        self.seq += 1;
        self.quoted(last_qty)
    }

    /// A trade of `last_qty` at the last price, with the best bid and ask one tick either
    /// side of it (within the circuit).
    #[inline]
    fn quoted(&self, last_qty: i64) -> Trade {
        let bid = (self.ltp - self.tick).max(self.lower);
        let ask = (self.ltp + self.tick).min(self.upper).max(bid + self.tick);
        Trade { last_qty, bid, ask }
    }

    /// Its last price as a tick without a trade (the sequence number unchanged, a zero
    /// quantity, no book): what a closed market shows.
    pub(super) fn at_rest(&self, now_ms: i64) -> MarketTick {
        self.tick(None, now_ms, self.quoted(0), None)
    }

    /// A five-level book one tick apart from `trade`'s bid and ask, with random sizes.
    #[inline]
    pub(super) fn book(&self, rng: &mut ChaCha8Rng, trade: Trade) -> Box<Book> {
        let mut level = |price: i64| Level {
            price,
            qty: rng.gen_range(1..=200) * self.lot,
            orders: rng.gen_range(1..=20),
        };
        let bids = (0..BOOK_LEVELS as i64)
            .map(|k| level((trade.bid - k * self.tick).max(self.tick)))
            .collect::<Vec<_>>();
        let asks = (0..BOOK_LEVELS as i64)
            .map(|k| level(trade.ask + k * self.tick))
            .collect::<Vec<_>>();
        Box::new(Book { bids, asks })
    }

    /// The tick of this round's `trade` at `now_ms`, its names written into the strings of
    /// `recycled` when there is one.
    #[inline]
    pub(super) fn tick(
        &self,
        recycled: Option<&mut MarketTick>,
        now_ms: i64,
        trade: Trade,
        book: Option<Box<Book>>,
    ) -> MarketTick {
        let (total_buy, total_sell) = book.as_ref().map_or((0, 0), |b| {
            (
                b.bids.iter().map(|l| l.qty).sum::<i64>() * 3,
                b.asks.iter().map(|l| l.qty).sum::<i64>() * 3,
            )
        });
        let depth = book.is_some();
        let (exchange, symbol) = self.names(recycled);
        MarketTick {
            exchange,
            symbol,
            seq: self.seq,
            ts_ms: now_ms,
            ltp: self.ltp,
            last_qty: trade.last_qty,
            volume: self.volume,
            bid: trade.bid,
            ask: trade.ask,
            mode: FeedMode::SnapQuote,
            open: Some(self.open),
            high: Some(self.high),
            low: Some(self.low),
            close: Some(self.prev_close),
            avg_price: Some((self.turnover / i128::from(self.volume.max(1))) as i64),
            total_buy_qty: depth.then_some(total_buy),
            total_sell_qty: depth.then_some(total_sell),
            upper_circuit: Some(self.upper),
            lower_circuit: Some(self.lower),
            open_interest: None,
            depth: book,
        }
    }

    /// Its exchange and symbol, in the allocations of `recycled` (which almost always hold
    /// these very names already) or newly made.
    #[inline]
    fn names(&self, recycled: Option<&mut MarketTick>) -> (String, String) {
        match recycled {
            Some(old) => (
                reuse(&mut old.exchange, &self.exchange),
                reuse(&mut old.symbol, &self.symbol),
            ),
            None => (self.exchange.clone(), self.symbol.clone()),
        }
    }
}

/// `value` in the allocation `slot` held (taken out of it).
#[inline]
fn reuse(slot: &mut String, value: &str) -> String {
    let mut reused = std::mem::take(slot);
    reused.clear();
    reused.push_str(value);
    reused
}
