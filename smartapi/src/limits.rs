//! SmartAPI's published rate limits (SPEC §6), enforced per client code before a request
//! leaves Pinnacle.
//!
//! A request that would breach a window waits for the window to open, up to
//! [`RateLimiter::max_wait`]; past that it is refused with
//! [`SmartApiErrorKind::RateLimited`](crate::SmartApiErrorKind::RateLimited), so a burst
//! is queued and a flood gets a clear answer instead of the broker's 403. One limiter is
//! shared by every account in a process, keyed by client code.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::SmartApiError;

/// Which limit a request counts against. Place, modify and cancel share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// loginByPassword.
    Login,
    /// generateTokens.
    Refresh,
    /// getProfile.
    Profile,
    /// logout.
    Logout,
    /// getRMS.
    Rms,
    /// placeOrder, modifyOrder and cancelOrder combined.
    Orders,
    /// getOrderBook.
    OrderBook,
    /// getTradeBook.
    TradeBook,
    /// getPosition.
    Positions,
    /// getHolding and getAllHolding (each has its own limit; one bucket is stricter).
    Holdings,
    /// searchScrip.
    SearchScrip,
    /// getLtpData.
    Ltp,
    /// details/{uniqueorderid}.
    OrderDetails,
    /// market/v1/quote.
    Quote,
    /// getCandleData and getOIData.
    Candles,
}

/// Requests allowed per second, per minute and per hour (`u32::MAX` = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Per second.
    pub per_second: u32,
    /// Per minute.
    pub per_minute: u32,
    /// Per hour.
    pub per_hour: u32,
}

const NONE: u32 = u32::MAX;

impl Bucket {
    /// The current documented limit (SPEC §6).
    pub fn limit(self) -> Limit {
        let (per_second, per_minute, per_hour) = match self {
            Self::Login | Self::Logout => (1, NONE, NONE),
            Self::Refresh => (1, NONE, 1000),
            Self::Profile => (3, NONE, 1000),
            Self::Rms => (2, NONE, NONE),
            Self::Orders => (9, 500, 1000),
            Self::OrderBook
            | Self::TradeBook
            | Self::Positions
            | Self::Holdings
            | Self::SearchScrip => (1, NONE, NONE),
            Self::Ltp | Self::OrderDetails | Self::Quote => (10, 500, 5000),
            Self::Candles => (3, 180, 5000),
        };
        Limit {
            per_second,
            per_minute,
            per_hour,
        }
    }
}

/// The per-client-code limiter.
#[derive(Debug)]
pub struct RateLimiter {
    /// Send times inside the last hour, per (client code, bucket).
    windows: Mutex<HashMap<(String, Bucket), VecDeque<Instant>>>,
    max_wait: Duration,
}

impl RateLimiter {
    /// A limiter that queues a request for up to `max_wait` before refusing it.
    pub fn new(max_wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            windows: Mutex::new(HashMap::new()),
            max_wait,
        })
    }

    /// How long a request may queue.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Waits until `client_code` may send a request in `bucket`, and counts it.
    pub async fn acquire(&self, client_code: &str, bucket: Bucket) -> Result<(), SmartApiError> {
        let deadline = Instant::now() + self.max_wait;
        loop {
            match self.try_acquire(client_code, bucket) {
                None => return Ok(()),
                Some(ready_at) if ready_at > deadline => {
                    return Err(SmartApiError::new(
                        crate::SmartApiErrorKind::RateLimited,
                        None,
                        format!(
                            "SmartAPI rate limit for {bucket:?}: {:?} would pass before the request could be sent",
                            self.max_wait
                        ),
                    ))
                }
                Some(ready_at) => tokio::time::sleep_until(ready_at).await,
            }
        }
    }

    /// Counts the request and returns `None`, or returns when a slot opens.
    fn try_acquire(&self, client_code: &str, bucket: Bucket) -> Option<Instant> {
        let limit = bucket.limit();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // Read the clock under the lock, so the log stays in order.
        let now = Instant::now();
        let sent = windows
            .entry((client_code.to_string(), bucket))
            .or_default();
        while sent.front().is_some_and(|t| now.duration_since(*t) >= HOUR) {
            sent.pop_front();
        }
        let mut ready_at: Option<Instant> = None;
        for (span, max) in [
            (SECOND, limit.per_second),
            (MINUTE, limit.per_minute),
            (HOUR, limit.per_hour),
        ] {
            if max == NONE {
                continue;
            }
            let in_span = sent
                .iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < span)
                .count();
            if in_span >= max as usize {
                // The oldest send inside the span must leave it first.
                let oldest = sent[sent.len() - in_span];
                let at = oldest + span;
                ready_at = Some(ready_at.map_or(at, |r| r.max(at)));
            }
        }
        if ready_at.is_none() {
            sent.push_back(now);
        }
        ready_at
    }
}

/// A second plus a margin: the broker counts arrivals, so two requests sent just over a
/// second apart can land inside one of its seconds after network jitter.
const SECOND: Duration = Duration::from_millis(1_050);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_orders_is_queued_to_nine_per_second() {
        let limiter = RateLimiter::new(Duration::from_secs(5));
        let start = Instant::now();
        for _ in 0..18 {
            limiter.acquire("C1", Bucket::Orders).await.expect("queued");
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        // Another client code has its own budget.
        let other = Instant::now();
        limiter
            .acquire("C2", Bucket::Orders)
            .await
            .expect("own budget");
        assert_eq!(other.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_refused_clearly() {
        let limiter = RateLimiter::new(Duration::from_millis(500));
        for _ in 0..3 {
            limiter
                .acquire("C1", Bucket::Candles)
                .await
                .expect("within limit");
        }
        let error = limiter
            .acquire("C1", Bucket::Candles)
            .await
            .expect_err("over limit");
        assert_eq!(error.kind(), crate::SmartApiErrorKind::RateLimited);
        assert!(error.to_string().contains("Candles"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_minute_window_holds_too() {
        let limiter = RateLimiter::new(Duration::from_secs(120));
        let start = Instant::now();
        for _ in 0..181 {
            limiter
                .acquire("C1", Bucket::Candles)
                .await
                .expect("queued");
        }
        // 180 per minute: the 181st waits for the first to leave the minute window.
        assert!(
            start.elapsed() >= Duration::from_secs(60),
            "{:?}",
            start.elapsed()
        );
    }
}
