//! From the configured symbol list to feed subscriptions, and from decoded
//! SmartWebSocketV2 packets to the publisher's [`MarketTick`].
//!
//! Prices leave here in paise: raw wire prices are divided by the exchange type's divisor
//! (SPEC §8.5: paise everywhere, 10^-7 rupees for currency) and rounded to the nearest
//! paisa, so a CDS price such as ₹83.2525 becomes 8325 paise. Sequence numbers are the
//! publisher's own, +1 per tick per symbol, so they survive reconnects and are gap-free
//! (the exchange's sequence number is absent for indices).

use std::collections::HashMap;

use pinnacle_common::model::{Book, FeedMode, Level, MarketTick, Tick};
use pinnacle_smartapi::stream::{Instrument, MAX_DEPTH_TOKENS, MAX_SUBSCRIPTIONS};
use pinnacle_smartapi::ticks::{
    BestFive, Depth, DepthLevel, ExchangeType, Mode, Packet, Quote, SnapQuote,
};

use crate::instruments::Catalog;

/// The symbol list or mode cannot be subscribed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `PINNACLE_MD_ANGEL_MODE` is not a mode.
    #[error("PINNACLE_MD_ANGEL_MODE must be LTP, QUOTE, SNAP_QUOTE or DEPTH, not {0:?}")]
    Mode(String),
    /// An entry is not `EXCHANGE:SYMBOL`.
    #[error("PINNACLE_MD_ANGEL_SYMBOLS entry {0:?} is not EXCHANGE:SYMBOL")]
    Syntax(String),
    /// Symbols missing from the instrument master (so they have no token).
    #[error("PINNACLE_MD_ANGEL_SYMBOLS: not in the instrument master: {}", .0.join(", "))]
    Unknown(Vec<String>),
    /// An exchange the feed has no exchange type for.
    #[error("PINNACLE_MD_ANGEL_SYMBOLS: the Angel One feed has no exchange {0:?}")]
    Exchange(String),
    /// Nothing to subscribe.
    #[error("PINNACLE_MD_ANGEL_SYMBOLS is empty")]
    Empty,
    /// Beyond the server's per-connection limits.
    #[error("{0}")]
    Limits(String),
}

/// SPEC §4: the REST exchange name ↔ the feed's exchange type.
pub fn exchange_type(exchange: &str) -> Option<ExchangeType> {
    Some(match exchange {
        "NSE" => ExchangeType::NseCm,
        "NFO" => ExchangeType::NseFo,
        "BSE" => ExchangeType::BseCm,
        "BFO" => ExchangeType::BseFo,
        "MCX" => ExchangeType::McxFo,
        "NCDEX" => ExchangeType::NcxFo,
        "CDS" => ExchangeType::CdeFo,
        _ => return None,
    })
}

/// A raw wire price in paise, rounded half away from zero.
pub fn to_paise(exchange: ExchangeType, raw: i64) -> i64 {
    let divisor = i128::from(exchange.price_divisor());
    let scaled = i128::from(raw) * 100;
    let rounded = if scaled >= 0 {
        (scaled + divisor / 2) / divisor
    } else {
        (scaled - divisor / 2) / divisor
    };
    i64::try_from(rounded).unwrap_or(if rounded > 0 { i64::MAX } else { i64::MIN })
}

/// Parses `PINNACLE_MD_ANGEL_MODE`.
pub fn parse_mode(text: &str) -> Result<Mode, PlanError> {
    match text.trim().to_ascii_uppercase().as_str() {
        "LTP" => Ok(Mode::Ltp),
        "QUOTE" => Ok(Mode::Quote),
        "SNAP_QUOTE" | "SNAPQUOTE" | "FULL" => Ok(Mode::SnapQuote),
        "DEPTH" => Ok(Mode::Depth),
        _ => Err(PlanError::Mode(text.chars().take(20).collect())),
    }
}

/// One subscribed instrument and its running state.
#[derive(Debug)]
pub(crate) struct Listed {
    /// REST exchange name, e.g. `NSE`.
    exchange: String,
    /// Trading symbol as the instrument master spells it.
    symbol: String,
    /// Last sequence number handed out.
    seq: u64,
    /// A 20-level book from a DEPTH packet, attached to the symbol's next tick.
    book: Option<Book>,
}

/// (exchange type, token) → the state of a subscribed symbol.
pub(crate) type Listing = HashMap<(ExchangeType, String), Listed>;

/// What to subscribe, and how to name what comes back.
#[derive(Debug)]
pub struct Plan {
    /// (mode, instruments) subscribe calls, in order.
    pub(crate) subscriptions: Vec<(Mode, Vec<Instrument>)>,
    /// (exchange type, token) → symbol state.
    pub(crate) listed: Listing,
}

impl Plan {
    /// Resolves `symbols` (`EXCHANGE:SYMBOL,…`) through `catalog` for `mode`. DEPTH
    /// subscribes every symbol in SNAP_QUOTE, plus the NSE cash ones in DEPTH.
    pub fn new(symbols: &str, mode: Mode, catalog: &Catalog) -> Result<Self, PlanError> {
        let (listed, instruments) = resolve(symbols, catalog)?;
        Ok(Self {
            subscriptions: subscriptions(mode, instruments)?,
            listed,
        })
    }

    /// How many symbols are subscribed.
    pub fn len(&self) -> usize {
        self.listed.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// The tick for `packet`, or `None` for a DEPTH packet (its book waits for the next
    /// tick) or an instrument that was not subscribed.
    pub fn tick(&mut self, packet: &Packet, now_ms: i64) -> Option<MarketTick> {
        let kind = packet.exchange_type();
        let listed = self.listed.get_mut(&(kind, packet.token().to_string()))?;
        let price = |raw: i64| to_paise(kind, raw);
        if let Packet::Depth(depth) = packet {
            listed.book = Some(depth_book(depth, price));
            return None;
        }
        let header = packet.ltp()?;
        let ltp = price(header.last_traded_price);
        listed.seq += 1;
        let ts_ms = if header.exchange_timestamp_ms > 0 {
            header.exchange_timestamp_ms
        } else {
            now_ms
        };
        let mut tick = MarketTick::from_core(Tick {
            exchange: listed.exchange.clone(),
            symbol: listed.symbol.clone(),
            seq: listed.seq,
            ts_ms,
            ltp,
            last_qty: 0,
            volume: 0,
            bid: ltp,
            ask: ltp,
        });
        match packet {
            Packet::Quote(q) => fill_quote(&mut tick, q, price),
            Packet::SnapQuote(s) => {
                fill_quote(&mut tick, &s.quote, price);
                fill_snap_quote(&mut tick, s, price);
            }
            _ => {}
        }
        if let Some(book) = listed.book.take() {
            attach_depth(&mut tick, book);
        }
        Some(tick)
    }
}

/// The instruments of `symbols` (`EXCHANGE:SYMBOL,…`, duplicates once) in the order
/// given, each with its running state; every symbol must be in `catalog`.
fn resolve(symbols: &str, catalog: &Catalog) -> Result<(Listing, Vec<Instrument>), PlanError> {
    let mut listed = HashMap::new();
    let mut instruments = Vec::new();
    let mut unknown = Vec::new();
    for entry in symbols.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (exchange, symbol) = entry
            .split_once(':')
            .filter(|(e, s)| !e.trim().is_empty() && !s.trim().is_empty())
            .ok_or_else(|| PlanError::Syntax(entry.chars().take(60).collect()))?;
        let exchange = exchange.trim().to_ascii_uppercase();
        let Some(found) = catalog.by_symbol(&exchange, symbol.trim()) else {
            unknown.push(entry.chars().take(60).collect());
            continue;
        };
        let kind = exchange_type(&exchange).ok_or_else(|| PlanError::Exchange(exchange.clone()))?;
        let key = (kind, found.token.clone());
        if listed.contains_key(&key) {
            continue;
        }
        instruments.push(Instrument::new(kind, found.token.clone()));
        let state = Listed {
            exchange: exchange.clone(),
            symbol: found.symbol.clone(),
            seq: 0,
            book: None,
        };
        listed.insert(key, state);
    }
    if !unknown.is_empty() {
        return Err(PlanError::Unknown(unknown));
    }
    if instruments.is_empty() {
        return Err(PlanError::Empty);
    }
    Ok((listed, instruments))
}

/// The subscribe calls for `instruments` in `mode` (DEPTH: all in SNAP_QUOTE, the NSE
/// cash ones also in DEPTH), within the server's per-connection limits.
fn subscriptions(
    mode: Mode,
    instruments: Vec<Instrument>,
) -> Result<Vec<(Mode, Vec<Instrument>)>, PlanError> {
    let mut subscriptions = Vec::new();
    if mode == Mode::Depth {
        let depth: Vec<Instrument> = instruments
            .iter()
            .filter(|i| i.exchange == ExchangeType::NseCm)
            .cloned()
            .collect();
        if depth.len() > MAX_DEPTH_TOKENS {
            return Err(PlanError::Limits(format!(
                "DEPTH allows at most {MAX_DEPTH_TOKENS} NSE cash symbols, not {}",
                depth.len()
            )));
        }
        subscriptions.push((Mode::SnapQuote, instruments));
        if !depth.is_empty() {
            subscriptions.push((Mode::Depth, depth));
        }
    } else {
        subscriptions.push((mode, instruments));
    }
    let total: usize = subscriptions.iter().map(|(_, list)| list.len()).sum();
    if total > MAX_SUBSCRIPTIONS {
        return Err(PlanError::Limits(format!(
            "the Angel One feed allows at most {MAX_SUBSCRIPTIONS} subscriptions per connection, not {total}"
        )));
    }
    Ok(subscriptions)
}

/// The book of a DEPTH packet (empty levels left out), in paise.
fn depth_book(depth: &Depth, price: impl Fn(i64) -> i64) -> Book {
    let level = |l: &DepthLevel| Level {
        price: price(i64::from(l.price)),
        qty: i64::from(l.quantity),
        orders: i64::from(l.orders),
    };
    Book {
        bids: depth
            .bids
            .iter()
            .filter(|l| l.quantity > 0)
            .map(level)
            .collect(),
        asks: depth
            .asks
            .iter()
            .filter(|l| l.quantity > 0)
            .map(level)
            .collect(),
    }
}

/// A SNAP_QUOTE's circuits, open interest and best five, whose first levels are the
/// tick's bid and ask.
fn fill_snap_quote(tick: &mut MarketTick, s: &SnapQuote, price: impl Fn(i64) -> i64) {
    tick.mode = FeedMode::SnapQuote;
    tick.upper_circuit = Some(price(s.upper_circuit));
    tick.lower_circuit = Some(price(s.lower_circuit));
    tick.open_interest = Some(s.open_interest);
    let level = |b: &BestFive| Level {
        price: price(b.price),
        qty: b.quantity,
        orders: i64::from(b.orders),
    };
    let book = Book {
        bids: s
            .best_five_buy
            .iter()
            .filter(|b| b.quantity > 0)
            .map(level)
            .collect(),
        asks: s
            .best_five_sell
            .iter()
            .filter(|b| b.quantity > 0)
            .map(level)
            .collect(),
    };
    tick.bid = book.bids.first().map_or(tick.ltp, |l| l.price);
    tick.ask = book.asks.first().map_or(tick.ltp, |l| l.price);
    tick.depth = Some(Box::new(book));
}

/// A 20-level book that a DEPTH packet left for this tick: it replaces the best five,
/// and its first levels (when both sides have one) the bid and ask.
fn attach_depth(tick: &mut MarketTick, book: Book) {
    if let (Some(bid), Some(ask)) = (book.bids.first(), book.asks.first()) {
        tick.bid = bid.price;
        tick.ask = ask.price;
    }
    tick.depth = Some(Box::new(book));
}

fn fill_quote(tick: &mut MarketTick, q: &Quote, price: impl Fn(i64) -> i64) {
    tick.mode = FeedMode::Quote;
    tick.last_qty = q.last_traded_quantity;
    tick.volume = q.volume;
    tick.open = Some(price(q.open));
    tick.high = Some(price(q.high));
    tick.low = Some(price(q.low));
    tick.close = Some(price(q.close));
    tick.avg_price = Some(price(q.average_traded_price));
    // Sent as doubles; whole quantities in practice.
    tick.total_buy_qty = Some(q.total_buy_quantity.round() as i64);
    tick.total_sell_qty = Some(q.total_sell_quantity.round() as i64);
}

#[cfg(test)]
mod tests;
