//! The market-data publisher: a feed source → ticks on `md.tick.<EXCHANGE>.<SYMBOL>`, plus
//! the market-data request-reply services.
//!
//! # Layout
//! - [`sim`]: the simulated feed, a deterministic seedable random walk with tick sizes,
//!   circuits, day OHLC and a five-level book.
//! - [`replay`]: plays a JSON-lines recording of ticks or candles at a speed factor.
//! - [`angel`]: Angel One's SmartWebSocketV2 live feed and getCandleData candles, on the
//!   platform session from `ANGEL_ONE_*`.
//! - [`source`]: picks the feed (`PINNACLE_MD_FEED`) and the candle source from settings.
//! - [`numbering`]: moves a feed's sequence numbers to start at the publisher's start, so
//!   they keep rising across restarts.
//! - [`cache`]: the last-value cache behind `md.req.last`.
//! - [`filter`]: `md.tick.` subject filters with wildcards, as snapshots page by them.
//! - [`intern`]: tick and depth subjects built once per symbol for the publishing loop.
//! - [`instruments`]: the instrument master (OpenAPIScripMaster.json) and its indexes.
//! - [`calendar`]: exchange hours in IST and the holiday calendar → market status.
//! - [`exchange`]: the exchange a request names, checked the same way by every verb.
//! - [`candles`]: Angel One intervals, range limits, simulated history.
//! - [`service`]: `md.req.>` request-reply (last, snapshot, candles, symbols, status),
//!   registered with the NATS micro services API as `pinnacle-market-data`.
//! - [`snapshot`]: `md.req.snapshot`, the latest tick of many symbols plus every
//!   exchange's status in one reply (late subscribers, gap healing).
//! - [`status`]: publishes `md.status.<EXCHANGE>` on every change.
//! - [`trace`]: which ticks are traced (a ratio) and their producer spans.
//! - [`run`]: the publishing loop; it takes any [`MarketFeed`] and a shutdown token.
//!   `outlet` is its per-tick half: one batch onto `md.tick.*` and `md.depth.*`.
//!
//! Platform-wide Angel One credentials come only from `ANGEL_ONE_*` environment variables
//! (`pinnacle_common::config::AngelOneMarketDataSettings`); the simulator needs none.

pub mod angel;
pub mod cache;
pub use pinnacle_common::calendar;
pub mod candles;
pub mod exchange;
pub mod filter;
pub mod instruments;
pub mod intern;
pub mod numbering;
mod outlet;
pub mod replay;
pub mod service;
pub mod sim;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod trace;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::feed::MarketFeed;
use pinnacle_common::model::MarketTick;
use pinnacle_common::shutdown::Shutdown;

use crate::cache::LastValues;
use crate::outlet::Outlet;

/// The publisher stopped for a reason other than shutdown.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// A tick could not be encoded.
    #[error(transparent)]
    Codec(#[from] pinnacle_common::codec::CodecError),
}

/// Counters a test or an operator can read while the loop runs.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Ticks handed to NATS.
    pub published: AtomicU64,
    /// Ticks not sent because NATS was disconnected (their sequence numbers are spent, so
    /// subscribers see the gap).
    pub dropped_disconnected: AtomicU64,
    /// Feed errors (each followed by a backoff).
    pub feed_errors: AtomicU64,
    /// Times the stall watchdog fired.
    pub stalls: AtomicU64,
}

/// How the loop behaves.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Written with every batch; read by `md.req.last`.
    pub cache: Arc<LastValues>,
    /// No batch for this long → the watchdog resets the feed.
    pub stall_timeout: Duration,
    /// Also publish the book on `md.depth.*` when a tick has one.
    pub depth: bool,
    /// Live counters.
    pub stats: Arc<PublisherStats>,
    /// Fraction of ticks published inside a producer span with `traceparent` in their
    /// headers (`0` traces none; see docs/OBSERVABILITY.md).
    pub tick_trace_ratio: f64,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            cache: Arc::new(LastValues::new()),
            stall_timeout: Duration::from_secs(10),
            depth: true,
            stats: Arc::default(),
            tick_trace_ratio: 0.0,
        }
    }
}

/// Counts published ticks and remembers the newest exchange timestamp, from which
/// `pinnacle_feed_lag_seconds` is computed at scrape time.
fn record_metrics(ticks: &[MarketTick]) {
    if let Some(newest) = ticks.iter().map(|tick| tick.ts_ms).max() {
        pinnacle_common::metrics::metrics().record_ticks(ticks.len() as u64, newest);
    }
}

/// How long the publisher waits, when stopping, for NATS to take what it has sent.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// First and largest delay after a feed error.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Publishes every tick `feed` produces until `shutdown` fires.
///
/// - Core NATS publishing never waits for subscribers, so a slow subscriber cannot stall
///   the feed (NATS drops its messages and tells it, instead).
/// - While NATS is disconnected, ticks update the cache but are not queued, so the loop
///   never blocks on a full client buffer; sequence numbers belong to the feed and carry
///   on, so after the automatic reconnect subscribers see where they resumed.
/// - Feed errors back off exponentially (100 ms doubling to 30 s, reset on success).
/// - A stall watchdog resets the feed when no batch arrives within `stall_timeout`.
pub async fn run(
    client: async_nats::Client,
    mut feed: Box<dyn MarketFeed>,
    options: PublishOptions,
    shutdown: Shutdown,
) -> Result<(), PublisherError> {
    tracing::info!(feed = feed.name(), "publisher started");
    let stats = options.stats.clone();
    let mut backoff = BACKOFF_START;
    // Per tick the loop allocates nothing in the common case: subjects are built once per
    // symbol, payloads are cut from a shared arena, and the batch goes back to the feed.
    let mut outlet = Outlet::new(client.clone(), options.tick_trace_ratio, options.depth);
    let closed = feed.closing_prices().await;
    if !closed.is_empty() {
        // Out of hours: the last-value cache serves the previous close until the open.
        tracing::info!(
            symbols = closed.len(),
            "market closed: serving the previous close"
        );
        options.cache.update(&closed);
    }
    loop {
        let ticks = match next_batch(feed.as_mut(), &options, &mut backoff, &shutdown).await {
            Next::Ticks(ticks) => ticks,
            Next::Again => continue,
            Next::Stop => break,
        };
        options.cache.update(&ticks);
        if !outlet.connected() {
            stats
                .dropped_disconnected
                .fetch_add(ticks.len() as u64, Ordering::Relaxed);
            feed.recycle(ticks);
            continue;
        }
        outlet.publish(&ticks).await?;
        stats
            .published
            .fetch_add(ticks.len() as u64, Ordering::Relaxed);
        record_metrics(&ticks);
        feed.recycle(ticks);
    }
    flush_on_shutdown(&client).await;
    tracing::info!(
        published = stats.published.load(Ordering::Relaxed),
        "publisher stopped"
    );
    Ok(())
}

/// What the loop does after waiting for the feed.
enum Next {
    /// Publish this batch.
    Ticks(Vec<MarketTick>),
    /// Nothing to publish (the feed failed or stalled and was dealt with): wait again.
    Again,
    /// Shutdown fired.
    Stop,
}

/// Waits for the feed's next batch. A feed error is counted and waited out (`backoff`,
/// doubled each time and reset by a batch); a feed silent for `stall_timeout` is reset.
async fn next_batch(
    feed: &mut dyn MarketFeed,
    options: &PublishOptions,
    backoff: &mut Duration,
    shutdown: &Shutdown,
) -> Next {
    let batch = tokio::select! {
        () = shutdown.cancelled() => return Next::Stop,
        batch = tokio::time::timeout(options.stall_timeout, feed.next_batch()) => batch,
    };
    match batch {
        Ok(Ok(ticks)) => {
            *backoff = BACKOFF_START;
            Next::Ticks(ticks)
        }
        Ok(Err(error)) => {
            options.stats.feed_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, ?backoff, "feed error; backing off");
            tokio::select! {
                () = shutdown.cancelled() => return Next::Stop,
                () = tokio::time::sleep(*backoff) => {}
            }
            *backoff = (*backoff * 2).min(BACKOFF_MAX);
            Next::Again
        }
        Err(_elapsed) => {
            options.stats.stalls.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(timeout = ?options.stall_timeout, feed = feed.name(), "feed stalled; resetting it");
            if let Err(error) = feed.reset().await {
                tracing::warn!(%error, "feed reset failed");
            }
            Next::Again
        }
    }
}

/// Waits (at most [`SHUTDOWN_FLUSH`]) for NATS to take what was sent: with NATS gone a
/// flush would wait for ever.
async fn flush_on_shutdown(client: &async_nats::Client) {
    match tokio::time::timeout(SHUTDOWN_FLUSH, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "flush on shutdown failed"),
        Err(_) => tracing::warn!(
            ?SHUTDOWN_FLUSH,
            "flush on shutdown timed out (NATS unreachable?)"
        ),
    }
}
