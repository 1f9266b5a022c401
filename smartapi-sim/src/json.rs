//! Lenient readers for request bodies: SmartAPI clients send numbers as strings or numbers.

use serde_json::Value;

/// A string field; numbers and booleans are accepted and printed.
pub fn text(body: &Value, key: &str) -> Option<String> {
    match body.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A numeric field given as a JSON number or a numeric string.
pub fn number(body: &Value, key: &str) -> Option<f64> {
    let n = match body.get(key)? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A rupee amount converted to paise (rounded to the nearest paisa).
pub fn money_paise(body: &Value, key: &str) -> Option<i64> {
    let n = number(body, key)?;
    (0.0..1e13).contains(&n).then(|| (n * 100.0).round() as i64)
}
