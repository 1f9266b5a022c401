//! The market-feed port: a source of ticks for the publisher.
//!
//! Implemented by the simulator and the replay source (in `pinnacle-publisher`); Angel
//! One's SmartWebSocketV2 source implements the same trait. The publisher never knows
//! which one it drives: it asks for batches, backs off on [`FeedError`], and calls
//! [`MarketFeed::reset`] when its stall watchdog fires.

use async_trait::async_trait;

use crate::model::MarketTick;

/// A feed failed; the publisher backs off and tries again.
#[derive(Debug, thiserror::Error)]
#[error("market feed error: {0}")]
pub struct FeedError(pub String);

/// A source of ticks.
#[async_trait]
pub trait MarketFeed: Send + std::fmt::Debug {
    /// Short name for logs, e.g. `sim`.
    fn name(&self) -> &'static str;

    /// Waits for and returns the next batch of ticks; an empty batch means nothing new.
    /// Sequence numbers are the feed's to keep: they survive NATS reconnects.
    async fn next_batch(&mut self) -> Result<Vec<MarketTick>, FeedError>;

    /// Called when no batch arrived for the stall timeout: a live source reconnects and
    /// resubscribes. The default does nothing.
    async fn reset(&mut self) -> Result<(), FeedError> {
        Ok(())
    }

    /// The last price of every instrument whose market is closed now, as ticks that carry
    /// no trade: what the publisher's last-value cache serves before the open (the
    /// previous close), so that a client or the paper broker started out of hours has a
    /// price. They are not published as ticks. The default has none.
    async fn closing_prices(&mut self) -> Vec<MarketTick> {
        Vec::new()
    }

    /// Takes a batch back once it has been published, so the feed can overwrite it in
    /// place next time instead of allocating a new one (the simulator does). The default
    /// drops it.
    fn recycle(&mut self, batch: Vec<MarketTick>) {
        drop(batch);
    }
}

/// One feed driven by successive publisher incarnations (see [`crate::supervise`]): the
/// feed's connection, sequence numbers and simulation state outlive a rebuilt NATS
/// connection. Clones share the feed; one batch is read at a time.
#[derive(Debug, Clone)]
pub struct SharedFeed {
    /// The feed's own name, readable without the lock.
    name: &'static str,
    /// The feed; a cancelled `next_batch` releases it.
    feed: std::sync::Arc<tokio::sync::Mutex<Box<dyn MarketFeed>>>,
}

impl SharedFeed {
    /// Shares `feed`.
    pub fn new(feed: Box<dyn MarketFeed>) -> Self {
        Self {
            name: feed.name(),
            feed: std::sync::Arc::new(tokio::sync::Mutex::new(feed)),
        }
    }
}

#[async_trait]
impl MarketFeed for SharedFeed {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn next_batch(&mut self) -> Result<Vec<MarketTick>, FeedError> {
        self.feed.lock().await.next_batch().await
    }

    async fn reset(&mut self) -> Result<(), FeedError> {
        self.feed.lock().await.reset().await
    }

    async fn closing_prices(&mut self) -> Vec<MarketTick> {
        self.feed.lock().await.closing_prices().await
    }

    /// Hands the batch on when the feed is free; otherwise it is only dropped.
    fn recycle(&mut self, batch: Vec<MarketTick>) {
        if let Ok(mut feed) = self.feed.try_lock() {
            feed.recycle(batch);
        }
    }
}
