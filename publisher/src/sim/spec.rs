//! Parsing the simulator's symbol list: `EXCHANGE:SYMBOL[@PRICE]`, price in rupees.

/// A symbol list entry could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid symbol spec {spec:?}: {reason}")]
pub struct SymbolSpecError {
    /// The offending entry.
    pub spec: String,
    /// Why.
    pub reason: &'static str,
}

/// One instrument's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSpec {
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// Starting price in paise; derived from the seed when not given.
    pub start_price: Option<i64>,
}

/// Parses `NSE:SBIN-EQ@820.50,NSE:TCS-EQ`.
pub fn parse_symbols(list: &str) -> Result<Vec<SymbolSpec>, SymbolSpecError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|spec| {
            let err = |reason| SymbolSpecError {
                spec: spec.to_string(),
                reason,
            };
            let (instrument, price) = match spec.split_once('@') {
                Some((i, p)) => (i, Some(parse_rupees(p).ok_or_else(|| err("bad price"))?)),
                None => (spec, None),
            };
            let (exchange, symbol) = instrument
                .split_once(':')
                .ok_or_else(|| err("expected EXCHANGE:SYMBOL"))?;
            if exchange.is_empty() || symbol.is_empty() {
                return Err(err("empty exchange or symbol"));
            }
            Ok(SymbolSpec {
                exchange: exchange.to_ascii_uppercase(),
                symbol: symbol.to_string(),
                start_price: price,
            })
        })
        .collect()
}

/// `count` generated NSE equities, `SIM00001-EQ` onwards, for load tests.
pub fn synthetic(count: usize) -> Vec<SymbolSpec> {
    (1..=count)
        .map(|i| SymbolSpec {
            exchange: "NSE".into(),
            symbol: format!("SIM{i:05}-EQ"),
            start_price: None,
        })
        .collect()
}

/// Parses a positive rupee amount with up to two decimals into paise, without floats.
pub fn parse_rupees(text: &str) -> Option<i64> {
    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty() || frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    let paise = whole.checked_mul(100)?.checked_add(frac)?;
    (paise > 0).then_some(paise)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_symbol_lists() {
        let s =
            parse_symbols("NSE:SBIN-EQ@820.50, NSE:TCS-EQ, BSE:NIFTY 50@24000").expect("parses");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].start_price, Some(82_050));
        assert_eq!(s[1].start_price, None);
        assert_eq!(s[2].symbol, "NIFTY 50");
        assert!(parse_symbols("SBIN").is_err());
        assert!(parse_symbols("NSE:SBIN@-1").is_err());
        assert!(parse_symbols("NSE:SBIN@1.234").is_err());
        assert_eq!(parse_rupees("820.5"), Some(82_050));
        assert_eq!(parse_rupees("0"), None);
        assert_eq!(synthetic(2)[1].symbol, "SIM00002-EQ");
    }
}
