//! Live market state per instrument: last price, day OHLC, volume and the feed sequence
//! number, moved by `set_ltp` and by a bounded random walk while anyone subscribes.

use std::collections::HashMap;

use rand::Rng;

use crate::calendar::SimClock;
use crate::config::SimInstrument;

/// (exchange name, token): how REST and the order book address an instrument.
pub type InstrumentKey = (String, String);

/// One instrument plus what the market did to it today.
#[derive(Debug, Clone)]
pub struct Quote {
    pub instrument: SimInstrument,
    pub ltp: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    /// Previous close: the starting price, so "net change" is meaningful.
    pub close: i64,
    pub last_qty: i64,
    pub volume: i64,
    /// Turnover in paise·units, for the average traded price.
    pub turnover: i128,
    pub open_interest: i64,
    /// Feed sequence number, bumped on every price step (never sent for indices).
    pub sequence: i64,
    /// Epoch milliseconds of the last price change.
    pub exchange_ms: i64,
}

impl Quote {
    fn new(instrument: SimInstrument, now_ms: i64) -> Self {
        let p = instrument.ltp_paise.max(1);
        let derivative = !matches!(instrument.exchange.as_str(), "NSE" | "BSE");
        Self {
            ltp: p,
            open: p,
            high: p,
            low: p,
            close: p,
            last_qty: 0,
            volume: 0,
            turnover: 0,
            open_interest: if derivative { 100_000 } else { 0 },
            sequence: 0,
            exchange_ms: now_ms,
            instrument,
        }
    }

    /// Volume-weighted average traded price (paise); the LTP before any trade.
    pub fn average_price(&self) -> i64 {
        if self.volume > 0 {
            (self.turnover / self.volume as i128) as i64
        } else {
            self.ltp
        }
    }

    /// Moves the price and records a trade of `qty` there at `now_ms`.
    pub fn trade(&mut self, price: i64, qty: i64, now_ms: i64) {
        self.ltp = price.max(1);
        self.high = self.high.max(self.ltp);
        self.low = self.low.min(self.ltp);
        if !self.instrument.is_index() {
            self.last_qty = qty;
            self.volume += qty;
            self.turnover += self.ltp as i128 * qty as i128;
            self.sequence += 1;
        }
        self.exchange_ms = now_ms;
    }

    /// Price step for the random walk (paise): ₹1 on MCX, 1 paisa on CDS, else 5 paise.
    pub fn tick_size(&self) -> i64 {
        match self.instrument.exchange.as_str() {
            "MCX" => 100,
            "CDS" => 1,
            _ => 5,
        }
    }

    /// Upper and lower circuit: ±20 % of the previous close.
    pub fn circuits(&self) -> (i64, i64) {
        (self.close * 12 / 10, self.close * 8 / 10)
    }
}

/// All quotes, addressed by (exchange, token).
#[derive(Debug, Default)]
pub struct Market {
    pub quotes: HashMap<InstrumentKey, Quote>,
    pub clock: SimClock,
}

impl Market {
    pub fn new(instruments: &[SimInstrument], clock: SimClock) -> Self {
        let now_ms = clock.now_ms();
        let quotes = instruments
            .iter()
            .map(|i| {
                (
                    (i.exchange.clone(), i.token.clone()),
                    Quote::new(i.clone(), now_ms),
                )
            })
            .collect();
        Self { quotes, clock }
    }

    pub fn get(&self, exchange: &str, token: &str) -> Option<&Quote> {
        self.quotes.get(&(exchange.to_owned(), token.to_owned()))
    }

    pub fn get_mut(&mut self, exchange: &str, token: &str) -> Option<&mut Quote> {
        self.quotes
            .get_mut(&(exchange.to_owned(), token.to_owned()))
    }

    /// One random-walk step: ±1–2 ticks, pulled back towards the close beyond ±5 %.
    pub fn walk(&mut self, key: &InstrumentKey) {
        let now_ms = self.clock.now_ms();
        let Some(q) = self.quotes.get_mut(key) else {
            return;
        };
        let mut rng = rand::thread_rng();
        let tick = q.tick_size();
        let mut step = rng.gen_range(-2..=2) * tick;
        let band = q.close / 20;
        if q.ltp - q.close > band {
            step = -tick;
        } else if q.close - q.ltp > band {
            step = tick;
        }
        let qty = q.instrument.lot_size.max(1) * rng.gen_range(1..=10);
        q.trade(q.ltp + step, qty, now_ms);
        if q.instrument.is_index() {
            q.sequence = 0;
        }
    }
}

/// Rupees with `decimals` places from paise, as SmartAPI prints prices in strings.
pub fn rupees_str(paise: i64, exchange: &str) -> String {
    let sign = if paise < 0 { "-" } else { "" };
    let p = paise.unsigned_abs();
    if exchange == "CDS" {
        format!("{sign}{}.{:02}00", p / 100, p % 100)
    } else {
        format!("{sign}{}.{:02}", p / 100, p % 100)
    }
}

/// Rupees as a JSON number.
pub fn rupees(paise: i64) -> f64 {
    paise as f64 / 100.0
}
