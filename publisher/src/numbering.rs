//! Sequence numbers that keep rising when the publisher restarts.
//!
//! Every feed counts each symbol's ticks from 1 (`seq`). A restarted publisher would count
//! from 1 again, and every reader that keeps only a tick with a higher `seq` than the one it
//! holds (the order worker's paper prices, the Python client, the console, the recipe in
//! docs/PROTOCOL.md) would ignore the new feed until it caught up with the old one: paper
//! orders filled at a price from before the restart. [`Numbered`] moves each feed's
//! numbers to start at the moment its publisher started, in microseconds since the Unix
//! epoch, so a restart is a jump forward: readers see the gap (the ticks they missed
//! meanwhile) and heal as after any other gap.
//!
//! It holds while a symbol ticks fewer than a million times a second and the clock does not
//! go back by more than the previous run lasted; the numbers stay below 2^53 (exact in
//! JavaScript and in a float64) until the year 2255.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pinnacle_common::feed::{FeedError, MarketFeed};
use pinnacle_common::model::MarketTick;

/// A feed whose sequence numbers start at its publisher's start time (see the module doc).
#[derive(Debug)]
pub struct Numbered {
    feed: Box<dyn MarketFeed>,
    /// Added to every sequence number the feed hands out.
    origin: u64,
}

impl Numbered {
    /// `feed`, numbered from now.
    pub fn new(feed: Box<dyn MarketFeed>) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros());
        Self::starting_at(feed, u64::try_from(now).unwrap_or(u64::MAX / 2))
    }

    /// `feed`, its numbers moved by `origin`.
    fn starting_at(feed: Box<dyn MarketFeed>, origin: u64) -> Self {
        Self { feed, origin }
    }

    fn renumber(&self, ticks: &mut [MarketTick]) {
        for tick in ticks {
            tick.seq = tick.seq.saturating_add(self.origin);
        }
    }
}

#[async_trait]
impl MarketFeed for Numbered {
    fn name(&self) -> &'static str {
        self.feed.name()
    }

    async fn next_batch(&mut self) -> Result<Vec<MarketTick>, FeedError> {
        let mut ticks = self.feed.next_batch().await?;
        self.renumber(&mut ticks);
        Ok(ticks)
    }

    async fn reset(&mut self) -> Result<(), FeedError> {
        self.feed.reset().await
    }

    async fn closing_prices(&mut self) -> Vec<MarketTick> {
        let mut ticks = self.feed.closing_prices().await;
        self.renumber(&mut ticks);
        ticks
    }

    /// The feed gets its batch back as it was published: a feed that reuses a batch writes
    /// every field again (the simulator does).
    fn recycle(&mut self, batch: Vec<MarketTick>) {
        self.feed.recycle(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instruments::Catalog;
    use crate::sim::{parse_symbols, SimFeed};

    fn sim() -> Box<dyn MarketFeed> {
        let symbols = parse_symbols("NSE:SBIN-EQ@800").expect("symbols");
        Box::new(SimFeed::new(
            symbols,
            &Catalog::default(),
            42,
            std::time::Duration::from_millis(1),
            false,
        ))
    }

    async fn seqs(feed: &mut Numbered, batches: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..batches {
            let batch = feed.next_batch().await.expect("batch");
            out.extend(batch.iter().map(|t| t.seq));
            feed.recycle(batch);
        }
        out
    }

    #[tokio::test]
    async fn numbers_rise_by_one_from_the_origin_through_recycled_batches() {
        let mut feed = Numbered::starting_at(sim(), 1_000);
        assert_eq!(seqs(&mut feed, 4).await, vec![1_001, 1_002, 1_003, 1_004]);
    }

    #[tokio::test]
    async fn a_later_start_numbers_above_everything_an_earlier_one_published() {
        let mut first = Numbered::new(sim());
        let last = *seqs(&mut first, 200).await.last().expect("ticks");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut second = Numbered::new(sim());
        let next = seqs(&mut second, 1).await[0];
        assert!(next > last, "restarted at {next}, after {last}");
        assert!(next < 1 << 53, "{next} is exact as a float64");
    }
}
