//! Reading SmartAPI replies: both envelope forms, the plain-text 403, empty bodies, and
//! numbers that arrive as JSON numbers or as strings (SPEC §1.2).

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{SmartApiError, SmartApiErrorKind};

/// Unwraps a reply to `route`: the `data` of a success, or the classified failure.
///
/// - success is `status` **or** `success`, as a bool or the strings `"true"`/`"false"`;
/// - the code is `errorcode` **or** `errorCode`;
/// - HTTP 403 with a body that is not JSON is the rate limit;
/// - an empty body is [`SmartApiErrorKind::EmptyReply`], whatever the status.
pub fn unwrap(route: &str, http_status: u16, body: &[u8]) -> Result<Value, SmartApiError> {
    let mut object = parse_object(route, http_status, body)?;
    let ok = object
        .get("status")
        .or_else(|| object.get("success"))
        .and_then(truthy);
    let code = object
        .get("errorcode")
        .or_else(|| object.get("errorCode"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let message = object
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match ok {
        Some(true) if code.is_empty() => Ok(normalise_data(object.remove("data"))),
        Some(_) if !code.is_empty() => Err(SmartApiError::from_code(&code, &message)),
        Some(_) => Err(SmartApiError::new(
            SmartApiErrorKind::Api,
            None,
            format!(
                "SmartAPI refused {route}: {}",
                if message.is_empty() {
                    "no reason given"
                } else {
                    &message
                }
            ),
        )),
        None => Err(decode_error(
            route,
            "the reply has neither `status` nor `success`",
        )),
    }
}

/// The reply's top-level JSON object, after the empty, too-deep, not-JSON (a 403 there is
/// the rate limit) and not-an-object checks.
fn parse_object(
    route: &str,
    http_status: u16,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, SmartApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SmartApiError::new(
            SmartApiErrorKind::EmptyReply,
            None,
            format!("SmartAPI gave an empty reply to {route} (HTTP {http_status})"),
        ));
    }
    if !crate::bounds::body_ok(body) {
        return Err(decode_error(route, "the reply nests too deeply to parse"));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(_) if http_status == 403 => return Err(SmartApiError::rate_limited(route)),
        Err(_) => {
            return Err(SmartApiError::new(
                SmartApiErrorKind::Decode,
                None,
                format!(
                    "SmartAPI answered {route} with HTTP {http_status} and a body that is not JSON"
                ),
            ))
        }
    };
    let Value::Object(object) = value else {
        return Err(decode_error(route, "the reply is not a JSON object"));
    };
    Ok(object)
}

fn decode_error(route: &str, detail: &str) -> SmartApiError {
    SmartApiError::new(
        SmartApiErrorKind::Decode,
        None,
        format!("SmartAPI reply to {route} could not be read: {detail}"),
    )
}

/// `true`, `"true"`, `false`, `"false"`.
fn truthy(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// `"null"`, `""` and a missing `data` all mean nothing.
fn normalise_data(data: Option<Value>) -> Value {
    match data {
        Some(Value::String(s)) if s.is_empty() || s == "null" => Value::Null,
        Some(value) => value,
        None => Value::Null,
    }
}

/// Deserialises `data` into `T`, naming the route on failure.
pub fn data<T: serde::de::DeserializeOwned>(route: &str, data: Value) -> Result<T, SmartApiError> {
    serde_json::from_value(data).map_err(|e| decode_error(route, &e.to_string()))
}

/// Deserialisers for fields that are a number or a numeric string (SPEC §1.2).
pub mod lenient {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(i64),
        Float(f64),
        Text(String),
        Null(()),
    }

    fn parse<E: de::Error>(num: Num) -> Result<Option<f64>, E> {
        match num {
            Num::Int(i) => Ok(Some(i as f64)),
            Num::Float(f) => Ok(Some(f)),
            Num::Null(()) => Ok(None),
            Num::Text(s) => {
                let s = s.trim();
                if s.is_empty() || s == "null" {
                    return Ok(None);
                }
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Some)
                    .ok_or_else(|| E::custom(format!("{s:?} is not a number")))
            }
        }
    }

    /// A number, numeric string, `""` or null; missing values are `0.0`.
    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        parse(Num::deserialize(d)?).map(|v| v.unwrap_or_default())
    }

    /// As [`f64()`], but whole units: quantities, counts.
    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let value = parse::<D::Error>(Num::deserialize(d)?)?.unwrap_or_default();
        if value.fract() != 0.0 || value.abs() > 9.0e15 {
            return Err(de::Error::custom(format!("{value} is not a whole number")));
        }
        Ok(value as i64)
    }

    /// A rupee amount, as whole paise (rounded to the nearest paisa).
    pub fn paise<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let rupees = parse::<D::Error>(Num::deserialize(d)?)?.unwrap_or_default();
        rupees_to_paise(rupees)
            .ok_or_else(|| de::Error::custom(format!("{rupees} is out of range")))
    }

    /// A string or a number, as a string (`"3045"` or `3045`).
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Num::deserialize(d)? {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => f.to_string(),
            Num::Text(s) => s,
            Num::Null(()) => String::new(),
        })
    }
}

/// Rupees to paise, `None` when out of range.
pub fn rupees_to_paise(rupees: f64) -> Option<i64> {
    let paise = (rupees * 100.0).round();
    (paise.is_finite() && paise.abs() < 9.0e15).then_some(paise as i64)
}

/// Paise to the rupee string SmartAPI expects, e.g. `19450` → `"194.50"`.
pub fn paise_to_rupees(paise: i64) -> String {
    let sign = if paise < 0 { "-" } else { "" };
    let abs = paise.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_envelopes_are_read() {
        let ok = br#"{"status":true,"message":"SUCCESS","errorcode":"","data":{"a":1}}"#;
        assert_eq!(unwrap("r", 200, ok).expect("ok")["a"], 1);
        let business =
            br#"{"status":"false","message":"Order not found","errorcode":"AB1013","data":"null"}"#;
        let e = unwrap("r", 200, business).expect_err("business");
        assert_eq!(
            (e.kind(), e.code()),
            (SmartApiErrorKind::Api, Some("AB1013"))
        );
        let token =
            br#"{"success":false,"message":"Invalid Token","errorCode":"AG8001","data":""}"#;
        assert_eq!(
            unwrap("r", 200, token).expect_err("token").kind(),
            SmartApiErrorKind::Session
        );
        let string_true = br#"{"status":"true","message":"SUCCESS","errorcode":"","data":"null"}"#;
        assert_eq!(unwrap("r", 200, string_true).expect("ok"), Value::Null);
    }

    #[test]
    fn rate_limit_empty_and_garbage() {
        let e = unwrap(
            "placeOrder",
            403,
            b"Access denied because of exceeding access rate",
        )
        .expect_err("403");
        assert_eq!(e.kind(), SmartApiErrorKind::RateLimited);
        assert_eq!(
            unwrap("r", 400, b"").expect_err("empty").kind(),
            SmartApiErrorKind::EmptyReply
        );
        assert_eq!(
            unwrap("r", 200, b" \n").expect_err("blank").kind(),
            SmartApiErrorKind::EmptyReply
        );
        assert_eq!(
            unwrap("r", 502, b"<html>").expect_err("html").kind(),
            SmartApiErrorKind::Decode
        );
        assert_eq!(
            unwrap("r", 200, b"[1]").expect_err("array").kind(),
            SmartApiErrorKind::Decode
        );
        assert_eq!(
            unwrap("r", 200, b"{}").expect_err("no status").kind(),
            SmartApiErrorKind::Decode
        );
    }

    #[derive(Deserialize)]
    struct Row {
        #[serde(deserialize_with = "lenient::paise")]
        price: i64,
        #[serde(deserialize_with = "lenient::i64")]
        qty: i64,
        #[serde(deserialize_with = "lenient::string")]
        token: String,
    }

    #[test]
    fn numbers_are_lenient() {
        let row: Row =
            serde_json::from_str(r#"{"price":"194.50","qty":"1","token":3045}"#).expect("strings");
        assert_eq!((row.price, row.qty, row.token.as_str()), (19450, 1, "3045"));
        let row: Row =
            serde_json::from_str(r#"{"price":194.5,"qty":1,"token":"3045"}"#).expect("numbers");
        assert_eq!((row.price, row.qty), (19450, 1));
        let row: Row =
            serde_json::from_str(r#"{"price":"","qty":null,"token":""}"#).expect("empty");
        assert_eq!((row.price, row.qty), (0, 0));
        assert!(serde_json::from_str::<Row>(r#"{"price":"abc","qty":1,"token":""}"#).is_err());
        assert!(serde_json::from_str::<Row>(r#"{"price":1,"qty":1.5,"token":""}"#).is_err());
        assert_eq!(paise_to_rupees(19450), "194.50");
        assert_eq!(paise_to_rupees(5), "0.05");
        assert_eq!(paise_to_rupees(-105), "-1.05");
    }
}
