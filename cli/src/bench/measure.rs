//! One measured row: `total` requests spread over `clients` concurrent tasks, with latency
//! percentiles, throughput, the CPU time per request of this process, of nats-server and
//! of a PostgreSQL server, this process's peak resident memory, and every failure counted
//! (never hidden) with the first few reasons kept for the report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::process::{cpu_time, peak_rss_kib, reset_peak_rss, Servers};

/// How many distinct failure reasons a row keeps.
const KEPT_FAILURES: usize = 3;

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured (`raw NATS echo`, `raw JetStream publish+ack`, `order place (paper)`).
    pub name: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Users the requests were spread over (0 for the raw baselines, which have none).
    pub users: usize,
    /// Requests sent.
    pub requests: usize,
    /// Requests that failed (an error reply, a refused order, no reply).
    pub failed: usize,
    /// The first distinct failure reasons, as `CODE: message`.
    pub failures: Vec<String>,
    /// Median latency of the successful requests, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Successful requests per second of wall time.
    pub throughput: f64,
    /// The whole process's CPU time (user + system) during the row, divided by requests, µs.
    pub cpu_per_request_us: f64,
    /// nats-server's CPU time (user + system) during the row, divided by requests, µs;
    /// `None` when it was not measured.
    pub nats_server_cpu_per_request_us: Option<f64>,
    /// The database server's CPU time during the row, divided by requests, µs (PostgreSQL
    /// on this machine; `None` for SQLite, which runs in this process).
    pub database_server_cpu_per_request_us: Option<f64>,
    /// Messages stored in JetStream during the row (and until it settled), divided by
    /// requests; set by the caller for the rows that publish on their own behalf (an order:
    /// its audit event and its lifecycle events).
    pub jetstream_messages_per_request: Option<f64>,
    /// Peak resident memory of the whole process during the row, KiB (`VmHWM`).
    pub peak_rss_kib: Option<u64>,
    /// Whether the peak was reset before the row (otherwise it is the peak since start).
    pub peak_reset: bool,
    /// Wall time of the row, seconds.
    pub seconds: f64,
}

impl Measurement {
    /// Whether this row is one of the raw baselines.
    pub fn is_baseline(&self) -> bool {
        self.name.starts_with("raw")
    }
}

/// Runs `total` requests split over `clients` tasks; `send(i)` performs request `i` and
/// returns why it failed, if it did. The row accounts the CPU time of `servers` too.
pub async fn measure<F, Fut>(
    name: &str,
    servers: Servers,
    clients: usize,
    users: usize,
    total: usize,
    send: F,
) -> anyhow::Result<Measurement>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let clients = clients.max(1);
    let send = Arc::new(send);
    let peak_reset = reset_peak_rss();
    let cpu_before = cpu_time();
    let servers_before = servers.cpu_time();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let send = send.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut i = client;
            while i < total {
                let t = Instant::now();
                match send(i).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(reason) => failures.push(reason),
                }
                i += clients;
            }
            (latencies, failures)
        });
    }
    let (mut latencies, failed, failures) = gather(tasks, total).await?;
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let servers_spent = servers.cpu_time().since(servers_before);
    latencies.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let per_request = |d: Duration| us(d) / total.max(1) as f64;
    Ok(Measurement {
        name: name.to_string(),
        clients,
        users,
        requests: total,
        failed,
        failures,
        p50_us: us(percentile(&latencies, 0.50)),
        p99_us: us(percentile(&latencies, 0.99)),
        p999_us: us(percentile(&latencies, 0.999)),
        throughput: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        cpu_per_request_us: per_request(cpu),
        nats_server_cpu_per_request_us: servers_spent.nats.map(per_request),
        database_server_cpu_per_request_us: servers_spent.database.map(per_request),
        jetstream_messages_per_request: None,
        peak_rss_kib: peak_rss_kib(),
        peak_reset,
        seconds: elapsed.as_secs_f64(),
    })
}

/// What one client task returns: its latencies and why its failed requests failed.
type ClientOutcome = (Vec<Duration>, Vec<String>);

/// Waits for every client task: all latencies, how many requests failed, and the first
/// few distinct reasons.
async fn gather(
    mut tasks: tokio::task::JoinSet<ClientOutcome>,
    total: usize,
) -> anyhow::Result<(Vec<Duration>, usize, Vec<String>)> {
    let mut latencies = Vec::with_capacity(total);
    let mut failed = 0;
    let mut failures: Vec<String> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (ok, bad) = joined?;
        latencies.extend(ok);
        failed += bad.len();
        for reason in bad {
            if failures.len() < KEPT_FAILURES && !failures.contains(&reason) {
                failures.push(reason);
            }
        }
    }
    Ok((latencies, failed, failures))
}

/// The `p` quantile (0.0 to 1.0) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_are_counted_and_kept_once() {
        let m = measure("x", Servers::default(), 4, 0, 100, |i| async move {
            if i % 10 == 0 {
                Err("RATE_LIMITED: slow down".to_string())
            } else {
                Ok(())
            }
        })
        .await
        .expect("measures");
        assert_eq!(m.requests, 100);
        assert_eq!(m.failed, 10);
        assert_eq!(m.failures, vec!["RATE_LIMITED: slow down".to_string()]);
        assert!(m.throughput > 0.0);
        assert_eq!(m.nats_server_cpu_per_request_us, None);
    }

    #[tokio::test]
    async fn another_process_cpu_is_accounted_per_request() {
        // This process stands in for nats-server: the row's own work is its CPU time.
        let servers = Servers {
            nats: Some(std::process::id()),
            postgres: false,
        };
        let m = measure("x", servers, 1, 0, 10, |_| async move {
            let spin = std::time::Instant::now();
            while spin.elapsed() < Duration::from_millis(5) {
                std::hint::spin_loop();
            }
            Ok(())
        })
        .await
        .expect("measures");
        let server = m.nats_server_cpu_per_request_us.expect("measured");
        // 50 ms of spinning over 10 requests, read in clock ticks of 10 ms.
        assert!(server >= 2_000.0, "{server} µs per request");
        assert_eq!(m.database_server_cpu_per_request_us, None);
    }
}
