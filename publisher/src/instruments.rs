//! The instrument master: Angel One's `OpenAPIScripMaster.json` (SPEC §5), loaded from a
//! file or a URL, indexed for lookup by token or symbol and search by prefix or name.
//!
//! The file is a JSON array of maps whose values are all strings. Strikes are scaled ×100
//! (so they are paise already) and tick sizes are in paise. A bundled sample
//! (`publisher/data/OpenAPIScripMaster.sample.json`) is used when nothing is configured.

use std::collections::HashMap;

use pinnacle_common::model::Instrument;
use serde::Deserialize;

/// The bundled sample master.
pub const SAMPLE_MASTER: &str = include_str!("../data/OpenAPIScripMaster.sample.json");

/// The master could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InstrumentError {
    /// The file could not be read.
    #[error("could not read instrument master {path}: {reason}")]
    Read {
        /// Path or URL.
        path: String,
        /// Why.
        reason: String,
    },
    /// The content is not an OpenAPIScripMaster.json array.
    #[error("instrument master is not valid OpenAPIScripMaster JSON: {0}")]
    Parse(#[from] serde_json::Error),
}

/// One raw row; every value is a string.
#[derive(Debug, Deserialize)]
struct RawRow {
    token: String,
    symbol: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    expiry: String,
    #[serde(default)]
    strike: String,
    #[serde(default)]
    lotsize: String,
    #[serde(default)]
    instrumenttype: String,
    exch_seg: String,
    #[serde(default)]
    tick_size: String,
}

/// Parses a decimal string to the nearest integer, without floats (`"2440000.000000"`).
fn parse_decimal(text: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let whole: i64 = whole.parse().ok()?;
    let round_up = frac.as_bytes().first().is_some_and(|d| *d >= b'5');
    Some(if round_up {
        whole + whole.signum().max(1)
    } else {
        whole
    })
}

impl RawRow {
    fn into_instrument(self) -> Instrument {
        let strike = parse_decimal(&self.strike).filter(|s| *s > 0);
        Instrument {
            token: self.token,
            symbol: self.symbol,
            name: self.name,
            exchange: self.exch_seg.to_ascii_uppercase(),
            expiry: self.expiry,
            strike,
            lot_size: self.lotsize.trim().parse().unwrap_or(1).max(1),
            instrument_type: self.instrumenttype,
            // Indices carry 0; treat that (and junk) as one paisa for price arithmetic.
            tick_size: parse_decimal(&self.tick_size).unwrap_or(1).max(1),
        }
    }
}

/// The loaded and indexed master.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Every instrument, sorted by (exchange, upper-case symbol).
    instruments: Vec<Instrument>,
    /// Upper-case symbols, parallel to `instruments`, for prefix search.
    keys: Vec<String>,
    /// (exchange, token) → index.
    by_token: HashMap<(String, String), usize>,
    /// (exchange, upper-case symbol) → index.
    by_symbol: HashMap<(String, String), usize>,
}

impl Catalog {
    /// Parses OpenAPIScripMaster JSON.
    pub fn parse(json: &str) -> Result<Self, InstrumentError> {
        let rows: Vec<RawRow> = serde_json::from_str(json)?;
        let mut instruments: Vec<Instrument> =
            rows.into_iter().map(RawRow::into_instrument).collect();
        instruments.sort_by(|a, b| {
            (a.exchange.as_str(), a.symbol.to_ascii_uppercase())
                .cmp(&(b.exchange.as_str(), b.symbol.to_ascii_uppercase()))
        });
        let keys = instruments
            .iter()
            .map(|i| i.symbol.to_ascii_uppercase())
            .collect::<Vec<_>>();
        let mut by_token = HashMap::with_capacity(instruments.len());
        let mut by_symbol = HashMap::with_capacity(instruments.len());
        for (index, (inst, key)) in instruments.iter().zip(&keys).enumerate() {
            by_token.insert((inst.exchange.clone(), inst.token.clone()), index);
            by_symbol.insert((inst.exchange.clone(), key.clone()), index);
        }
        Ok(Self {
            instruments,
            keys,
            by_token,
            by_symbol,
        })
    }

    /// The bundled sample.
    pub fn sample() -> Self {
        Self::parse(SAMPLE_MASTER).unwrap_or_default()
    }

    /// Loads from a path or an `http(s)://` URL; the sample when `source` is `None`.
    pub async fn load(source: Option<&str>) -> Result<Self, InstrumentError> {
        let Some(source) = source.filter(|s| !s.trim().is_empty()) else {
            return Ok(Self::sample());
        };
        let fail = |reason: String| InstrumentError::Read {
            path: source.to_string(),
            reason,
        };
        let text = if source.starts_with("http://") || source.starts_with("https://") {
            let response = reqwest::get(source)
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| fail(e.to_string()))?;
            response.text().await.map_err(|e| fail(e.to_string()))?
        } else {
            tokio::fs::read_to_string(source)
                .await
                .map_err(|e| fail(e.to_string()))?
        };
        Self::parse(&text)
    }

    /// How many instruments are loaded.
    pub fn len(&self) -> usize {
        self.instruments.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.instruments.is_empty()
    }

    /// Whether any instrument trades on `exchange`.
    pub fn has_exchange(&self, exchange: &str) -> bool {
        // Sorted by exchange first (`parse`).
        let first = self
            .instruments
            .partition_point(|i| i.exchange.as_str() < exchange);
        self.instruments
            .get(first)
            .is_some_and(|i| i.exchange == exchange)
    }

    /// One instrument by exchange and token.
    pub fn by_token(&self, exchange: &str, token: &str) -> Option<&Instrument> {
        let key = (exchange.to_ascii_uppercase(), token.to_string());
        self.by_token.get(&key).map(|&i| &self.instruments[i])
    }

    /// One instrument by exchange and symbol (case-insensitive).
    pub fn by_symbol(&self, exchange: &str, symbol: &str) -> Option<&Instrument> {
        let key = (exchange.to_ascii_uppercase(), symbol.to_ascii_uppercase());
        self.by_symbol.get(&key).map(|&i| &self.instruments[i])
    }

    /// Instruments whose symbol starts with `query`, or whose name contains it as a word
    /// prefix (case-insensitive); exact symbol matches first. At most `limit`.
    pub fn search(&self, query: &str, exchange: Option<&str>, limit: usize) -> Vec<Instrument> {
        let q = query.trim().to_ascii_uppercase();
        if q.is_empty() || limit == 0 {
            return Vec::new();
        }
        let exchange = exchange.map(str::to_ascii_uppercase);
        let mut hits: Vec<(u8, usize)> = Vec::new();
        for (index, (inst, key)) in self.instruments.iter().zip(&self.keys).enumerate() {
            if exchange.as_deref().is_some_and(|e| e != inst.exchange) {
                continue;
            }
            let rank = if *key == q {
                0
            } else if key.starts_with(&q) {
                1
            } else if inst
                .name
                .to_ascii_uppercase()
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '&' && c != '-')
                .any(|word| word.starts_with(&q))
            {
                2
            } else {
                continue;
            };
            hits.push((rank, index));
        }
        hits.sort();
        hits.into_iter()
            .take(limit)
            .map(|(_, i)| self.instruments[i].clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_parses_and_indexes() {
        let catalog = Catalog::sample();
        assert!(catalog.len() >= 30, "{}", catalog.len());
        let sbin = catalog.by_symbol("nse", "sbin-eq").expect("SBIN-EQ");
        assert_eq!((sbin.token.as_str(), sbin.tick_size), ("3045", 5));
        assert_eq!(
            catalog.by_token("NSE", "3045").map(|i| &i.symbol),
            Some(&sbin.symbol)
        );
        let option = catalog
            .by_symbol("NFO", "NIFTY30DEC2624400CE")
            .expect("option");
        assert_eq!((option.strike, option.lot_size), (Some(2_440_000), 75));
        assert!(catalog.by_token("BSE", "3045").is_none());
    }

    #[test]
    fn search_ranks_exact_then_prefix_then_name() {
        let catalog = Catalog::sample();
        let hits = catalog.search("sbin", None, 10);
        assert_eq!(hits[0].symbol, "SBIN", "exact first: {hits:?}");
        assert!(hits.iter().any(|i| i.symbol == "SBIN-EQ"));
        assert!(hits.iter().any(|i| i.symbol == "SBIN30DEC26FUT"));
        let nse = catalog.search("SBIN", Some("NSE"), 10);
        assert!(nse.iter().all(|i| i.exchange == "NSE"));
        assert_eq!(catalog.search("banknifty", None, 1).len(), 1);
        assert!(catalog.search("", None, 10).is_empty());
        assert!(catalog.search("ZZZZZZ", None, 10).is_empty());
    }

    #[test]
    fn bad_masters_are_errors_not_panics() {
        assert!(Catalog::parse("{").is_err());
        assert!(Catalog::parse("[{\"token\": 1}]").is_err());
        let odd = Catalog::parse(
            r#"[{"token":"1","symbol":"X","exch_seg":"nse","lotsize":"junk","tick_size":"-"}]"#,
        )
        .expect("lenient numbers");
        let x = odd.by_symbol("NSE", "x").expect("found");
        assert_eq!((x.lot_size, x.tick_size, x.strike), (1, 1, None));
        assert_eq!(parse_decimal("2440000.000000"), Some(2_440_000));
        assert_eq!(parse_decimal("0.250000"), Some(0));
    }
}
