//! The API's error type: an HTTP status plus a JSON body `{"error": {code, message}}`.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use serde::Serialize;

/// An error a route returns.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code and message.
    pub body: ErrorBody,
    /// Seconds for a `Retry-After` header (429 only).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a ErrorBody,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::new(code, message),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400 `INVALID_REQUEST`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "you may not act on this resource",
        )
    }

    /// 500 `INTERNAL`; the detail is logged, not returned.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, context, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("internal error while {context}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(Envelope { error: &self.body })).into_response();
        // For the server span's `error.type` (crate::trace).
        response.extensions_mut().insert(self.body.code);
        if let Some(secs) = self.retry_after {
            if let Ok(value) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(status, ErrorCode::PayloadTooLarge, rejection.body_text())
        } else {
            Self::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadPayload,
                rejection.body_text(),
            )
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            rejection.body_text(),
        )
    }
}

/// The pattern of a user name or account label, as the OpenAPI document states it.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_.-]{1,64}$";

/// Validates a user name or account label: 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub fn check_name(what: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'"
        )))
    }
}

/// The pattern of a user id in a path, as the OpenAPI document states it.
pub const USER_ID_PATTERN: &str = "^[A-Za-z0-9-]{1,64}$";

/// Validates a user id in a path: 1 to 64 of `A-Z a-z 0-9 -` (ids are UUIDs).
pub fn check_user_id(value: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "user_id must be 1 to 64 characters of A-Z, a-z, 0-9, '-'",
        ))
    }
}

/// The pattern of a token id, as the OpenAPI document states it.
pub const TOKEN_ID_PATTERN: &str = "^[0-9a-f]{16}$";

/// Validates a token id in a path: 16 lower-case hex digits.
pub fn check_token_id(value: &str) -> Result<(), ApiError> {
    let ok = value.len() == 16
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "token_id must be 16 lower-case hex digits",
        ))
    }
}

/// A string's length as JSON Schema's `minLength`/`maxLength` count it (and as every limit
/// in this API is stated): in characters (Unicode scalar values), not bytes.
pub fn char_len(value: &str) -> usize {
    value.chars().count()
}

/// Refuses a request body that is not JSON by its `Content-Type` (`application/json`, or
/// `application/<x>+json`, parameters allowed): 415, as axum's `Json` extractor answers.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let is_json = essence.as_deref().is_some_and(|t| {
        t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
    });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadPayload,
            "Expected request with `Content-Type: application/json`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_lengths() {
        assert!(check_user_id("3f1cb2e0-9d4a-4c1e-8f00-abcdefabcdef").is_ok());
        for bad in ["", "a b", "a_b", "\u{e9}", "a".repeat(65).as_str()] {
            assert!(check_user_id(bad).is_err(), "{bad}");
        }
        assert!(check_token_id("0123456789abcdef").is_ok());
        for bad in ["0123456789ABCDEF", "0123456789abcde", "0123456789abcdefa"] {
            assert!(check_token_id(bad).is_err(), "{bad}");
        }
        assert_eq!(char_len("\u{e9}t\u{e9}"), 3);
    }
}
