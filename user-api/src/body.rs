//! Request bodies: one JSON object, read and checked the same way on every route.
//!
//! `Content-Type` must be JSON (415 otherwise), the body fits `MAX_BODY_BYTES` (413), it
//! parses as JSON (400) and is an **object** (422): serde would otherwise read a struct
//! from an array too (`["paper"]` as `{"broker": "paper"}`), which the OpenAPI document
//! does not allow. Field errors (wrong type, unknown or missing field) are 422.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use pinnacle_common::error::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::{require_json, ApiError};

/// A JSON object body deserialized into `T`.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonObject<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_json(request.headers())?;
        let bytes = Bytes::from_request(request, state).await?;
        parse_object(&bytes).map(Self)
    }
}

/// An optional JSON integer field, as JSON Schema defines an integer: any number with no
/// fractional part, so `2101.0` and `2.101e3` are `2101` (serde alone would refuse them).
/// Use with `#[serde(default, deserialize_with = "crate::body::json_integer")]`.
pub fn json_integer<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize as _;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    integral(&number).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected an integer that fits in 64 bits, got {number}"
        ))
    })
}

/// The value of a JSON number with no fractional part, if it fits in an `i64`.
fn integral(number: &serde_json::Number) -> Option<i64> {
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    let x = number.as_f64()?;
    // i64::MAX as f64 rounds up to 2^63, which does not fit.
    let fits = x.is_finite() && x.fract() == 0.0 && x >= -(2f64.powi(63)) && x < 2f64.powi(63);
    #[allow(clippy::cast_possible_truncation)]
    fits.then_some(x as i64)
}

/// Parses `bytes` as one JSON object into `T`.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadPayload,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let unprocessable = |message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BadPayload,
            message,
        )
    };
    if !value.is_object() {
        return Err(unprocessable("the body must be a JSON object".into()));
    }
    T::deserialize(value).map_err(|e| unprocessable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        name: String,
        #[serde(default)]
        note: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Lifetime {
        #[serde(default, deserialize_with = "json_integer")]
        secs: Option<i64>,
    }

    #[test]
    fn integers_are_json_schema_integers() {
        let secs = |body: &str| parse_object::<Lifetime>(body.as_bytes()).map(|l| l.secs);
        for (body, want) in [
            (r#"{"secs": 2101}"#, Some(2101)),
            (r#"{"secs": 2101.0}"#, Some(2101)),
            (r#"{"secs": 2.101e3}"#, Some(2101)),
            (r#"{"secs": -60.0}"#, Some(-60)),
            (r#"{"secs": null}"#, None),
            (r#"{}"#, None),
        ] {
            assert_eq!(secs(body).expect(body), want, "{body}");
        }
        for body in [
            r#"{"secs": 2101.5}"#,
            r#"{"secs": 1e300}"#,
            r#"{"secs": 9223372036854775808}"#,
            r#"{"secs": "60"}"#,
            r#"{"secs": true}"#,
        ] {
            assert_eq!(secs(body).expect_err(body).status.as_u16(), 422, "{body}");
        }
    }

    #[test]
    fn only_an_object_with_the_right_fields_passes() {
        assert!(parse_object::<Probe>(br#"{"name": "a", "note": null}"#).is_ok());
        for (body, status) in [
            (&br#"["a"]"#[..], 422),
            (br#""a""#, 422),
            (b"null", 422),
            (br#"{"name": 1}"#, 422),
            (br#"{"name": "a", "extra": 1}"#, 422),
            (br#"{}"#, 422),
            (b"{\"name\":", 400),
            (b"", 400),
        ] {
            let error = parse_object::<Probe>(body).expect_err("refused");
            assert_eq!(
                error.status.as_u16(),
                status,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
