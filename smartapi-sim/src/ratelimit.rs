//! SPEC §6 rate limits, per client code, with sliding one-second/minute/hour windows, and
//! the simulator's own count of what it admitted and refused (for tests that must show
//! Pinnacle never hit a limit).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

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

/// What the limiter did for one (client code, bucket) since the simulator started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateStat {
    pub client_code: String,
    /// The bucket: `orders` for place/modify/cancel, else the route name.
    pub bucket: String,
    /// Requests that fit every window.
    pub admitted: u64,
    /// Requests answered with the plain-text 403.
    pub refused: u64,
    /// Milliseconds from the simulator's start to the first and the last admitted request.
    pub first_admitted_ms: u64,
    pub last_admitted_ms: u64,
}

/// Timestamps of accepted requests per (client, bucket), and the counts.
#[derive(Debug)]
pub struct RateLimiter {
    seen: HashMap<(String, &'static str), VecDeque<Instant>>,
    stats: HashMap<(String, &'static str), RateStat>,
    started: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            seen: HashMap::new(),
            stats: HashMap::new(),
            started: Instant::now(),
        }
    }
}

impl RateLimiter {
    /// Counts the request if it fits every window; false means "answer 403".
    pub fn admit(&mut self, client: &str, route: &str) -> bool {
        let (name, (per_s, per_m, per_h)) = bucket(route);
        let now = Instant::now();
        let at = u64::try_from(now.duration_since(self.started).as_millis()).unwrap_or(u64::MAX);
        let stat = self
            .stats
            .entry((client.to_owned(), name))
            .or_insert_with(|| RateStat {
                client_code: client.to_owned(),
                bucket: name.to_owned(),
                admitted: 0,
                refused: 0,
                first_admitted_ms: 0,
                last_admitted_ms: 0,
            });
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
            stat.refused += 1;
            return false;
        }
        if stat.admitted == 0 {
            stat.first_admitted_ms = at;
        }
        stat.admitted += 1;
        stat.last_admitted_ms = at;
        q.push_back(now);
        true
    }

    /// Every (client code, bucket) seen, sorted.
    pub fn stats(&self) -> Vec<RateStat> {
        let mut stats: Vec<RateStat> = self.stats.values().cloned().collect();
        stats.sort_by(|a, b| (&a.client_code, &a.bucket).cmp(&(&b.client_code, &b.bucket)));
        stats
    }
}
