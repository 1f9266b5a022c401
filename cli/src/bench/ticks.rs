//! `pinnacle bench ticks`: the market-data benchmark. It asserts no timing; the end-to-end
//! tests run it for a second so it cannot rot, and it exits non-zero if nothing moved. Its
//! results go to `docs/BENCHMARKS.md` with the command used.
//!
//! In one run, against one nats-server (its own on loopback, or `NATS_URL`):
//! 1. **Throughput**: the real publisher loop driving the simulator over `symbols`
//!    instruments as fast as it can for `seconds`, with one subscriber on `md.tick.>`;
//!    then raw async-nats publishing a payload of the same size, the same way.
//! 2. **Latency** at a fixed rate: the publisher loop with a feed that stamps each tick's
//!    creation instant, against raw publishing stamped the same way; p50/p99/max of
//!    create-to-receive.
//! 3. **Memory**: resident set size before and after building and running a simulator
//!    and last-value cache over `symbols` instruments.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use pinnacle_common::codec::Encoding;
use pinnacle_common::feed::{FeedError, MarketFeed};
use pinnacle_common::model::{MarketTick, Tick};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_publisher::instruments::Catalog;
use pinnacle_publisher::sim::{synthetic, SimFeed};
use pinnacle_publisher::{PublishOptions, PublisherStats};

use super::{percentile, rss_kib};
use crate::nats_server::NatsServer;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct TicksOptions {
    /// Simulated instruments (throughput and memory).
    pub symbols: usize,
    /// Seconds per throughput measurement.
    pub seconds: u64,
    /// Ticks per second for the latency measurement.
    pub rate: u64,
}

/// Counts messages on `subject` until the returned flag is read.
async fn counter(client: &async_nats::Client, subject: &str) -> anyhow::Result<Arc<AtomicU64>> {
    let mut sub = client.subscribe(subject.to_string()).await?;
    client.flush().await?;
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while sub.next().await.is_some() {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(count)
}

/// Waits until `count` stops moving (the subscriber has drained), at most 10 s.
async fn settle(count: &AtomicU64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = count.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = count.load(Ordering::Relaxed);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// A feed that emits `per_batch` ticks of one symbol every millisecond and remembers
/// when it made each one.
#[derive(Debug)]
struct StampedFeed {
    /// Creation instant by sequence number.
    made: Arc<Mutex<Vec<Instant>>>,
    interval: tokio::time::Interval,
    per_batch: u64,
    seq: u64,
    template: Tick,
}

#[async_trait]
impl MarketFeed for StampedFeed {
    fn name(&self) -> &'static str {
        "bench"
    }

    async fn next_batch(&mut self) -> Result<Vec<MarketTick>, FeedError> {
        self.interval.tick().await;
        let now = Instant::now();
        let mut made = self.made.lock().map_err(|_| FeedError("poisoned".into()))?;
        Ok((0..self.per_batch)
            .map(|_| {
                self.seq += 1;
                made.push(now);
                MarketTick::from_core(Tick {
                    seq: self.seq,
                    ..self.template.clone()
                })
            })
            .collect())
    }
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
    let connect = || {
        async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 22)
            .connect(servers.clone())
    };
    let seconds = Duration::from_secs(options.seconds.max(1));
    println!("## Market data benchmark\n");
    println!(
        "symbols {}, {} s per throughput run, latency at {} ticks/s\n",
        options.symbols,
        seconds.as_secs(),
        options.rate
    );

    // Memory first, on a quiet process.
    let rss_before = rss_kib();
    let catalog = Catalog::sample();
    let feed = SimFeed::new(
        synthetic(options.symbols),
        &catalog,
        42,
        Duration::from_millis(1),
        false,
    );
    let probe = SimFeed::new(synthetic(1), &catalog, 42, Duration::from_millis(1), false).step();
    let payload_len = Encoding::MsgPack.encode(&probe[0])?.len();

    // 1a. Publisher end to end.
    let publisher = connect().await?;
    let subscriber = connect().await?;
    let received = counter(&subscriber, pinnacle_common::subjects::MD_TICK_ALL).await?;
    let stats = Arc::new(PublisherStats::default());
    let shutdown = Shutdown::new();
    let cache = Arc::new(pinnacle_publisher::cache::LastValues::new());
    let task = tokio::spawn(pinnacle_publisher::run(
        publisher.clone(),
        Box::new(feed),
        PublishOptions {
            stats: stats.clone(),
            depth: false,
            cache: cache.clone(),
            ..PublishOptions::default()
        },
        shutdown.clone(),
    ));
    let started = Instant::now();
    tokio::time::sleep(seconds).await;
    shutdown.cancel();
    task.await??;
    let elapsed = started.elapsed().as_secs_f64();
    let published = stats.published.load(Ordering::Relaxed);
    let got = settle(&received).await;
    let rss_after = rss_kib();
    let (pub_rate, recv_rate) = (published as f64 / elapsed, got as f64 / elapsed);

    // 1b. Raw NATS, same payload size.
    let raw_subject = "bench.raw";
    let raw_received = counter(&subscriber, raw_subject).await?;
    let payload = Bytes::from(vec![0x5a_u8; payload_len]);
    let started = Instant::now();
    let mut raw_published = 0u64;
    while started.elapsed() < seconds {
        for _ in 0..1_000 {
            publisher.publish(raw_subject, payload.clone()).await?;
        }
        raw_published += 1_000;
    }
    let raw_elapsed = started.elapsed().as_secs_f64();
    publisher.flush().await?;
    let raw_got = settle(&raw_received).await;
    let (raw_pub, raw_recv) = (
        raw_published as f64 / raw_elapsed,
        raw_got as f64 / raw_elapsed,
    );

    println!("| measure | publisher (md.tick) | raw NATS | ratio |\n|---|---|---|---|");
    println!("| payload bytes | {payload_len} | {payload_len} | 1.00 |");
    println!(
        "| published ticks/s | {pub_rate:.0} | {raw_pub:.0} | {:.2} |",
        pub_rate / raw_pub
    );
    println!(
        "| received ticks/s (1 subscriber) | {recv_rate:.0} | {raw_recv:.0} | {:.2} |",
        recv_rate / raw_recv
    );
    println!("| delivered | {got}/{published} | {raw_got}/{raw_published} | |");

    // 2. Latency at a fixed rate.
    let per_batch = (options.rate / 1_000).max(1);
    let made = Arc::new(Mutex::new(Vec::new()));
    let template = probe[0].core();
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let feed = StampedFeed {
        made: made.clone(),
        interval,
        per_batch,
        seq: 0,
        template: template.clone(),
    };
    let subject = pinnacle_common::subjects::tick(&template.exchange, &template.symbol);
    let mut sub = subscriber.subscribe(subject).await?;
    subscriber.flush().await?;
    let shutdown = Shutdown::new();
    let task = tokio::spawn(pinnacle_publisher::run(
        publisher.clone(),
        Box::new(feed),
        PublishOptions {
            depth: false,
            ..PublishOptions::default()
        },
        shutdown.clone(),
    ));
    let mut latencies = Vec::new();
    let until = Instant::now() + seconds;
    while Instant::now() < until {
        let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await
        else {
            break;
        };
        let received_at = Instant::now();
        let tick: Tick = Encoding::MsgPack.decode(&message.payload)?;
        let made_at = made
            .lock()
            .ok()
            .and_then(|m| m.get(tick.seq as usize - 1).copied());
        if let Some(made_at) = made_at {
            latencies.push(received_at - made_at);
        }
    }
    shutdown.cancel();
    task.await??;
    drop(sub);

    let raw_subject = "bench.latency";
    let mut raw_sub = subscriber.subscribe(raw_subject).await?;
    subscriber.flush().await?;
    let origin = Instant::now();
    let sender = publisher.clone();
    let raw_task = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let until = Instant::now() + seconds;
        while Instant::now() < until {
            interval.tick().await;
            for _ in 0..per_batch {
                let mut body = vec![0x5a_u8; payload_len.max(16)];
                let nanos = origin.elapsed().as_nanos() as u64;
                body[..8].copy_from_slice(&nanos.to_le_bytes());
                if sender.publish(raw_subject, body.into()).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut raw_latencies = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(1), raw_sub.next()).await
    {
        let now = origin.elapsed();
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&message.payload[..8]);
        raw_latencies.push(now.saturating_sub(Duration::from_nanos(u64::from_le_bytes(stamp))));
    }
    raw_task.await?;
    latencies.sort_unstable();
    raw_latencies.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "\n| latency at {} ticks/s (µs) | publisher (md.tick) | raw NATS |\n|---|---|---|",
        per_batch * 1_000
    );
    for (name, p) in [("p50", 0.50), ("p99", 0.99), ("max", 1.0)] {
        println!(
            "| {name} | {:.0} | {:.0} |",
            us(percentile(&latencies, p)),
            us(percentile(&raw_latencies, p))
        );
    }
    println!(
        "| samples | {} | {} |",
        latencies.len(),
        raw_latencies.len()
    );

    println!("\n| memory | KiB |\n|---|---|");
    println!("| RSS before the simulator | {rss_before} |");
    println!(
        "| RSS with {} symbols simulated, published and cached | {rss_after} |",
        options.symbols
    );
    println!("| difference | {} |", rss_after.saturating_sub(rss_before));
    println!("| cached symbols | {} |", cache.len());

    // Measure, never assert timing; but a run that moved nothing is a broken benchmark.
    anyhow::ensure!(
        published > 0 && got > 0,
        "the publisher delivered no ticks ({got} of {published})"
    );
    anyhow::ensure!(
        raw_got > 0,
        "raw NATS delivered nothing ({raw_got} of {raw_published})"
    );
    anyhow::ensure!(
        !latencies.is_empty() && !raw_latencies.is_empty(),
        "no latency samples (publisher {}, raw {})",
        latencies.len(),
        raw_latencies.len()
    );
    Ok(())
}
