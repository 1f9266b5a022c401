//! What this process costs: CPU time from `getrusage(RUSAGE_SELF)` (every thread, including
//! ones that have exited) or of one thread (`RUSAGE_THREAD`), and resident memory from `/proc/self/status`, with the peak
//! (`VmHWM`) reset between measurements through `/proc/self/clear_refs`.
//!
//! The benchmarks run the whole stack in their own process, so these are the totals of the
//! stack and the benchmark's clients together; nats-server and a PostgreSQL server are
//! separate processes, measured apart from `/proc/<pid>/stat` ([`Servers`]).

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

/// The server processes whose CPU time a row accounts besides this process's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Servers {
    /// nats-server's pid.
    pub nats: Option<u32>,
    /// Whether the database is PostgreSQL, whose server is every process named
    /// [`POSTGRES`] on this machine (none when it runs elsewhere).
    pub postgres: bool,
}

/// The command name of PostgreSQL's server processes.
pub const POSTGRES: &str = "postgres";

impl Servers {
    /// CPU time the servers have used so far.
    pub fn cpu_time(&self) -> ServerCpu {
        ServerCpu {
            nats: self.nats.and_then(cpu_time_of),
            database: self.postgres.then(|| cpu_time_of_named(POSTGRES)).flatten(),
        }
    }
}

/// CPU time of the [`Servers`], each where measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCpu {
    /// nats-server's.
    pub nats: Option<Duration>,
    /// The database server's.
    pub database: Option<Duration>,
}

impl ServerCpu {
    /// What was used from `before` to `self`; `None` where either is unmeasured.
    pub fn since(self, before: Self) -> Self {
        let spent = |after: Option<Duration>, before: Option<Duration>| {
            Some(after?.saturating_sub(before?))
        };
        Self {
            nats: spent(self.nats, before.nats),
            database: spent(self.database, before.database),
        }
    }
}

/// User plus system CPU time of every process called `name` (its `/proc/<pid>/comm`) so far;
/// `None` when there is none. A process that exits takes its time with it.
pub fn cpu_time_of_named(name: &str) -> Option<Duration> {
    let mut found = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            if let Some(cpu) = cpu_time_of(pid) {
                found = Some(found.unwrap_or_default() + cpu);
            }
        }
    }
    found
}

/// User plus system CPU time process `pid` has used so far (every thread), from fields 14
/// and 15 of `/proc/<pid>/stat`, in clock ticks (10 ms on most kernels, so measure over
/// seconds); `None` where unavailable.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = stat_cpu_ticks(&stat)?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)?;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so fields are counted from the
/// last `)`.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (the state) is the first after the name; utime is field 14, stime 15.
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
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
    fn another_process_cpu_is_read_from_its_stat_line() {
        let line = "4242 (nats-server (x) 1) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(stat_cpu_ticks(line), Some(1234 + 567));
        assert_eq!(stat_cpu_ticks("4242 (cut short) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no name at all"), None);
        assert!(cpu_time_of(std::process::id()).is_some());
        assert_eq!(cpu_time_of(u32::MAX), None);
    }

    #[test]
    fn server_cpu_is_spent_only_where_measured_twice() {
        let ms = Duration::from_millis;
        let before = ServerCpu {
            nats: Some(ms(10)),
            database: None,
        };
        let after = ServerCpu {
            nats: Some(ms(25)),
            database: Some(ms(7)),
        };
        assert_eq!(
            after.since(before),
            ServerCpu {
                nats: Some(ms(15)),
                database: None
            }
        );
    }

    #[test]
    fn processes_are_found_by_name() {
        let me = std::fs::read_to_string("/proc/self/comm").expect("comm");
        assert!(cpu_time_of_named(me.trim_end()).is_some_and(|cpu| cpu > Duration::ZERO));
        assert_eq!(cpu_time_of_named("no-such-process-name"), None);
    }

    #[test]
    fn peak_is_at_least_current() {
        if let Some(peak) = peak_rss_kib() {
            assert!(peak > 0 && rss_kib() > 0);
        }
    }
}
