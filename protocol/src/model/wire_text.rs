//! Enums stored and sent as text (`BUY`, `STOPLOSS_LIMIT`, `PARTIALLY_FILLED`, …): one
//! `as_str` and one `FromStr` per enum, spelled exactly as serde spells it, so a stored
//! value is parsed with an error on an unknown one and never goes through a JSON value.

/// A stored or sent enum text that names no variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    /// What was being parsed, e.g. `side`.
    pub kind: &'static str,
    /// The text found (at most 40 characters of it).
    pub value: String,
}

impl UnknownValue {
    /// An unknown `kind` spelled `value`; long text is cut, it may be hostile.
    pub fn new(kind: &'static str, value: &str) -> Self {
        Self {
            kind,
            value: value.chars().take(40).collect(),
        }
    }
}

/// Implements `FromStr` (exact, case-sensitive) from a type's `ALL` and `as_str`.
macro_rules! from_wire_text {
    ($ty:ty, $kind:literal) => {
        impl std::str::FromStr for $ty {
            type Err = $crate::model::wire_text::UnknownValue;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| $crate::model::wire_text::UnknownValue::new($kind, text))
            }
        }
    };
}
pub(crate) use from_wire_text;

#[cfg(test)]
mod tests {
    use crate::error::ErrorCode;
    use crate::model::{OrderStatus, OrderType, Product, Side};

    /// Every variant's text is its serde spelling, and parses back to it.
    fn round_trips<T>(all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + std::fmt::Debug + serde::Serialize + std::str::FromStr,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        for &v in all {
            let text = as_str(v);
            assert_eq!(serde_json::to_value(v).expect("serializes"), text, "{v:?}");
            assert_eq!(text.parse::<T>().expect("parses"), v);
        }
        let texts: std::collections::HashSet<_> = all.iter().map(|&v| as_str(v)).collect();
        assert_eq!(texts.len(), all.len(), "two variants share a spelling");
    }

    #[test]
    fn every_variant_round_trips_with_its_serde_spelling() {
        round_trips(&Side::ALL, Side::as_str);
        round_trips(&Product::ALL, Product::as_str);
        round_trips(&OrderType::ALL, OrderType::as_str);
        round_trips(&OrderStatus::ALL, OrderStatus::as_str);
        round_trips(&ErrorCode::ALL, ErrorCode::as_str);
    }

    #[test]
    fn unknown_text_is_an_error_never_a_default() {
        for bad in ["", "buy", "BUY ", "LIMIT\0", "SELL_SHORT"] {
            let error = bad.parse::<Side>().expect_err(bad);
            assert_eq!(error.kind, "side");
        }
        assert!("limit".parse::<OrderType>().is_err());
        assert!("CNC".parse::<Product>().is_err());
        assert!("DONE".parse::<OrderStatus>().is_err());
        assert!("NOPE".parse::<ErrorCode>().is_err());
        let long = "X".repeat(10_000);
        assert_eq!(long.parse::<Side>().expect_err("long").value.len(), 40);
    }

    #[test]
    fn all_lists_every_variant() {
        // An exhaustive match: adding a variant without listing it in ALL fails to compile
        // here (no wildcard arm) and then fails this count.
        let count = |s: Side| match s {
            Side::Buy | Side::Sell => 2,
        };
        assert_eq!(Side::ALL.len(), count(Side::Buy));
        let count = |t: OrderType| match t {
            OrderType::Market
            | OrderType::Limit
            | OrderType::StoplossLimit
            | OrderType::StoplossMarket => 4,
        };
        assert_eq!(OrderType::ALL.len(), count(OrderType::Limit));
        let count = |p: Product| match p {
            Product::Delivery | Product::Intraday | Product::Carryforward | Product::Margin => 4,
        };
        assert_eq!(Product::ALL.len(), count(Product::Delivery));
    }
}
