//! A `md.tick.` subject filter with NATS wildcards (`*` one token, `>` the rest), as a
//! snapshot request gives it; the last-value cache pages through the ticks it matches.

use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::subjects;

/// Longest accepted subject filter.
const MAX_FILTER_LEN: usize = 256;

/// A `md.tick.` subject filter, split into tokens (`*` one token, `>` the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickFilter {
    /// Tokens after `md.tick.`.
    tokens: Vec<String>,
}

impl TickFilter {
    /// Parses `md.tick.<EXCHANGE>.<SYMBOL>` with NATS wildcards.
    pub fn parse(filter: &str) -> Result<Self, ErrorBody> {
        let invalid = |why: &str| {
            ErrorBody::new(
                ErrorCode::InvalidRequest,
                format!(
                    "subject {:?} {why}",
                    filter.chars().take(80).collect::<String>()
                ),
            )
        };
        if filter.len() > MAX_FILTER_LEN {
            return Err(invalid("is too long"));
        }
        let prefix = format!("{}.", subjects::MD_TICK_PREFIX);
        let rest = filter
            .strip_prefix(&prefix)
            .ok_or_else(|| invalid("must start with md.tick."))?;
        let tokens: Vec<String> = rest.split('.').map(str::to_string).collect();
        let bad_token = tokens.iter().enumerate().any(|(i, t)| {
            t.is_empty()
                || (t == ">" && i + 1 != tokens.len())
                || (t.len() > 1 && (t.contains('*') || t.contains('>')))
                || t.chars().any(char::is_whitespace)
        });
        if bad_token || tokens.len() > 2 {
            return Err(invalid("is not md.tick.<EXCHANGE>.<SYMBOL> with * or >"));
        }
        Ok(Self { tokens })
    }

    /// Whether the tick subject tokens `[exchange, symbol]` (escaped) match.
    pub fn matches(&self, subject_tokens: &[&str]) -> bool {
        for (i, want) in self.tokens.iter().enumerate() {
            match want.as_str() {
                ">" => return subject_tokens.len() > i,
                "*" if i < subject_tokens.len() => {}
                literal if subject_tokens.get(i) == Some(&literal) => {}
                _ => return false,
            }
        }
        subject_tokens.len() == self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<TickFilter, ErrorCode> {
        TickFilter::parse(s).map_err(|e| e.code)
    }

    #[test]
    fn filters_follow_nats_wildcards() {
        let all = parse("md.tick.>").expect("all");
        assert!(all.matches(&["NSE", "SBIN-EQ"]));
        let nse = parse("md.tick.NSE.*").expect("nse");
        assert!(nse.matches(&["NSE", "SBIN-EQ"]));
        assert!(!nse.matches(&["BSE", "SBIN-EQ"]));
        let one = parse("md.tick.*.SBIN-EQ").expect("one");
        assert!(one.matches(&["BSE", "SBIN-EQ"]));
        assert!(!one.matches(&["BSE", "TCS-EQ"]));
        assert!(parse("md.tick.NSE.>").expect("rest").matches(&["NSE", "X"]));
        assert!(!parse("md.tick.NSE").expect("short").matches(&["NSE", "X"]));
        for bad in [
            "md.depth.>",
            "md.tick.",
            "md.tick.>.NSE",
            "md.tick.N*E.X",
            "md.tick.NSE.X.Y",
            "md.tick.NSE. X",
            "md.tick..X",
        ] {
            assert_eq!(parse(bad), Err(ErrorCode::InvalidRequest), "{bad}");
        }
        assert_eq!(
            parse(&format!("md.tick.{}", "A".repeat(300))),
            Err(ErrorCode::InvalidRequest)
        );
    }
}
