//! Publisher resilience against a real nats-server: backoff on feed errors, the stall
//! watchdog, a stuck subscriber that must not slow it down, and a NATS restart that it
//! rides out without losing its place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use pinnacle_cli::nats_server::{find_binary, NatsServer};
use pinnacle_common::codec::Encoding;
use pinnacle_common::config::NatsSettings;
use pinnacle_common::feed::{FeedError, MarketFeed};
use pinnacle_common::model::{MarketTick, Tick};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;
use pinnacle_publisher::instruments::Catalog;
use pinnacle_publisher::sim::{parse_symbols, SimFeed};
use pinnacle_publisher::{PublishOptions, PublisherStats};
use pinnacle_tests::{eventually, TestNats};

fn tick(symbol: &str, seq: u64) -> MarketTick {
    MarketTick::from_core(Tick {
        exchange: "NSE".into(),
        symbol: symbol.into(),
        seq,
        ts_ms: 0,
        ltp: 10_000,
        last_qty: 1,
        volume: seq as i64,
        bid: 9_995,
        ask: 10_005,
    })
}

/// Fails `errors` times, then hangs until reset, then ticks `batch` at a time.
#[derive(Debug)]
struct Scripted {
    errors: u32,
    stalled: bool,
    resets: Arc<AtomicU64>,
    batch: u64,
    batches_left: u64,
    seq: u64,
}

#[async_trait]
impl MarketFeed for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn next_batch(&mut self) -> Result<Vec<MarketTick>, FeedError> {
        if self.errors > 0 {
            self.errors -= 1;
            return Err(FeedError("scripted failure".into()));
        }
        if self.stalled || self.batches_left == 0 {
            std::future::pending::<()>().await;
        }
        self.batches_left -= 1;
        tokio::task::yield_now().await;
        Ok((0..self.batch)
            .map(|_| {
                self.seq += 1;
                tick("SCRIPT-EQ", self.seq)
            })
            .collect())
    }

    async fn reset(&mut self) -> Result<(), FeedError> {
        self.stalled = false;
        self.resets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn options(stats: &Arc<PublisherStats>, stall_ms: u64) -> PublishOptions {
    PublishOptions {
        stall_timeout: Duration::from_millis(stall_ms),
        stats: stats.clone(),
        ..PublishOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_errors_back_off_and_the_watchdog_resets_a_stalled_feed() {
    let nats = TestNats::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut sub = client
        .subscribe(subjects::tick("NSE", "SCRIPT-EQ"))
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let resets = Arc::new(AtomicU64::new(0));
    let feed = Scripted {
        errors: 3,
        stalled: true,
        resets: resets.clone(),
        batch: 1,
        batches_left: 5,
        seq: 0,
    };
    let stats = Arc::new(PublisherStats::default());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(pinnacle_publisher::run(
        client.clone(),
        Box::new(feed),
        options(&stats, 200),
        shutdown.clone(),
    ));
    let started = std::time::Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a tick after recovery")
        .expect("open");
    let first: Tick = Encoding::MsgPack.decode(&first.payload).expect("tick");
    assert_eq!(first.seq, 1);
    assert_eq!(stats.feed_errors.load(Ordering::Relaxed), 3);
    assert!(stats.stalls.load(Ordering::Relaxed) >= 1);
    assert!(resets.load(Ordering::Relaxed) >= 1);
    // 100 + 200 + 400 ms of backoff, then a 200 ms stall.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    shutdown.cancel();
    task.await.expect("joins").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_never_slows_the_publisher() {
    let nats = TestNats::start();
    let publisher = async_nats::connect(nats.url()).await.expect("connect");
    // A subscriber that never reads, with a tiny buffer.
    let stuck = pinnacle_common::nats::connect(
        &NatsSettings {
            subscription_capacity: 16,
            ..NatsSettings::for_url(nats.url())
        },
        "stuck",
    )
    .await
    .expect("connect");
    let _never_read = stuck
        .subscribe(subjects::MD_TICK_ALL)
        .await
        .expect("subscribe");
    let reader = async_nats::connect(nats.url()).await.expect("connect");
    let mut live = reader
        .subscribe(subjects::MD_TICK_ALL)
        .await
        .expect("subscribe");
    // A flush only writes to the socket: wait until the server has both subscriptions, or
    // the publisher (another connection) can outrun them.
    for client in [&reader, &stuck] {
        pinnacle_common::nats::handled_by_server(client)
            .await
            .expect("the server has the subscription");
    }
    let total = 50_000u64;
    let feed = Scripted {
        errors: 0,
        stalled: false,
        resets: Arc::default(),
        batch: 1_000,
        batches_left: total / 1_000,
        seq: 0,
    };
    let stats = Arc::new(PublisherStats::default());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(pinnacle_publisher::run(
        publisher,
        Box::new(feed),
        options(&stats, 60_000),
        shutdown.clone(),
    ));
    let stats_ref = stats.clone();
    eventually(Duration::from_secs(20), "every tick published", || {
        let stats = stats_ref.clone();
        async move { (stats.published.load(Ordering::Relaxed) == total).then_some(()) }
    })
    .await;
    // The reading subscriber gets every one, in order.
    let mut expected = 1;
    while expected <= total {
        let message = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("tick")
            .expect("open");
        let tick: Tick = Encoding::MsgPack.decode(&message.payload).expect("tick");
        assert_eq!(tick.seq, expected);
        expected += 1;
    }
    shutdown.cancel();
    task.await.expect("joins").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_rides_out_a_nats_restart_without_losing_its_place() {
    let nats = TestNats::start();
    let port = nats.server.port();
    let publisher = async_nats::connect(nats.url()).await.expect("connect");
    let subscriber = async_nats::connect(nats.url()).await.expect("connect");
    let mut sub = subscriber
        .subscribe(subjects::tick("NSE", "SBIN-EQ"))
        .await
        .expect("subscribe");
    subscriber.flush().await.expect("flush");
    let feed = SimFeed::new(
        parse_symbols("NSE:SBIN-EQ").expect("spec"),
        &Catalog::sample(),
        1,
        Duration::from_millis(10),
        false,
    );
    let stats = Arc::new(PublisherStats::default());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(pinnacle_publisher::run(
        publisher,
        Box::new(feed),
        options(&stats, 60_000),
        shutdown.clone(),
    ));
    let next_seq = |message: async_nats::Message| -> u64 {
        Encoding::MsgPack
            .decode::<Tick>(&message.payload)
            .expect("tick")
            .seq
    };
    let before = next_seq(
        tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("tick")
            .expect("open"),
    );

    // Kill the server and start a new one on the same port.
    let dir = tempfile::tempdir().expect("dir");
    drop(nats);
    let port_arg = port.to_string();
    let restarted = NatsServer::start(
        &find_binary().expect("binary"),
        dir.path(),
        &["-p", &port_arg],
    )
    .expect("restart");
    assert_eq!(restarted.port(), port);

    // Both clients reconnect on their own; ticks resume where the feed is, never from 1.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no tick after the restart"
        );
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(500), sub.next()).await
        {
            break next_seq(message);
        }
    };
    assert!(after > before, "sequence carried on: {before} then {after}");
    shutdown.cancel();
    task.await.expect("joins").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_status_is_announced_for_every_exchange() {
    let nats = TestNats::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut sub = client.subscribe("md.status.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let calendar = Arc::new(pinnacle_publisher::calendar::Calendar::load(None).expect("calendar"));
    let shutdown = Shutdown::new();
    let task = tokio::spawn(pinnacle_publisher::status::run(
        client.clone(),
        calendar,
        pinnacle_common::clock::Clock::real(),
        Duration::from_millis(50),
        shutdown.clone(),
    ));
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < pinnacle_publisher::calendar::EXCHANGES.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("a status")
            .expect("open");
        let status: pinnacle_common::model::ExchangeStatus =
            Encoding::MsgPack.decode(&message.payload).expect("status");
        assert_eq!(message.subject.as_str(), subjects::status(&status.exchange));
        seen.insert(status.exchange);
    }
    // Unchanged statuses are not repeated.
    let repeat = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(repeat.is_err(), "a status was re-sent without a change");
    shutdown.cancel();
    task.await.expect("joins");
}
