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
}
