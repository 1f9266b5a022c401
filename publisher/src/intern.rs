//! Subjects built once per symbol: the publishing loop looks a tick's
//! `md.tick.<EXCHANGE>.<SYMBOL>` and `md.depth.<EXCHANGE>.<SYMBOL>` up here instead of
//! escaping and allocating them for every tick. A [`Subject`] is reference-counted bytes,
//! so handing one to NATS is a counter increment.
//!
//! Keys are nested (exchange → symbol) so a lookup borrows the tick's `&str`s, and the
//! maps hash with seeded foldhash, several times cheaper than SipHash on short keys. The
//! table only grows with the feed's own symbol set (the instruments it was told to stream).

use std::collections::HashMap;

use async_nats::Subject;
use pinnacle_common::subjects;

/// The map type of the hot path.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One symbol's subjects.
#[derive(Debug, Clone)]
pub struct SymbolSubjects {
    /// `md.tick.<EXCHANGE>.<SYMBOL>`.
    pub tick: Subject,
    /// `md.depth.<EXCHANGE>.<SYMBOL>`.
    pub depth: Subject,
}

/// exchange → symbol → its subjects.
#[derive(Debug, Default)]
pub struct SubjectTable {
    /// exchange → symbol → subjects, filled on first sight of a symbol.
    by_exchange: FastMap<String, FastMap<String, SymbolSubjects>>,
}

impl SubjectTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// `md.tick.<EXCHANGE>.<SYMBOL>`, built on first use.
    pub fn tick(&mut self, exchange: &str, symbol: &str) -> Subject {
        self.pick(exchange, symbol, |s| &s.tick)
    }

    /// `md.depth.<EXCHANGE>.<SYMBOL>`, built on first use.
    pub fn depth(&mut self, exchange: &str, symbol: &str) -> Subject {
        self.pick(exchange, symbol, |s| &s.depth)
    }

    /// One of the symbol's subjects; the common hit borrows the tick's `&str`s and
    /// allocates nothing.
    fn pick(
        &mut self,
        exchange: &str,
        symbol: &str,
        which: impl Fn(&SymbolSubjects) -> &Subject,
    ) -> Subject {
        let symbols = match self.by_exchange.get_mut(exchange) {
            Some(symbols) => symbols,
            None => self.by_exchange.entry(exchange.to_string()).or_default(),
        };
        if let Some(found) = symbols.get(symbol) {
            return which(found).clone();
        }
        let built = SymbolSubjects {
            tick: Subject::from(subjects::tick(exchange, symbol)),
            depth: Subject::from(subjects::depth(exchange, symbol)),
        };
        let subject = which(&built).clone();
        symbols.insert(symbol.to_string(), built);
        subject
    }

    /// How many symbols have subjects.
    pub fn len(&self) -> usize {
        self.by_exchange.values().map(HashMap::len).sum()
    }

    /// Whether no symbol has been seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_the_escaped_ones_and_built_once() {
        let mut table = SubjectTable::new();
        assert!(table.is_empty());
        let first = table.tick("NSE", "BAJAJ.AUTO");
        assert_eq!(first.as_str(), "md.tick.NSE.BAJAJ~2EAUTO");
        assert_eq!(
            table.depth("NSE", "BAJAJ.AUTO").as_str(),
            "md.depth.NSE.BAJAJ~2EAUTO"
        );
        assert_eq!(
            table.tick("NSE", "NIFTY 50").as_str(),
            subjects::tick("NSE", "NIFTY 50")
        );
        assert_eq!(
            table.tick("BSE", "BAJAJ.AUTO").as_str(),
            "md.tick.BSE.BAJAJ~2EAUTO"
        );
        // The same bytes come back, not a rebuilt copy.
        let again = table.tick("NSE", "BAJAJ.AUTO");
        assert_eq!(again.as_str().as_ptr(), first.as_str().as_ptr());
        assert_eq!(table.len(), 3);
    }
}
