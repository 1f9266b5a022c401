//! The last-value cache: the latest tick of every symbol, so a new subscriber can ask
//! `md.req.last` instead of waiting for the next tick.
//!
//! The publishing loop writes it; the request service reads it. Keys are nested
//! (exchange → symbol) so a write looks up by `&str` without allocating, and hashed with
//! seeded foldhash instead of SipHash (the write runs for every tick). Keys come from the
//! feed's own instruments, never from a request: requests only read.

use std::sync::RwLock;

use pinnacle_common::model::MarketTick;
use pinnacle_common::subjects;

use crate::filter::TickFilter;
use crate::intern::FastMap;

/// Latest tick per (exchange, symbol).
#[derive(Debug, Default)]
pub struct LastValues {
    /// exchange → symbol → tick.
    ticks: RwLock<FastMap<String, FastMap<String, MarketTick>>>,
}

impl LastValues {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a batch of ticks, replacing older ones.
    pub fn update(&self, batch: &[MarketTick]) {
        let Ok(mut map) = self.ticks.write() else {
            return;
        };
        for tick in batch {
            let per_exchange = match map.get_mut(tick.exchange.as_str()) {
                Some(m) => m,
                None => map.entry(tick.exchange.clone()).or_default(),
            };
            match per_exchange.get_mut(tick.symbol.as_str()) {
                Some(slot) => overwrite(slot, tick),
                None => {
                    per_exchange.insert(tick.symbol.clone(), tick.clone());
                }
            }
        }
    }

    /// The latest tick of one symbol.
    pub fn get(&self, exchange: &str, symbol: &str) -> Option<MarketTick> {
        let map = self.ticks.read().ok()?;
        map.get(exchange)?.get(symbol).cloned()
    }

    /// The ticks whose subject matches `filter` and sorts after `after`, in subject order,
    /// at most `limit` of them, each with its subject; and whether more follow.
    pub fn matching(
        &self,
        filter: &TickFilter,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, MarketTick)>, bool) {
        let Ok(map) = self.ticks.read() else {
            return (Vec::new(), false);
        };
        let mut found: Vec<(String, &MarketTick)> = Vec::new();
        for (exchange, symbols) in map.iter() {
            let exchange_token = subjects::escape_token(exchange);
            for (symbol, tick) in symbols {
                let symbol_token = subjects::escape_token(symbol);
                if !filter.matches(&[&exchange_token, &symbol_token]) {
                    continue;
                }
                let subject = subjects::tick(exchange, symbol);
                if after.is_some_and(|after| subject.as_str() <= after) {
                    continue;
                }
                found.push((subject, tick));
            }
        }
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let more = found.len() > limit;
        let page = found
            .into_iter()
            .take(limit)
            .map(|(subject, tick)| (subject, tick.clone()))
            .collect();
        (page, more)
    }

    /// How many symbols have a tick.
    pub fn len(&self) -> usize {
        self.ticks
            .read()
            .map(|m| m.values().map(FastMap::len).sum())
            .unwrap_or(0)
    }

    /// Whether no symbol has a tick yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Copies every value of `tick` into `slot` (same exchange and symbol) without
/// reallocating the strings. The exhaustive pattern makes a new field a compile error here.
fn overwrite(slot: &mut MarketTick, tick: &MarketTick) {
    let MarketTick {
        exchange: _,
        symbol: _,
        seq,
        ts_ms,
        ltp,
        last_qty,
        volume,
        bid,
        ask,
        mode,
        open,
        high,
        low,
        close,
        avg_price,
        total_buy_qty,
        total_sell_qty,
        upper_circuit,
        lower_circuit,
        open_interest,
        depth,
    } = tick;
    slot.seq = *seq;
    slot.ts_ms = *ts_ms;
    slot.ltp = *ltp;
    slot.last_qty = *last_qty;
    slot.volume = *volume;
    slot.bid = *bid;
    slot.ask = *ask;
    slot.mode = *mode;
    slot.open = *open;
    slot.high = *high;
    slot.low = *low;
    slot.close = *close;
    slot.avg_price = *avg_price;
    slot.total_buy_qty = *total_buy_qty;
    slot.total_sell_qty = *total_sell_qty;
    slot.upper_circuit = *upper_circuit;
    slot.lower_circuit = *lower_circuit;
    slot.open_interest = *open_interest;
    slot.depth.clone_from(depth);
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_common::model::Tick;

    fn tick(symbol: &str, seq: u64) -> MarketTick {
        MarketTick::from_core(Tick {
            exchange: "NSE".into(),
            symbol: symbol.into(),
            seq,
            ts_ms: 0,
            ltp: 100,
            last_qty: 1,
            volume: 1,
            bid: 95,
            ask: 105,
        })
    }

    #[test]
    fn keeps_the_latest_per_symbol() {
        let cache = LastValues::new();
        assert!(cache.is_empty());
        cache.update(&[tick("A", 1), tick("B", 1)]);
        cache.update(&[tick("A", 2)]);
        assert_eq!(cache.get("NSE", "A"), Some(tick("A", 2)));
        assert_eq!(cache.get("NSE", "B").map(|t| t.seq), Some(1));
        assert!(cache.get("BSE", "A").is_none());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn matching_pages_in_subject_order() {
        let cache = LastValues::new();
        cache.update(&[tick("C", 1), tick("A", 1), tick("B", 3), tick("A.B", 1)]);
        let all = TickFilter::parse("md.tick.NSE.*").expect("filter");
        let (page, more) = cache.matching(&all, None, 2);
        let names = |p: &[(String, MarketTick)]| -> Vec<String> {
            p.iter().map(|(_, t)| t.symbol.clone()).collect()
        };
        assert_eq!(names(&page), ["A", "A.B"]);
        assert_eq!(page[1].0, "md.tick.NSE.A~2EB");
        assert!(more);
        let (rest, more) = cache.matching(&all, Some(&page[1].0), 10);
        assert_eq!(names(&rest), ["B", "C"]);
        assert_eq!(rest[0].1.seq, 3);
        assert!(!more);
        let one = TickFilter::parse("md.tick.NSE.A~2EB").expect("escaped");
        assert_eq!(names(&cache.matching(&one, None, 10).0), ["A.B"]);
        let other = TickFilter::parse("md.tick.BSE.>").expect("bse");
        assert!(cache.matching(&other, None, 10).0.is_empty());
    }
}
