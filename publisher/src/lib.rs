//! The market-data publisher: a feed source → ticks on `md.tick.<EXCHANGE>.<SYMBOL>`.
//!
//! # Layout
//! - [`sim`]: the simulated feed, a deterministic seedable random walk.
//! - [`run`]: the publishing loop; it takes any [`MarketFeed`] and a shutdown token.
//!
//! Platform-wide Angel One credentials come only from `ANGEL_ONE_*` environment variables
//! (`pinnacle_common::config::AngelOneMarketDataSettings`); the simulator needs none.

pub mod sim;

use std::time::Duration;

use pinnacle_common::codec::Encoding;
use pinnacle_common::feed::MarketFeed;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;

/// The publisher stopped for a reason other than shutdown.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// A tick could not be encoded.
    #[error(transparent)]
    Codec(#[from] pinnacle_common::codec::CodecError),
}

/// Publishes every tick `feed` produces until `shutdown` fires.
///
/// Core NATS publishing never waits for subscribers, so a slow subscriber cannot stall
/// the feed. Feed errors are logged and retried with exponential backoff (capped at 30 s).
pub async fn run(
    client: async_nats::Client,
    mut feed: Box<dyn MarketFeed>,
    shutdown: Shutdown,
) -> Result<(), PublisherError> {
    tracing::info!(feed = feed.name(), "publisher started");
    let mut backoff = Duration::from_millis(100);
    let mut published: u64 = 0;
    loop {
        let batch = tokio::select! {
            () = shutdown.cancelled() => break,
            batch = feed.next_batch() => batch,
        };
        let ticks = match batch {
            Ok(ticks) => {
                backoff = Duration::from_millis(100);
                ticks
            }
            Err(error) => {
                tracing::warn!(%error, ?backoff, "feed error; backing off");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        for tick in &ticks {
            let payload = Encoding::MsgPack.encode(tick)?;
            let subject = subjects::tick(&tick.exchange, &tick.symbol);
            if let Err(error) = client.publish(subject, payload).await {
                // Only fails once the client is closed; keep going until shutdown says stop.
                tracing::warn!(%error, "tick publish failed");
            }
        }
        published += ticks.len() as u64;
    }
    if let Err(error) = client.flush().await {
        tracing::warn!(%error, "flush on shutdown failed");
    }
    tracing::info!(published, "publisher stopped");
    Ok(())
}
