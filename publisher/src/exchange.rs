//! The exchange a market-data request names, checked the same way by every `md.req.*`
//! verb: in any case, and refused with `UNKNOWN_EXCHANGE` (never an empty answer or
//! `UNKNOWN_SYMBOL`) when Pinnacle knows nothing of it.
//!
//! Status and candles need the exchange's hours ([`with_hours`]); the data verbs (last
//! value, snapshot, symbols) also serve an exchange that only the instrument master lists,
//! such as `NCDEX` ([`listed`]), and a tick already cached is served whatever its exchange.
//! A symbol the exchange does not list is [`unknown_symbol`], in the same words everywhere.

use pinnacle_common::error::{ErrorBody, ErrorCode};

use crate::calendar::EXCHANGES;
use crate::instruments::Catalog;

/// `raw` as the upper-case name of an exchange whose hours Pinnacle knows.
pub fn with_hours(raw: &str) -> Result<&'static str, ErrorBody> {
    EXCHANGES
        .iter()
        .find(|e| e.eq_ignore_ascii_case(raw))
        .copied()
        .ok_or_else(|| unknown(raw))
}

/// `raw` in upper case, when Pinnacle knows its hours or `catalog` lists an instrument on
/// it.
pub fn listed(raw: &str, catalog: &Catalog) -> Result<String, ErrorBody> {
    let exchange = raw.to_ascii_uppercase();
    if EXCHANGES.contains(&exchange.as_str()) || catalog.has_exchange(&exchange) {
        Ok(exchange)
    } else {
        Err(unknown(raw))
    }
}

/// `UNKNOWN_SYMBOL` for `symbol` on a known `exchange` (the symbol cut to 60 characters).
pub fn unknown_symbol(exchange: &str, symbol: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownSymbol,
        format!(
            "unknown symbol {exchange}:{}",
            symbol.chars().take(60).collect::<String>()
        ),
    )
}

fn unknown(raw: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownExchange,
        format!(
            "unknown exchange {:?}; those with market hours: {}",
            raw.chars().take(20).collect::<String>(),
            EXCHANGES.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_case_of_a_known_exchange_is_its_name_and_anything_else_is_refused() {
        let catalog = Catalog::sample();
        assert_eq!(with_hours("nse"), Ok("NSE"));
        assert_eq!(with_hours("Mcx"), Ok("MCX"));
        assert_eq!(listed("bfo", &catalog).as_deref(), Ok("BFO"));
        let ncdex = Catalog::parse(
            r#"[{"token": "1", "symbol": "GUARSEED", "name": "GUARSEED", "expiry": "",
                "strike": "-1", "lotsize": "1", "instrumenttype": "FUTCOM",
                "exch_seg": "NCDEX", "tick_size": "1"}]"#,
        )
        .expect("a master");
        assert_eq!(listed("ncdex", &ncdex).as_deref(), Ok("NCDEX"));
        assert!(with_hours("NCDEX").is_err(), "no hours for NCDEX");
        for bad in ["", "NSEX", "NCDEX", "ns\u{e9}", "NSE ", "\u{202e}\u{0}"] {
            let error = with_hours(bad).expect_err(bad);
            assert_eq!(error.code, ErrorCode::UnknownExchange, "{bad}");
            let error = listed(bad, &catalog).expect_err(bad);
            assert_eq!(error.code, ErrorCode::UnknownExchange, "{bad}");
        }
    }
}
