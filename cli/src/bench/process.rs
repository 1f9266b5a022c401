//! What this process costs: CPU time from `getrusage(RUSAGE_SELF)` (every thread, including
//! ones that have exited) and resident memory from `/proc/self/status`, with the peak
//! (`VmHWM`) reset between measurements through `/proc/self/clear_refs`.
//!
//! The benchmarks run the whole stack in their own process, so these are the totals of the
//! stack and the benchmark's clients together; nats-server is a separate process and is
//! not included.

use std::time::Duration;

/// User plus system CPU time this process has used so far (zero where unavailable).
pub fn cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|usage| {
            let micros = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0).unsigned_abs())
                    + Duration::from_micros(t.tv_usec().max(0).unsigned_abs())
            };
            micros(usage.user_time()) + micros(usage.system_time())
        })
        .unwrap_or_default()
}

/// A `Vm*:` line of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Resident memory of this process in KiB (`VmRSS`; 0 where unavailable).
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:").unwrap_or(0)
}

/// Peak resident memory in KiB (`VmHWM`) since the process started or since the last
/// successful [`reset_peak_rss`].
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// Resets `VmHWM` to the current resident size (Linux 4.0+); false where that is refused,
/// in which case the peak is the peak since the process started.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_moves_forward() {
        let before = cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time() > before);
    }

    #[test]
    fn peak_is_at_least_current() {
        if let Some(peak) = peak_rss_kib() {
            assert!(peak > 0 && rss_kib() > 0);
        }
    }
}
