//! Benchmarks: they measure and report, side by side with raw-NATS baselines taken in the
//! same run. They assert no timing, but a benchmark whose requests fail exits non-zero,
//! and the end-to-end tests run each one at a small size so a broken one fails the build.
//!
//! - [`orders`]: `pinnacle bench orders`, order round trips beside a raw request-reply
//!   echo and a raw JetStream publish+ack, over many users ([`users`]).
//! - [`ticks`]: `pinnacle bench ticks`, market-data throughput and latency beside raw
//!   publishing, and memory with thousands of symbols.
//! - [`measure`]: one measured row (latency percentiles, throughput, CPU, peak memory,
//!   failures); [`report`]: the orders table and JSON; [`process`]: CPU time and memory of
//!   this process.

use std::time::Duration;

pub mod measure;
pub mod orders;
pub mod process;
pub mod report;
pub mod ticks;
pub mod users;

pub use process::rss_kib;

/// The `p` quantile (0.0 to 1.0) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
