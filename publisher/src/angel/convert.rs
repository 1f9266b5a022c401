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
use pinnacle_smartapi::ticks::{BestFive, DepthLevel, ExchangeType, Mode, Packet, Quote};

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

/// What to subscribe, and how to name what comes back.
#[derive(Debug)]
pub struct Plan {
    /// (mode, instruments) subscribe calls, in order.
    pub(crate) subscriptions: Vec<(Mode, Vec<Instrument>)>,
    /// (exchange type, token) → symbol state.
    pub(crate) listed: HashMap<(ExchangeType, String), Listed>,
}

impl Plan {
    /// Resolves `symbols` (`EXCHANGE:SYMBOL,…`) through `catalog` for `mode`. DEPTH
    /// subscribes every symbol in SNAP_QUOTE, plus the NSE cash ones in DEPTH.
    pub fn new(symbols: &str, mode: Mode, catalog: &Catalog) -> Result<Self, PlanError> {
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
            let kind =
                exchange_type(&exchange).ok_or_else(|| PlanError::Exchange(exchange.clone()))?;
            let key = (kind, found.token.clone());
            if listed.contains_key(&key) {
                continue;
            }
            instruments.push(Instrument::new(kind, found.token.clone()));
            listed.insert(
                key,
                Listed {
                    exchange: exchange.clone(),
                    symbol: found.symbol.clone(),
                    seq: 0,
                    book: None,
                },
            );
        }
        if !unknown.is_empty() {
            return Err(PlanError::Unknown(unknown));
        }
        if instruments.is_empty() {
            return Err(PlanError::Empty);
        }
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
        Ok(Self {
            subscriptions,
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
            let level = |l: &DepthLevel| Level {
                price: price(i64::from(l.price)),
                qty: i64::from(l.quantity),
                orders: i64::from(l.orders),
            };
            let book = Book {
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
            };
            listed.book = Some(book);
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
        let quote = match packet {
            Packet::Quote(q) => Some(q),
            Packet::SnapQuote(s) => Some(&s.quote),
            _ => None,
        };
        if let Some(q) = quote {
            fill_quote(&mut tick, q, price);
        }
        if let Packet::SnapQuote(s) = packet {
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
            tick.bid = book.bids.first().map_or(ltp, |l| l.price);
            tick.ask = book.asks.first().map_or(ltp, |l| l.price);
            tick.depth = Some(Box::new(book));
        }
        if let Some(book) = listed.book.take() {
            if let (Some(bid), Some(ask)) = (book.bids.first(), book.asks.first()) {
                tick.bid = bid.price;
                tick.ask = ask.price;
            }
            tick.depth = Some(Box::new(book));
        }
        Some(tick)
    }
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
mod tests {
    use super::*;
    use pinnacle_smartapi::ticks::{Ltp, SnapQuote};

    fn ltp_packet(kind: ExchangeType, token: &str, raw: i64) -> Ltp {
        Ltp {
            exchange_type: kind,
            token: token.into(),
            sequence_number: 9,
            exchange_timestamp_ms: 1_700_000_000_000,
            last_traded_price: raw,
        }
    }

    #[test]
    fn prices_use_the_exchange_divisor() {
        assert_eq!(to_paise(ExchangeType::NseCm, 82_050), 82_050);
        assert_eq!(to_paise(ExchangeType::CdeFo, 832_525_000), 8_325);
        assert_eq!(to_paise(ExchangeType::CdeFo, 832_550_000), 8_326);
        assert_eq!(to_paise(ExchangeType::CdeFo, -832_550_000), -8_326);
        assert_eq!(
            to_paise(ExchangeType::CdeFo, i64::MAX),
            i64::MAX / 100_000 + 1
        );
        assert_eq!(to_paise(ExchangeType::NseCm, i64::MIN), i64::MIN);
    }

    #[test]
    fn the_plan_resolves_symbols_through_the_catalog() {
        let catalog = Catalog::sample();
        let plan = Plan::new(
            "NSE:SBIN-EQ, nse:reliance-eq,NSE:SBIN-EQ",
            Mode::Quote,
            &catalog,
        )
        .expect("plan");
        assert_eq!(plan.len(), 2);
        assert_eq!(plan.subscriptions.len(), 1);
        assert!(matches!(
            Plan::new("NSE:NOPE-EQ", Mode::Quote, &catalog),
            Err(PlanError::Unknown(_))
        ));
        assert!(matches!(
            Plan::new("SBIN", Mode::Quote, &catalog),
            Err(PlanError::Syntax(_))
        ));
        assert!(matches!(
            Plan::new(" ", Mode::Quote, &catalog),
            Err(PlanError::Empty)
        ));
        let depth =
            Plan::new("NSE:SBIN-EQ,NFO:NIFTY30DEC26FUT", Mode::Depth, &catalog).expect("plan");
        let modes: Vec<_> = depth
            .subscriptions
            .iter()
            .map(|(m, l)| (*m, l.len()))
            .collect();
        assert_eq!(modes, vec![(Mode::SnapQuote, 2), (Mode::Depth, 1)]);
        assert!(parse_mode("bogus").is_err());
        assert_eq!(parse_mode("snap_quote").ok(), Some(Mode::SnapQuote));
    }

    #[test]
    fn packets_become_ticks_with_our_own_sequence_numbers() {
        let catalog = Catalog::sample();
        let mut plan = Plan::new("NSE:SBIN-EQ", Mode::SnapQuote, &catalog).expect("plan");
        let token = catalog
            .by_symbol("NSE", "SBIN-EQ")
            .expect("listed")
            .token
            .clone();
        let first = plan
            .tick(
                &Packet::Ltp(ltp_packet(ExchangeType::NseCm, &token, 82_050)),
                1,
            )
            .expect("tick");
        assert_eq!(
            (first.seq, first.ltp, first.mode),
            (1, 82_050, FeedMode::Ltp)
        );
        assert_eq!(
            (first.exchange.as_str(), first.symbol.as_str()),
            ("NSE", "SBIN-EQ")
        );
        let quote = Quote {
            ltp: ltp_packet(ExchangeType::NseCm, &token, 82_100),
            last_traded_quantity: 5,
            average_traded_price: 82_000,
            volume: 1_000,
            total_buy_quantity: 10.0,
            total_sell_quantity: 20.0,
            open: 81_000,
            high: 83_000,
            low: 80_000,
            close: 81_500,
        };
        let book = |flag| BestFive {
            flag,
            quantity: 7,
            price: if flag == 0 { 82_105 } else { 82_095 },
            orders: 2,
        };
        let snap = SnapQuote {
            quote,
            last_traded_timestamp_s: 1,
            open_interest: 0,
            open_interest_change_pct: 0.0,
            best_five_buy: vec![book(1)],
            best_five_sell: vec![book(0)],
            upper_circuit: 90_000,
            lower_circuit: 70_000,
            week_52_high: 1,
            week_52_low: 1,
        };
        let second = plan.tick(&Packet::SnapQuote(snap), 1).expect("tick");
        assert_eq!(second.seq, 2);
        assert_eq!((second.bid, second.ask), (82_095, 82_105));
        assert_eq!(second.upper_circuit, Some(90_000));
        assert_eq!(second.depth_message().map(|d| d.bids.len()), Some(1));
        let stranger = Packet::Ltp(ltp_packet(ExchangeType::NseCm, "1", 1));
        assert!(plan.tick(&stranger, 1).is_none());
    }
}
