//! Abuse limits: fixed-window counters per user and per source address.
//!
//! Logins count every attempt against the user name and the source address; bearer-token
//! checks count failures against the source address and the presented token id. Over the
//! limit, a route answers 429 `RATE_LIMITED` with a `Retry-After` header and a JSON body,
//! before any password hash or token check is spent. Counters live in memory, per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use pinnacle_common::error::ErrorCode;

use crate::error::ApiError;

/// How many keys a limiter tracks before it forgets expired windows.
const SWEEP_AT: usize = 10_000;

/// One fixed-window counter table.
#[derive(Debug)]
pub struct Limiter {
    /// Attempts allowed per window.
    max: u32,
    /// The window length.
    window: Duration,
    /// Window start and count, by key.
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    /// A limiter of `max` attempts per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `key` may try again, if it is over the limit (does not count).
    pub fn blocked(&self, key: &str) -> Option<u64> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (start, n) = counts.get(key)?;
        let elapsed = start.elapsed();
        (elapsed < self.window && *n >= self.max).then(|| (self.window - elapsed).as_secs().max(1))
    }

    /// Counts one attempt for `key`; returns the wait if this attempt is over the limit.
    pub fn hit(&self, key: &str) -> Option<u64> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if counts.len() >= SWEEP_AT {
            let window = self.window;
            counts.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = counts.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        (entry.1 > self.max).then(|| (self.window - now.duration_since(entry.0)).as_secs().max(1))
    }
}

/// The limiters the API shares.
#[derive(Debug)]
pub struct Limits {
    /// Login attempts per user name.
    pub login_per_user: Limiter,
    /// Login attempts per source address.
    pub login_per_source: Limiter,
    /// Failed bearer-token checks per source address.
    pub auth_failures_per_source: Limiter,
    /// Failed bearer-token checks per presented token id.
    pub auth_failures_per_token: Limiter,
}

impl Default for Limits {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        Self {
            login_per_user: Limiter::new(10, minute),
            login_per_source: Limiter::new(30, minute),
            auth_failures_per_source: Limiter::new(30, minute),
            auth_failures_per_token: Limiter::new(10, minute),
        }
    }
}

/// A 429 with `Retry-After` and the usual JSON error body.
#[derive(Debug)]
pub struct TooMany {
    /// Seconds to wait.
    pub retry_after: u64,
}

impl From<TooMany> for ApiError {
    fn from(t: TooMany) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("too many attempts; retry in {} s", t.retry_after),
        )
        .with_retry_after(t.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_within_the_window() {
        let l = Limiter::new(2, Duration::from_secs(60));
        assert_eq!(l.hit("a"), None);
        assert_eq!(l.hit("a"), None);
        assert!(l.hit("a").is_some());
        assert!(l.blocked("a").is_some());
        assert_eq!(l.hit("b"), None);
        assert_eq!(l.blocked("b"), None);
        let l = Limiter::new(1, Duration::ZERO);
        assert_eq!(l.hit("a"), None);
        assert_eq!(l.hit("a"), None, "a new window every time");
    }
}

/// The caller's source address (or `unknown` when the server has no connect info).
#[derive(Debug, Clone)]
pub struct Source(pub String);

impl Source {
    /// Reads the connect info the server attached to the request.
    pub fn of(parts: &axum::http::request::Parts) -> Self {
        Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or_else(|| "unknown".into(), |c| c.0.ip().to_string()),
        )
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}
