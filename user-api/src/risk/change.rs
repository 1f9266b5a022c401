//! What a risk-limits change is: the [`Scope`] it applies to, one [`Change`] per limit
//! (absent keeps, `null` lifts, a value sets), the [`LimitsChange`] body with its audit
//! fields and purpose, and the bounds every value is checked against.

use pinnacle_common::entities::risk_limits;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most orders per second a row may allow.
pub const MAX_RATE: i32 = 100_000;
/// The largest quantity limit a row may set.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// The largest order-value limit a row may set, paise (₹10 lakh crore).
pub const MAX_VALUE_PAISE: i64 = 1_000_000_000_000_000;
/// The most entries in an allow-list.
pub const MAX_LIST: usize = 500;
/// An allow-list entry: an exchange (`NSE`) or `EXCHANGE:SYMBOL` (`NSE:M&M-EQ`).
pub const LIST_ENTRY_PATTERN: &str = "^[A-Z0-9&._:-]{1,64}$";

/// Which row a change applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The platform-wide row.
    Global,
    /// One user's row.
    User(String),
}

impl Scope {
    /// The row's key, and the user whose audit chain records its changes.
    pub fn key(&self) -> &str {
        match self {
            Scope::Global => risk_limits::GLOBAL,
            Scope::User(id) => id,
        }
    }
}

/// A new value for one limit: absent keeps it, `null` lifts it, a value sets it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Change<T> {
    /// Not given: keep what is stored.
    #[default]
    Keep,
    /// `null`: no limit from this row.
    Lift,
    /// A value.
    Set(T),
}

impl<T> Change<T> {
    /// Whether the field was left out.
    pub fn is_keep(&self) -> bool {
        matches!(self, Change::Keep)
    }

    /// The new value, when the change sets one.
    pub fn as_set(&self) -> Option<&T> {
        match self {
            Change::Set(value) => Some(value),
            _ => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Change<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => Change::Lift,
            Some(value) => Change::Set(value),
        })
    }
}

impl<T: Serialize> Serialize for Change<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Change::Keep | Change::Lift => serializer.serialize_none(),
            Change::Set(value) => value.serialize(serializer),
        }
    }
}

/// The body of a `PUT`: only the fields to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsChange {
    /// Largest quantity per order.
    #[serde(
        default,
        skip_serializing_if = "Change::is_keep",
        deserialize_with = "integer_change"
    )]
    pub max_quantity: Change<i64>,
    /// Largest order value (price × quantity), paise.
    #[serde(
        default,
        skip_serializing_if = "Change::is_keep",
        deserialize_with = "integer_change"
    )]
    pub max_order_value_paise: Change<i64>,
    /// Exchanges allowed.
    #[serde(default, skip_serializing_if = "Change::is_keep")]
    pub allowed_exchanges: Change<Vec<String>>,
    /// `EXCHANGE:SYMBOL`s allowed.
    #[serde(default, skip_serializing_if = "Change::is_keep")]
    pub allowed_symbols: Change<Vec<String>>,
    /// Orders (place, modify and cancel together) per second per user.
    #[serde(
        default,
        skip_serializing_if = "Change::is_keep",
        deserialize_with = "integer_change"
    )]
    pub max_orders_per_second: Change<i64>,
    /// The kill switch: `true` refuses every new order in the scope (`null` is refused:
    /// a switch has no "lifted" state).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_bool"
    )]
    pub kill_switch: Option<bool>,
}

/// An integer [`Change`], as JSON Schema reads an integer (`5.0` is `5`).
fn integer_change<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Change<i64>, D::Error> {
    Ok(match crate::body::json_integer(deserializer)? {
        None => Change::Lift,
        Some(value) => Change::Set(value),
    })
}

/// A boolean that, when present, must be `true` or `false`.
fn present_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    bool::deserialize(deserializer).map(Some)
}

impl LimitsChange {
    /// The names of the fields this change touches, for the audit event.
    pub fn fields(&self) -> Vec<String> {
        [
            ("max_quantity", self.max_quantity.is_keep()),
            (
                "max_order_value_paise",
                self.max_order_value_paise.is_keep(),
            ),
            ("allowed_exchanges", self.allowed_exchanges.is_keep()),
            ("allowed_symbols", self.allowed_symbols.is_keep()),
            (
                "max_orders_per_second",
                self.max_orders_per_second.is_keep(),
            ),
            ("kill_switch", self.kill_switch.is_none()),
        ]
        .into_iter()
        .filter(|(_, keep)| !keep)
        .map(|(name, _)| name.to_string())
        .collect()
    }

    /// The audit purpose: `kill_switch.on|off` for a change of the kill switch alone, else
    /// `risk.set`.
    pub fn purpose(&self) -> &'static str {
        match (self.kill_switch, self.fields().len()) {
            (Some(true), 1) => "kill_switch.on",
            (Some(false), 1) => "kill_switch.off",
            _ => "risk.set",
        }
    }

    /// Checks every value; the first bad one is the error.
    pub fn validate(&self) -> Result<(), String> {
        if self.fields().is_empty() {
            return Err("the body changes nothing: give at least one field".into());
        }
        for (name, value, max) in [
            ("max_quantity", self.max_quantity.as_set(), MAX_QUANTITY),
            (
                "max_order_value_paise",
                self.max_order_value_paise.as_set(),
                MAX_VALUE_PAISE,
            ),
        ] {
            if value.is_some_and(|v| !(1..=max).contains(v)) {
                return Err(format!("{name} must be 1 to {max} (or null to lift it)"));
            }
        }
        if let Some(rate) = self.max_orders_per_second.as_set() {
            if !(1..=i64::from(MAX_RATE)).contains(rate) {
                return Err(format!(
                    "max_orders_per_second must be 1 to {MAX_RATE} (or null for the default)"
                ));
            }
        }
        for (name, list) in [
            ("allowed_exchanges", self.allowed_exchanges.as_set()),
            ("allowed_symbols", self.allowed_symbols.as_set()),
        ] {
            if let Some(list) = list {
                check_list(name, list)?;
            }
        }
        Ok(())
    }
}

fn check_list(name: &str, list: &[String]) -> Result<(), String> {
    if list.is_empty() || list.len() > MAX_LIST {
        return Err(format!(
            "{name} must list 1 to {MAX_LIST} entries (null allows any; the kill switch \
             allows none)"
        ));
    }
    let entry_ok = |entry: &str| {
        (1..=64).contains(&entry.len())
            && entry
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"&._:-".contains(&b))
    };
    match list.iter().find(|entry| !entry_ok(entry)) {
        Some(bad) => Err(format!(
            "{name}: {bad:?} is not an upper-case exchange or EXCHANGE:SYMBOL"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<LimitsChange, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn absent_keeps_null_lifts_value_sets() {
        let change = parse(r#"{"max_quantity": 10, "max_order_value_paise": null}"#).expect("ok");
        assert_eq!(change.max_quantity, Change::Set(10));
        assert_eq!(change.max_order_value_paise, Change::Lift);
        assert_eq!(change.allowed_exchanges, Change::Keep);
        assert_eq!(change.fields(), ["max_quantity", "max_order_value_paise"]);
        assert_eq!(change.purpose(), "risk.set");
        assert_eq!(
            serde_json::to_string(&change).expect("ok"),
            r#"{"max_quantity":10,"max_order_value_paise":null}"#
        );
    }

    #[test]
    fn the_kill_switch_alone_has_its_own_purpose() {
        assert_eq!(
            parse(r#"{"kill_switch": true}"#).expect("ok").purpose(),
            "kill_switch.on"
        );
        assert_eq!(
            parse(r#"{"kill_switch": false}"#).expect("ok").purpose(),
            "kill_switch.off"
        );
        assert_eq!(
            parse(r#"{"kill_switch": true, "max_quantity": 1}"#)
                .expect("ok")
                .purpose(),
            "risk.set"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            r#"{}"#,
            r#"{"max_quantity": 0}"#,
            r#"{"max_quantity": 1000000001}"#,
            r#"{"max_order_value_paise": -5}"#,
            r#"{"max_orders_per_second": 0}"#,
            r#"{"max_orders_per_second": 100001}"#,
            r#"{"allowed_exchanges": []}"#,
            r#"{"allowed_exchanges": ["nse"]}"#,
            r#"{"allowed_symbols": ["NSE:SBIN EQ"]}"#,
            r#"{"allowed_symbols": ["NSE,BSE"]}"#,
        ] {
            assert!(parse(bad).expect("ok").validate().is_err(), "{bad}");
        }
        assert!(parse(r#"{"unknown": 1}"#).is_err());
        assert!(parse(r#"{"kill_switch": null}"#).is_err());
        assert_eq!(
            parse(r#"{"max_quantity": 5.0}"#).expect("ok").max_quantity,
            Change::Set(5)
        );
        assert!(
            parse(r#"{"allowed_symbols": ["NSE:M&M-EQ"], "max_orders_per_second": 20}"#)
                .expect("ok")
                .validate()
                .is_ok()
        );
    }
}
