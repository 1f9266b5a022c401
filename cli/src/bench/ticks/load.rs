//! The publishing sides of the market-data benchmark. Each runs on **its own thread** with
//! its own single-threaded runtime and its own NATS connection, so that thread's CPU time
//! (`RUSAGE_THREAD`) is exactly what publishing cost: the loop plus its client's I/O, and
//! nothing of the subscribers, which run on the benchmark's main runtime.
//!
//! - [`publisher`]: the real `pinnacle_publisher::run` loop driving a feed.
//! - [`raw`]: async-nats publishing pre-built payloads of the same size on the same
//!   subjects, the baseline.
//! - [`StampedFeed`]: a feed that emits a fixed rate of full ticks and remembers when it
//!   made each one, for the latency runs.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{ServerAddr, Subject};
use async_trait::async_trait;
use bytes::{BufMut as _, Bytes, BytesMut};
use pinnacle_common::feed::{FeedError, MarketFeed};
use pinnacle_common::model::MarketTick;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_publisher::{PublishOptions, PublisherStats};

use crate::bench::process::thread_cpu_time;

/// Messages each subscriber connection may hold unread: far more than a run sends, so
/// the client never drops (async-nats drops past its default of 65,536 under a fast
/// publisher, which would count as loss).
pub const SUBSCRIPTION_CAPACITY: usize = 1 << 22;

/// A connection for the benchmark (both sides).
pub async fn connect(servers: &[ServerAddr]) -> anyhow::Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .connect(servers.to_vec())
        .await?)
}

/// What one publishing side did.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Messages handed to NATS.
    pub messages: u64,
    /// Wall time from the first publish to the final flush.
    pub elapsed: Duration,
    /// CPU time of the publishing thread over the same span.
    pub cpu: Duration,
}

impl Sent {
    /// Messages per second of wall time.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU time per message, µs.
    pub fn cpu_per_message_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.messages.max(1) as f64
    }
}

/// Runs `work` on a new thread with a current-thread runtime; returns its result and the
/// thread's CPU time while it ran.
async fn on_own_thread<T, F, Fut>(work: F) -> anyhow::Result<(T, Duration)>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-publisher".into())
        .spawn(move || {
            let run = || -> anyhow::Result<(T, Duration)> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let before = thread_cpu_time();
                let out = runtime.block_on(work())?;
                Ok((out, thread_cpu_time().saturating_sub(before)))
            };
            // The receiver only goes away if the benchmark itself was dropped.
            let _ = done.send(run());
        })?;
    result.await?
}

/// The real publishing loop over `feed` until `shutdown`, book publishing off, writing
/// `cache`; `stats` counts what it published.
pub async fn publisher(
    servers: Vec<ServerAddr>,
    feed: Box<dyn MarketFeed>,
    cache: Arc<pinnacle_publisher::cache::LastValues>,
    stats: Arc<PublisherStats>,
    shutdown: Shutdown,
) -> anyhow::Result<Sent> {
    let counted = stats.clone();
    let (elapsed, cpu) = on_own_thread(move || async move {
        let client = connect(&servers).await?;
        let options = PublishOptions {
            cache,
            stats,
            depth: false,
            ..PublishOptions::default()
        };
        let started = Instant::now();
        pinnacle_publisher::run(client, feed, options, shutdown).await?;
        Ok(started.elapsed())
    })
    .await?;
    Ok(Sent {
        messages: counted.published.load(Ordering::Relaxed),
        elapsed,
        cpu,
    })
}

/// How raw NATS publishes.
#[derive(Debug, Clone)]
pub enum RawPace {
    /// As fast as the client takes them, for `Duration`, in whole rounds over the
    /// subjects (so every subject gets the same count).
    Flat(Duration),
    /// `per_ms` messages every millisecond for `seconds`, cycling over the subjects, each
    /// carrying the instant its batch was made (ns since `origin`) in its first 8 bytes.
    Stamped {
        per_ms: u64,
        seconds: Duration,
        origin: Instant,
    },
}

/// Raw async-nats publishing of `payload_len`-byte payloads on `subjects`.
pub async fn raw(
    servers: Vec<ServerAddr>,
    subjects: Vec<Subject>,
    payload_len: usize,
    pace: RawPace,
) -> anyhow::Result<Sent> {
    anyhow::ensure!(!subjects.is_empty(), "raw publishing needs a subject");
    let ((messages, elapsed), cpu) = on_own_thread(move || async move {
        let client = connect(&servers).await?;
        let started = Instant::now();
        let sent = match pace {
            RawPace::Flat(seconds) => {
                publish_flat(&client, &subjects, payload_len, seconds, started).await?
            }
            RawPace::Stamped {
                per_ms,
                seconds,
                origin,
            } => {
                let stamped = Stamped {
                    per_ms,
                    seconds,
                    origin,
                    started,
                };
                publish_stamped(&client, &subjects, payload_len, &stamped).await?
            }
        };
        client.flush().await?;
        Ok((sent, started.elapsed()))
    })
    .await?;
    Ok(Sent {
        messages,
        elapsed,
        cpu,
    })
}

/// As fast as the client takes them until `seconds` after `started`, in whole rounds over
/// the subjects; returns how many were sent.
async fn publish_flat(
    client: &async_nats::Client,
    subjects: &[Subject],
    payload_len: usize,
    seconds: Duration,
    started: Instant,
) -> anyhow::Result<u64> {
    let payload = Bytes::from(vec![0x5a_u8; payload_len]);
    // At least 1,000 messages between clock reads, in whole rounds.
    let repeat = 1_000usize.div_ceil(subjects.len());
    let mut sent = 0u64;
    while started.elapsed() < seconds {
        for _ in 0..repeat {
            for subject in subjects {
                client.publish(subject.clone(), payload.clone()).await?;
            }
        }
        sent += (repeat * subjects.len()) as u64;
    }
    Ok(sent)
}

/// The pace of [`publish_stamped`].
struct Stamped {
    /// Messages per millisecond.
    per_ms: u64,
    /// How long to publish, from `started`.
    seconds: Duration,
    /// What the stamps count from.
    origin: Instant,
    /// When publishing started.
    started: Instant,
}

/// `per_ms` stamped messages every millisecond, cycling over the subjects; returns how many
/// were sent.
async fn publish_stamped(
    client: &async_nats::Client,
    subjects: &[Subject],
    payload_len: usize,
    pace: &Stamped,
) -> anyhow::Result<u64> {
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut arena = BytesMut::with_capacity(64 * 1024);
    let padding = vec![0x5a_u8; payload_len.saturating_sub(8)];
    let mut next = subjects.iter().cycle();
    let mut sent = 0u64;
    while pace.started.elapsed() < pace.seconds {
        interval.tick().await;
        // Stamped when the batch exists, like the feed's ticks, so both sides
        // include the wait behind earlier messages of the same batch.
        let made = pace.origin.elapsed().as_nanos() as u64;
        for subject in next.by_ref().take(pace.per_ms as usize) {
            arena.reserve(payload_len.max(8));
            arena.put_u64_le(made);
            arena.put_slice(&padding);
            client
                .publish(subject.clone(), arena.split().freeze())
                .await?;
            sent += 1;
        }
    }
    Ok(sent)
}

/// A feed that emits `per_ms` full ticks every millisecond, cycling over its symbols
/// (each with its own contiguous sequence numbers), and records when it made each one:
/// tick number `g` (from 0) is symbol `g mod n` with sequence number `g div n + 1`.
#[derive(Debug)]
pub struct StampedFeed {
    /// Creation instant of tick `g`.
    made: Arc<Mutex<Vec<Instant>>>,
    /// Paces the batches; made on first use, on the publisher's runtime.
    interval: Option<tokio::time::Interval>,
    per_ms: u64,
    /// Ticks made so far.
    count: u64,
    /// Exchange and symbol of each instrument.
    names: Vec<(String, String)>,
    /// A full tick with empty names, copied into every tick (copying it allocates nothing).
    bare: MarketTick,
    /// The last batch, handed back to be overwritten in place.
    spare: Vec<MarketTick>,
}

impl StampedFeed {
    /// `per_ms` ticks a millisecond shaped like `template` over `names`; the creation
    /// instants go to `made`.
    pub fn new(
        made: Arc<Mutex<Vec<Instant>>>,
        per_ms: u64,
        names: Vec<(String, String)>,
        template: &MarketTick,
    ) -> Self {
        let bare = MarketTick {
            exchange: String::new(),
            symbol: String::new(),
            depth: None,
            ..template.clone()
        };
        Self {
            made,
            interval: None,
            per_ms: per_ms.max(1),
            count: 0,
            names,
            bare,
            spare: Vec::new(),
        }
    }
}

#[async_trait]
impl MarketFeed for StampedFeed {
    fn name(&self) -> &'static str {
        "bench"
    }

    async fn next_batch(&mut self) -> Result<Vec<MarketTick>, FeedError> {
        let interval = self.interval.get_or_insert_with(|| {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            interval
        });
        interval.tick().await;
        let n = self.names.len().max(1) as u64;
        let mut out = std::mem::take(&mut self.spare);
        out.truncate(self.per_ms as usize);
        let now = Instant::now();
        let mut made = self
            .made
            .lock()
            .map_err(|_| FeedError("the stamp list is poisoned".into()))?;
        for k in 0..self.per_ms as usize {
            let g = self.count;
            self.count += 1;
            made.push(now);
            let Some((exchange, symbol)) = self.names.get((g % n) as usize) else {
                return Err(FeedError("the bench feed has no symbols".into()));
            };
            let slot = out.get_mut(k);
            let (mut ex, mut sym) = slot
                .map(|s| {
                    (
                        std::mem::take(&mut s.exchange),
                        std::mem::take(&mut s.symbol),
                    )
                })
                .unwrap_or_default();
            ex.clone_from(exchange);
            sym.clone_from(symbol);
            let tick = MarketTick {
                exchange: ex,
                symbol: sym,
                seq: g / n + 1,
                ..self.bare.clone()
            };
            match out.get_mut(k) {
                Some(slot) => *slot = tick,
                None => out.push(tick),
            }
        }
        Ok(out)
    }

    fn recycle(&mut self, batch: Vec<MarketTick>) {
        self.spare = batch;
    }
}
