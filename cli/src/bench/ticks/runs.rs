//! The runs themselves: `Bench` (what every run shares) with the publisher and raw NATS
//! sides of each measurement, and `Side`, what one side sent and its subscribers got.

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

use super::load::{self, RawPace, Sent, StampedFeed};
use super::receive::{self, Counter};

/// The exchanges the simulated symbols are spread over, in turn.
pub(super) const EXCHANGES: [&str; 5] = ["NSE", "BSE", "NFO", "MCX", "CDS"];

/// Symbol `i` (from 0) is `SIM<i+1>` on `EXCHANGES[i mod 5]`.
pub(super) fn spread(count: usize) -> Vec<SymbolSpec> {
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
pub(super) fn fan_out_filters(names: &[(String, String)]) -> Vec<String> {
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

/// One side of a run: what was sent and what each subscriber received of what it should
/// have.
#[derive(Debug)]
pub(super) struct Side {
    pub(super) sent: Sent,
    /// (received, expected) per subscriber.
    pub(super) received: Vec<(u64, u64)>,
}

impl Side {
    pub(super) fn lost(&self) -> u64 {
        self.received
            .iter()
            .map(|(got, want)| want.saturating_sub(*got))
            .sum()
    }

    pub(super) fn delivered(&self) -> u64 {
        self.received.iter().map(|(got, _)| got).sum()
    }
}

/// Everything one run needs.
pub(super) struct Bench {
    servers: Vec<ServerAddr>,
    seconds: Duration,
    specs: Vec<SymbolSpec>,
    pub(super) names: Vec<(String, String)>,
    pub(super) subjects: Vec<Subject>,
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
    pub(super) async fn publisher(
        &self,
        filters: &[String],
    ) -> anyhow::Result<(Side, Arc<LastValues>)> {
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
    pub(super) async fn raw(
        &self,
        subjects: Vec<Subject>,
        filters: &[String],
    ) -> anyhow::Result<Side> {
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
    pub(super) async fn publisher_latency(
        &self,
        rate: u64,
    ) -> anyhow::Result<(Vec<Duration>, Sent)> {
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
    pub(super) async fn raw_latency(&self, rate: u64) -> anyhow::Result<(Vec<Duration>, Sent)> {
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

impl Bench {
    /// Everything the runs share: `symbols` instruments spread over the exchanges, their
    /// subjects, and one full simulator tick (the payload raw NATS copies the size of).
    pub(super) fn prepare(
        servers: Vec<ServerAddr>,
        seconds: Duration,
        symbols: usize,
    ) -> anyhow::Result<Self> {
        let specs = spread(symbols);
        let names: Vec<(String, String)> = specs
            .iter()
            .map(|s| (s.exchange.clone(), s.symbol.clone()))
            .collect();
        let subjects = names
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
        Ok(Self {
            servers,
            seconds,
            specs,
            names,
            subjects,
            template,
            payload_len,
        })
    }

    /// The size of every tick's payload, bytes.
    pub(super) fn payload_len(&self) -> usize {
        self.payload_len
    }
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
