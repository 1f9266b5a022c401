//! Benchmarks: they measure and report, side by side with a raw-NATS baseline taken in the
//! same run; they assert nothing and never run under `cargo test`.
//!
//! - [`orders`]: `pinnacle bench orders`, order round trips beside a raw request-reply echo.
//! - [`ticks`]: `pinnacle bench ticks`, market-data throughput and latency beside raw
//!   publishing, and memory with thousands of symbols.

use std::time::Duration;

pub mod orders;
pub mod ticks;

/// The `p` quantile (0.0 to 1.0) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Resident memory of this process in KiB, from `/proc/self/status` (0 where unavailable).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
