//! `pinnacle bench ticks`: the market-data benchmark. It asserts no timing; the end-to-end
//! tests run it at a small size so it cannot rot, and it exits non-zero if nothing moved
//! or a subscriber on its own connection lost a tick. Its results go to
//! `docs/BENCHMARKS.md` with the command used.
//!
//! In one run, against one nats-server (its own on loopback, or `NATS_URL`), over
//! `symbols` instruments spread across five exchanges, the publisher and raw NATS side by
//! side, each publishing from its own thread ([`load`]) so its CPU time is measured alone:
//! 1. **Throughput**: the real publisher loop driving the simulator as fast as it can,
//!    one subscriber on `md.tick.>`; raw async-nats publishing payloads of the same size
//!    on the same subjects, and on one subject (the older baseline).
//! 2. **Fan-out**: the same, with ten subscribers on different wildcards, each on its own
//!    connection; every subscriber's count is checked against what its wildcard matched.
//! 3. **Latency** at a fixed rate (`rate` ticks/s in 1 ms batches, cycling over the
//!    symbols): tick made → subscriber has it, p50/p99/p99.9/max.
//! 4. **Memory**: resident set size before the simulator and after the throughput run.
//!
//! Layout: [`runs`] runs each measurement ([`load`] publishes, [`receive`] subscribes);
//! [`report`] prints each section as it ends and checks the run.

pub mod load;
pub mod receive;
pub mod report;
pub mod runs;

use std::time::Duration;

use async_nats::ServerAddr;
use pinnacle_common::subjects;

use self::runs::{fan_out_filters, Bench};
use super::process::rss_kib;
use crate::nats_server::NatsServer;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct TicksOptions {
    /// Simulated instruments.
    pub symbols: usize,
    /// Seconds per measurement.
    pub seconds: u64,
    /// Ticks per second for the latency measurement.
    pub rate: u64,
}

/// Runs the benchmark and prints a Markdown report.
pub async fn run(options: TicksOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (servers, _server) = nats_servers(dir.path())?;
    let seconds = Duration::from_secs(options.seconds.max(1));
    let load_before = report::load_average();

    // Memory first, on a quiet process.
    let rss_before = rss_kib();
    let bench = Bench::prepare(servers, seconds, options.symbols)?;
    let symbols = bench.names.len();
    report::header(
        symbols,
        seconds,
        options.rate,
        bench.payload_len(),
        &load_before,
    );

    // 1. Throughput, one subscriber.
    let firehose = [subjects::MD_TICK_ALL.to_string()];
    let (one, cache) = bench.publisher(&firehose).await?;
    let rss_after = rss_kib();
    let raw_same = bench.raw(bench.subjects.clone(), &firehose).await?;
    let single = vec![bench.subjects[0].clone()];
    let raw_one = bench.raw(single, &firehose).await?;
    report::throughput(&one, &raw_same, &raw_one);

    // 2. Fan-out.
    let filters = fan_out_filters(&bench.names);
    let (fan, _) = bench.publisher(&filters).await?;
    let raw_fan = bench.raw(bench.subjects.clone(), &filters).await?;
    report::fan_out(&filters, &fan, &raw_fan);

    // 3. Latency at a fixed rate.
    let rate = (options.rate / 1_000).max(1) * 1_000;
    let (mut latencies, lat_sent) = bench.publisher_latency(rate).await?;
    let (mut raw_latencies, raw_lat_sent) = bench.raw_latency(rate).await?;
    latencies.sort_unstable();
    raw_latencies.sort_unstable();
    report::latency(
        rate,
        symbols,
        (&latencies, &lat_sent),
        (&raw_latencies, &raw_lat_sent),
    );

    report::memory(symbols, rss_before, rss_after, cache.len());
    report::check(&one, &raw_same, &raw_one, &latencies, &raw_latencies)
}

/// The servers to connect to: `NATS_URL`, else our own nats-server in `dir` (returned, so
/// that it runs until it is dropped).
fn nats_servers(dir: &std::path::Path) -> anyhow::Result<(Vec<ServerAddr>, Option<NatsServer>)> {
    let mut server = None;
    let url = match std::env::var("NATS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let started = NatsServer::start(&crate::nats_server::find_binary()?, dir, &[])?;
            let url = started.url().to_string();
            server = Some(started);
            url
        }
    };
    let servers = pinnacle_common::config::NatsSettings::for_url(url).servers()?;
    Ok((servers, server))
}
