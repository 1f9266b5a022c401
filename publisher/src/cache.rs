//! The last-value cache: the latest tick of every symbol, so a new subscriber can ask
//! `md.req.last` instead of waiting for the next tick.
//!
//! The publishing loop writes it; the request service reads it. Keys are nested
//! (exchange → symbol) so a write looks up by `&str` without allocating.

use std::collections::HashMap;
use std::sync::RwLock;

use pinnacle_common::model::MarketTick;

/// Latest tick per (exchange, symbol).
#[derive(Debug, Default)]
pub struct LastValues {
    /// exchange → symbol → tick.
    ticks: RwLock<HashMap<String, HashMap<String, MarketTick>>>,
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
                Some(slot) => slot.clone_from(tick),
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

    /// How many symbols have a tick.
    pub fn len(&self) -> usize {
        self.ticks
            .read()
            .map(|m| m.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }

    /// Whether no symbol has a tick yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
        assert_eq!(cache.get("NSE", "A").map(|t| t.seq), Some(2));
        assert_eq!(cache.get("NSE", "B").map(|t| t.seq), Some(1));
        assert!(cache.get("BSE", "A").is_none());
        assert_eq!(cache.len(), 2);
    }
}
