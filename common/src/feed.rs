//! The market-feed port: a source of ticks for the publisher.
//!
//! The simulator implements it today; replay and Angel One's SmartWebSocketV2 come next.

use async_trait::async_trait;

use crate::model::Tick;

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
    async fn next_batch(&mut self) -> Result<Vec<Tick>, FeedError>;
}
