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
//! [`receive`] holds the subscribing sides.

pub mod load;
pub mod receive;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{ServerAddr, Subject};
use pinnacle_common::codec::Encoding;
use pinnacle_common::model::MarketTick;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;
use pinnacle_publisher::cache::LastValues;
use pinnacle_publisher::instruments::Catalog;
use pinnacle_publisher::sim::{SimFeed, SymbolSpec};
use pinnacle_publisher::snapshot::TickFilter;
use pinnacle_publisher::PublisherStats;

use self::load::{RawPace, Sent, StampedFeed};
use self::receive::Counter;
use super::measure::percentile;
use super::process::{peak_rss_kib, rss_kib};
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

/// The exchanges the simulated symbols are spread over, in turn.
const EXCHANGES: [&str; 5] = ["NSE", "BSE", "NFO", "MCX", "CDS"];

/// Symbol `i` (from 0) is `SIM<i+1>` on `EXCHANGES[i mod 5]`.
fn spread(count: usize) -> Vec<SymbolSpec> {
    (0..count.max(1))
        .map(|i| SymbolSpec {
            exchange: EXCHANGES[i % EXCHANGES.len()].into(),
            symbol: format!("SIM{:05}", i + 1),
            start_price: None,
        })
        .collect()
}

/// The ten fan-out wildcards: the whole feed twice, each exchange, and three single
/// symbols (one through a `*`).
fn fan_out_filters(names: &[(String, String)]) -> Vec<String> {
    let name = |i: usize| &names[i % names.len()];
    let mut filters = vec!["md.tick.>".to_string(), "md.tick.*.*".to_string()];
    for (k, exchange) in EXCHANGES.iter().enumerate() {
        filters.push(if k % 2 == 0 {
            format!("md.tick.{exchange}.>")
        } else {
            format!("md.tick.{exchange}.*")
        });
    }
    filters.push(format!("md.tick.*.{}", name(0).1));
    filters.push(subjects::tick(&name(1).0, &name(1).1));
    filters.push(subjects::tick(&name(5).0, &name(5).1));
    filters
}

/// How many messages a subscriber on `filter` should have had, given how many each
/// symbol got.
fn expected(filter: &str, names: &[(String, String)], per_symbol: &[u64]) -> anyhow::Result<u64> {
    let filter = TickFilter::parse(filter)?;
    Ok(names
        .iter()
        .zip(per_symbol)
        .filter(|((exchange, symbol), _)| {
            let (e, s) = (
                subjects::escape_token(exchange),
                subjects::escape_token(symbol),
            );
            filter.matches(&[&e, &s])
        })
        .map(|(_, count)| count)
        .sum())
}

/// Ticks published per symbol: the sequence number of its last tick (they start at 1 and
/// are contiguous), read back from the last-value cache.
fn per_symbol_from_cache(cache: &LastValues, names: &[(String, String)]) -> Vec<u64> {
    names
        .iter()
        .map(|(exchange, symbol)| cache.get(exchange, symbol).map_or(0, |tick| tick.seq))
        .collect()
}

/// The system load averages, as printed by `uptime`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// One side of a run: what was sent and what each subscriber received of what it should
/// have.
#[derive(Debug)]
struct Side {
    sent: Sent,
    /// (received, expected) per subscriber.
    received: Vec<(u64, u64)>,
}

impl Side {
    fn lost(&self) -> u64 {
        self.received
            .iter()
            .map(|(got, want)| want.saturating_sub(*got))
            .sum()
    }

    fn delivered(&self) -> u64 {
        self.received.iter().map(|(got, _)| got).sum()
    }
}

/// Everything one run needs.
struct Bench {
    servers: Vec<ServerAddr>,
    seconds: Duration,
    specs: Vec<SymbolSpec>,
    names: Vec<(String, String)>,
    subjects: Vec<Subject>,
    /// One full tick, as the simulator makes them.
    template: MarketTick,
    payload_len: usize,
}

impl Bench {
    /// Subscribers on `filters`, each on its own connection.
    async fn subscribers(
        &self,
        filters: &[String],
    ) -> anyhow::Result<Vec<(Counter, async_nats::Client)>> {
        let mut out = Vec::new();
        for filter in filters {
            let client = load::connect(&self.servers).await?;
            out.push((Counter::start(&client, filter).await?, client));
        }
        Ok(out)
    }

    /// The publisher loop over the simulator for `seconds`, with subscribers on `filters`.
    async fn publisher(&self, filters: &[String]) -> anyhow::Result<(Side, Arc<LastValues>)> {
        let subscribers = self.subscribers(filters).await?;
        let feed = SimFeed::new(
            self.specs.clone(),
            &Catalog::sample(),
            42,
            Duration::from_millis(1),
            false,
        );
        let cache = Arc::new(LastValues::new());
        let stats = Arc::new(PublisherStats::default());
        let (shutdown, stopper) = stop_after(self.seconds);
        let sent = load::publisher(
            self.servers.clone(),
            Box::new(feed),
            cache.clone(),
            stats,
            shutdown,
        )
        .await?;
        stopper.abort();
        let per_symbol = per_symbol_from_cache(&cache, &self.names);
        anyhow::ensure!(
            per_symbol.iter().sum::<u64>() == sent.messages,
            "the publisher's sequence numbers do not add up to what it published"
        );
        let mut received = Vec::new();
        for ((counter, _client), filter) in subscribers.iter().zip(filters) {
            let want = expected(filter, &self.names, &per_symbol)?;
            received.push((counter.settle(want).await, want));
        }
        Ok((Side { sent, received }, cache))
    }

    /// Raw NATS on `subjects` for `seconds`, with subscribers on `filters`.
    async fn raw(&self, subjects: Vec<Subject>, filters: &[String]) -> anyhow::Result<Side> {
        let subscribers = self.subscribers(filters).await?;
        let count = subjects.len();
        let sent = load::raw(
            self.servers.clone(),
            subjects,
            self.payload_len,
            RawPace::Flat(self.seconds),
        )
        .await?;
        // Whole rounds: every subject got the same number.
        let mut per_symbol = vec![0; self.names.len()];
        for slot in per_symbol.iter_mut().take(count) {
            *slot = sent.messages / count as u64;
        }
        let mut received = Vec::new();
        for ((counter, _client), filter) in subscribers.iter().zip(filters) {
            let want = expected(filter, &self.names, &per_symbol)?;
            received.push((counter.settle(want).await, want));
        }
        Ok(Side { sent, received })
    }

    /// Latency of the publisher at `rate` ticks/s: (samples, sent).
    async fn publisher_latency(&self, rate: u64) -> anyhow::Result<(Vec<Duration>, Sent)> {
        let client = load::connect(&self.servers).await?;
        let sub = client.subscribe(subjects::MD_TICK_ALL).await?;
        client.flush().await?;
        let made = Arc::new(Mutex::new(Vec::new()));
        let collector = receive::publisher_latencies(sub, made.clone(), &self.names);
        let feed = StampedFeed::new(made, rate / 1_000, self.names.clone(), &self.template);
        let (shutdown, stopper) = stop_after(self.seconds);
        let sent = load::publisher(
            self.servers.clone(),
            Box::new(feed),
            Arc::new(LastValues::new()),
            Arc::new(PublisherStats::default()),
            shutdown,
        )
        .await?;
        stopper.abort();
        Ok((collector.await?, sent))
    }

    /// Latency of raw NATS at `rate` messages/s on the same subjects: (samples, sent).
    async fn raw_latency(&self, rate: u64) -> anyhow::Result<(Vec<Duration>, Sent)> {
        let client = load::connect(&self.servers).await?;
        let sub = client.subscribe(subjects::MD_TICK_ALL).await?;
        client.flush().await?;
        let origin = Instant::now();
        let collector = receive::raw_latencies(sub, origin);
        let sent = load::raw(
            self.servers.clone(),
            self.subjects.clone(),
            self.payload_len,
            RawPace::Stamped {
                per_ms: (rate / 1_000).max(1),
                seconds: self.seconds,
                origin,
            },
        )
        .await?;
        Ok((collector.await?, sent))
    }
}

/// `a / b` to two places, or `–`.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

fn delivered(side: &Side) -> String {
    let want: u64 = side.received.iter().map(|(_, want)| want).sum();
    format!("{}/{}", side.delivered(), want)
}

/// Runs the benchmark and prints a Markdown report.
pub async fn run(options: TicksOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut _server = None;
    let url = match std::env::var("NATS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let server = NatsServer::start(&crate::nats_server::find_binary()?, dir.path(), &[])?;
            let url = server.url().to_string();
            _server = Some(server);
            url
        }
    };
    let servers = pinnacle_common::config::NatsSettings::for_url(url).servers()?;
    let seconds = Duration::from_secs(options.seconds.max(1));
    let load_before = load_average();

    // Memory first, on a quiet process.
    let rss_before = rss_kib();
    let specs = spread(options.symbols);
    let names: Vec<(String, String)> = specs
        .iter()
        .map(|s| (s.exchange.clone(), s.symbol.clone()))
        .collect();
    let subjects_all: Vec<Subject> = names
        .iter()
        .map(|(exchange, symbol)| Subject::from(subjects::tick(exchange, symbol)))
        .collect();
    let template = SimFeed::new(
        spread(1),
        &Catalog::sample(),
        42,
        Duration::from_millis(1),
        false,
    )
    .step()
    .pop()
    .ok_or_else(|| anyhow::anyhow!("the simulator made no tick"))?;
    let payload_len = Encoding::MsgPack.encode(&template)?.len();
    let bench = Bench {
        servers,
        seconds,
        specs,
        names,
        subjects: subjects_all.clone(),
        template,
        payload_len,
    };

    println!("## Market data benchmark\n");
    println!(
        "{} symbols over {}; {} s per run; latency at {} ticks/s; payload {} bytes (one \
         MessagePack SNAP_QUOTE tick; raw NATS sends the same size); load average {} at the \
         start.\n",
        bench.names.len(),
        EXCHANGES.join(", "),
        seconds.as_secs(),
        options.rate,
        payload_len,
        load_before,
    );

    // 1. Throughput, one subscriber.
    let firehose = [subjects::MD_TICK_ALL.to_string()];
    let (one, cache) = bench.publisher(&firehose).await?;
    let rss_after = rss_kib();
    let raw_same = bench.raw(subjects_all.clone(), &firehose).await?;
    let single = vec![subjects_all[0].clone()];
    let raw_one = bench.raw(single, &firehose).await?;
    println!(
        "### Throughput: one subscriber on `md.tick.>`\n\n\
         | measure | publisher | raw NATS, same subjects | ratio | raw NATS, one subject | ratio |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    let rate_row = |name: &str, f: &dyn Fn(&Side) -> f64| {
        let (p, s, o) = (f(&one), f(&raw_same), f(&raw_one));
        println!(
            "| {name} | {p:.0} | {s:.0} | {} | {o:.0} | {} |",
            ratio(p, s),
            ratio(p, o)
        );
    };
    rate_row("published ticks/s", &|side| side.sent.rate());
    rate_row("received ticks/s", &|side| {
        side.delivered() as f64 / side.sent.elapsed.as_secs_f64().max(1e-9)
    });
    println!(
        "| delivered | {} | {} | | {} | |",
        delivered(&one),
        delivered(&raw_same),
        delivered(&raw_one)
    );
    println!(
        "| lost | {} | {} | | {} | |",
        one.lost(),
        raw_same.lost(),
        raw_one.lost()
    );
    println!(
        "| publishing thread CPU per tick (µs) | {:.2} | {:.2} | {} | {:.2} | {} |",
        one.sent.cpu_per_message_us(),
        raw_same.sent.cpu_per_message_us(),
        ratio(
            one.sent.cpu_per_message_us(),
            raw_same.sent.cpu_per_message_us()
        ),
        raw_one.sent.cpu_per_message_us(),
        ratio(
            one.sent.cpu_per_message_us(),
            raw_one.sent.cpu_per_message_us()
        ),
    );

    // 2. Fan-out.
    let filters = fan_out_filters(&bench.names);
    let (fan, _) = bench.publisher(&filters).await?;
    let raw_fan = bench.raw(subjects_all.clone(), &filters).await?;
    println!(
        "\n### Fan-out: {} subscribers, each on its own connection\n\n\
         | subscriber | publisher: received/expected | raw NATS: received/expected |\n\
         |---|---:|---:|",
        filters.len()
    );
    for (filter, (p, r)) in filters
        .iter()
        .zip(fan.received.iter().zip(&raw_fan.received))
    {
        println!("| `{filter}` | {}/{} | {}/{} |", p.0, p.1, r.0, r.1);
    }
    println!(
        "\n| measure | publisher | raw NATS | ratio |\n|---|---:|---:|---:|\n\
         | published ticks/s | {:.0} | {:.0} | {} |",
        fan.sent.rate(),
        raw_fan.sent.rate(),
        ratio(fan.sent.rate(), raw_fan.sent.rate())
    );
    let deliveries =
        |side: &Side| side.delivered() as f64 / side.sent.elapsed.as_secs_f64().max(1e-9);
    println!(
        "| deliveries/s, all subscribers | {:.0} | {:.0} | {} |",
        deliveries(&fan),
        deliveries(&raw_fan),
        ratio(deliveries(&fan), deliveries(&raw_fan))
    );
    println!("| lost | {} | {} | |", fan.lost(), raw_fan.lost());
    println!(
        "| publishing thread CPU per tick (µs) | {:.2} | {:.2} | {} |",
        fan.sent.cpu_per_message_us(),
        raw_fan.sent.cpu_per_message_us(),
        ratio(
            fan.sent.cpu_per_message_us(),
            raw_fan.sent.cpu_per_message_us()
        )
    );

    // 3. Latency at a fixed rate.
    let rate = (options.rate / 1_000).max(1) * 1_000;
    let (mut latencies, lat_sent) = bench.publisher_latency(rate).await?;
    let (mut raw_latencies, raw_lat_sent) = bench.raw_latency(rate).await?;
    latencies.sort_unstable();
    raw_latencies.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "\n### Latency at {rate} ticks/s over {} symbols (µs, tick made → subscriber has it)\n\n\
         | measure | publisher | raw NATS |\n|---|---:|---:|",
        bench.names.len()
    );
    for (name, p) in [("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)] {
        println!(
            "| {name} | {:.0} | {:.0} |",
            us(percentile(&latencies, p)),
            us(percentile(&raw_latencies, p))
        );
    }
    println!(
        "| samples/sent | {}/{} | {}/{} |",
        latencies.len(),
        lat_sent.messages,
        raw_latencies.len(),
        raw_lat_sent.messages
    );
    println!(
        "| publishing thread CPU per tick (µs) | {:.2} | {:.2} |",
        lat_sent.cpu_per_message_us(),
        raw_lat_sent.cpu_per_message_us()
    );

    println!("\n### Memory\n\n| measure | KiB |\n|---|---:|");
    println!("| RSS before the simulator | {rss_before} |");
    println!(
        "| RSS with {} symbols simulated, published and cached | {rss_after} |",
        bench.names.len()
    );
    println!("| difference | {} |", rss_after.saturating_sub(rss_before));
    if let Some(peak) = peak_rss_kib() {
        println!("| peak RSS of the whole run | {peak} |");
    }
    println!("| cached symbols | {} |", cache.len());
    println!("\nLoad average at the end: {}.", load_average());

    // Measure, never assert timing; but a run that moved nothing, or lost a tick a
    // subscriber was keeping up with, is a broken benchmark or a broken publisher.
    anyhow::ensure!(
        one.sent.messages > 0 && one.delivered() > 0,
        "the publisher delivered no ticks ({})",
        delivered(&one)
    );
    anyhow::ensure!(
        raw_same.delivered() > 0 && raw_one.delivered() > 0,
        "raw NATS delivered nothing"
    );
    anyhow::ensure!(
        one.lost() == 0,
        "the subscriber on md.tick.> lost {} ticks of the publisher's",
        one.lost()
    );
    anyhow::ensure!(
        !latencies.is_empty() && !raw_latencies.is_empty(),
        "no latency samples (publisher {}, raw {})",
        latencies.len(),
        raw_latencies.len()
    );
    Ok(())
}

/// A shutdown token that fires after `seconds`, and the task that fires it (abort it when
/// the run ends first).
fn stop_after(seconds: Duration) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(seconds).await;
        stop.cancel();
    });
    (shutdown, stopper)
}
