//! SPEC §6 rate limits, per client code, with sliding one-second/minute/hour windows.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// (per second, per minute, per hour); `u32::MAX` means "no limit in that window".
type Limits = (u32, u32, u32);

const NONE: u32 = u32::MAX;

/// The bucket a REST route counts against and that bucket's limits. Place, modify and
/// cancel share one bucket ("orders"); every other route has its own.
pub fn bucket(route: &str) -> (&'static str, Limits) {
    match route {
        "loginByPassword" => ("loginByPassword", (1, NONE, NONE)),
        "generateTokens" => ("generateTokens", (1, NONE, 1000)),
        "getProfile" => ("getProfile", (3, NONE, 1000)),
        "logout" => ("logout", (1, NONE, NONE)),
        "getRMS" => ("getRMS", (2, NONE, NONE)),
        "placeOrder" | "modifyOrder" | "cancelOrder" => ("orders", (9, 500, 1000)),
        "getOrderBook" => ("getOrderBook", (1, NONE, NONE)),
        "getPosition" => ("getPosition", (1, NONE, NONE)),
        "getTradeBook" => ("getTradeBook", (1, NONE, NONE)),
        "searchScrip" => ("searchScrip", (1, NONE, NONE)),
        "getHolding" => ("getHolding", (1, NONE, NONE)),
        "getAllHolding" => ("getAllHolding", (1, NONE, NONE)),
        "getLtpData" => ("getLtpData", (10, 500, 5000)),
        "convertPosition" => ("convertPosition", (10, 500, 5000)),
        "details" => ("details", (10, 500, 5000)),
        "quote" => ("quote", (10, 500, 5000)),
        "getCandleData" => ("getCandleData", (3, 180, 5000)),
        // Not in the table: treated like getCandleData, its sibling.
        "getOIData" => ("getOIData", (3, 180, 5000)),
        _ => ("other", (10, 500, 5000)),
    }
}

/// Timestamps of accepted requests per (client, bucket).
#[derive(Debug, Default)]
pub struct RateLimiter {
    seen: HashMap<(String, &'static str), VecDeque<Instant>>,
}

impl RateLimiter {
    /// Counts the request if it fits every window; false means "answer 403".
    pub fn admit(&mut self, client: &str, route: &str) -> bool {
        let (name, (per_s, per_m, per_h)) = bucket(route);
        let now = Instant::now();
        let q = self.seen.entry((client.to_owned(), name)).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
        {
            q.pop_front();
        }
        let within = |d: Duration| {
            q.iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < d)
                .count()
        };
        let full = |limit: u32, d| limit != NONE && within(d) >= limit as usize;
        if full(per_s, Duration::from_secs(1))
            || full(per_m, Duration::from_secs(60))
            || full(per_h, Duration::from_secs(3600))
        {
            return false;
        }
        q.push_back(now);
        true
    }
}
