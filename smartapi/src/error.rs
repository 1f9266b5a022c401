//! One error type for every SmartAPI call, classified so that callers can decide what to
//! do: renew the session, wait, look the order up, or give up.
//!
//! Messages never carry a credential: requests put secrets only in headers and bodies, and
//! neither is ever copied into an error.

use std::time::Duration;

/// What kind of failure a [`SmartApiError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmartApiErrorKind {
    /// The broker refused the request (`status: false` with an `AB…` code).
    Api,
    /// The session token is invalid or expired (AG8001–AG8003, AB8050/AB8051, AB1010,
    /// AB1011): renew the session and retry.
    Session,
    /// The login itself was refused: wrong client code, PIN, TOTP or API key.
    Login,
    /// The broker's rate limit (HTTP 403 plain text), or Pinnacle's own limiter would have
    /// had to wait too long.
    RateLimited,
    /// No reply within the timeout. For an order request the outcome is unknown.
    Timeout,
    /// An empty body where a reply was due. For an order request the outcome is unknown.
    EmptyReply,
    /// The connection failed. For an order request that may have been sent, the outcome is
    /// unknown.
    Transport,
    /// The reply could not be read.
    Decode,
    /// Pinnacle refused to send the request (bad parameters, missing configuration).
    Invalid,
}

/// A SmartAPI call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SmartApiError {
    kind: SmartApiErrorKind,
    /// The broker's error code, e.g. `AB1013`, when it sent one.
    code: Option<String>,
    message: String,
    /// Set when Pinnacle's own limiter refused the request (it was never sent): how long
    /// until the window opens. `None` for the broker's own 403.
    retry_after: Option<Duration>,
}

impl SmartApiError {
    /// A new error of `kind`.
    pub fn new(kind: SmartApiErrorKind, code: Option<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Pinnacle's limiter refused to send the request: its window opens in `retry_after`.
    pub fn limited(message: impl Into<String>, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(SmartApiErrorKind::RateLimited, None, message)
        }
    }

    /// For a refusal by Pinnacle's own limiter, how long until the window opens; `None`
    /// for every other error (including the broker's 403, whose wait is unknown).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// An error the broker sent with `code`, classified by the code.
    pub fn from_code(code: &str, message: &str) -> Self {
        let kind = classify(code);
        let message = if message.is_empty() {
            format!("SmartAPI error {code}")
        } else {
            format!("SmartAPI error {code}: {message}")
        };
        Self::new(kind, Some(code.to_string()), message)
    }

    /// The plain-text 403.
    pub fn rate_limited(route: &str) -> Self {
        Self::new(
            SmartApiErrorKind::RateLimited,
            None,
            format!("SmartAPI rate limit exceeded on {route}"),
        )
    }

    /// No reply in time.
    pub fn timeout(route: &str, after: Duration) -> Self {
        Self::new(
            SmartApiErrorKind::Timeout,
            None,
            format!(
                "SmartAPI did not answer {route} within {} ms",
                after.as_millis()
            ),
        )
    }

    /// Pinnacle refused to send the request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(SmartApiErrorKind::Invalid, None, message)
    }

    /// The kind in lower case (the `error.type` of a span when the broker sent no code).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            SmartApiErrorKind::Api => "api",
            SmartApiErrorKind::Session => "session",
            SmartApiErrorKind::Login => "login",
            SmartApiErrorKind::RateLimited => "rate_limited",
            SmartApiErrorKind::Timeout => "timeout",
            SmartApiErrorKind::EmptyReply => "empty_reply",
            SmartApiErrorKind::Transport => "transport",
            SmartApiErrorKind::Decode => "decode",
            SmartApiErrorKind::Invalid => "invalid",
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> SmartApiErrorKind {
        self.kind
    }

    /// The broker's code, if it sent one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether a request that changes state may or may not have taken effect: the caller
    /// must look the order up (by its tag) rather than send it again.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self.kind,
            SmartApiErrorKind::Timeout
                | SmartApiErrorKind::EmptyReply
                | SmartApiErrorKind::Transport
        )
    }
}

/// Session codes mean "log in again"; login codes mean "the credentials are wrong".
fn classify(code: &str) -> SmartApiErrorKind {
    match code {
        "AG8001" | "AG8002" | "AG8003" | "AB8050" | "AB8051" | "AB1010" | "AB1011" => {
            SmartApiErrorKind::Session
        }
        "AG8004" | "AB1000" | "AB1001" | "AB1007" | "AB1032" | "AB1050" => SmartApiErrorKind::Login,
        "AB1019" | "AB1021" => SmartApiErrorKind::RateLimited,
        _ => SmartApiErrorKind::Api,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        assert_eq!(
            SmartApiError::from_code("AG8001", "Invalid Token").kind(),
            SmartApiErrorKind::Session
        );
        assert_eq!(
            SmartApiError::from_code("AB1050", "Invalid totp").kind(),
            SmartApiErrorKind::Login
        );
        assert_eq!(
            SmartApiError::from_code("AB1019", "Too many requests").kind(),
            SmartApiErrorKind::RateLimited
        );
        let api = SmartApiError::from_code("AB1013", "Order not found");
        assert_eq!(api.kind(), SmartApiErrorKind::Api);
        assert_eq!(api.code(), Some("AB1013"));
        assert_eq!(api.to_string(), "SmartAPI error AB1013: Order not found");
        assert!(!api.outcome_unknown());
        assert!(SmartApiError::timeout("placeOrder", Duration::from_secs(7)).outcome_unknown());
    }
}
