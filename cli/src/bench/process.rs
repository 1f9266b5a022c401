//! What this process costs: CPU time from `getrusage(RUSAGE_SELF)` (every thread, including
//! ones that have exited) or of one thread (`RUSAGE_THREAD`), and resident memory from `/proc/self/status`, with the peak
//! (`VmHWM`) reset between measurements through `/proc/self/clear_refs`.
//!
//! The benchmarks run the whole stack in their own process, so these are the totals of the
//! stack and the benchmark's clients together; nats-server is a separate process and is
//! not included.

use std::time::Duration;

/// User plus system CPU time this process has used so far (zero where unavailable).
pub fn cpu_time() -> Duration {
    usage(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// User plus system CPU time the calling thread has used so far (zero where unavailable).
pub fn thread_cpu_time() -> Duration {
    usage(nix::sys::resource::UsageWho::RUSAGE_THREAD)
}

fn usage(who: nix::sys::resource::UsageWho) -> Duration {
    nix::sys::resource::getrusage(who)
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
    fn thread_cpu_time_counts_only_this_thread() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let spent = thread_cpu_time() - before;
        assert!(spent > Duration::ZERO);
        let other = std::thread::spawn(thread_cpu_time).join().expect("joins");
        assert!(other < spent + before, "a new thread starts from zero");
    }

    #[test]
    fn peak_is_at_least_current() {
        if let Some(peak) = peak_rss_kib() {
            assert!(peak > 0 && rss_kib() > 0);
        }
    }
}
