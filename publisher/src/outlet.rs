//! The per-tick half of the publishing loop: one batch of ticks onto NATS, each on its
//! interned `md.tick.*` subject (a sampled few inside a producer span), and its book on
//! `md.depth.*` when the loop publishes depth.
//!
//! Per tick nothing is allocated in the common case: subjects are built once per symbol
//! ([`SubjectTable`]) and payloads are cut from one shared [`MsgPackArena`].

use pinnacle_common::codec::{CodecError, MsgPackArena};
use pinnacle_common::model::MarketTick;

use crate::intern::SubjectTable;
use crate::trace::Sampler;

/// Where the loop's ticks go out, with the buffers it reuses between batches.
#[derive(Debug)]
pub(crate) struct Outlet {
    /// The NATS connection ticks are published on (core NATS, never waiting for readers).
    client: async_nats::Client,
    /// Tick and depth subjects, built once per symbol.
    subjects: SubjectTable,
    /// The buffer MessagePack payloads are cut from.
    arena: MsgPackArena,
    /// Picks the ticks that are traced.
    sampler: Sampler,
    /// Whether a tick's book is also published on `md.depth.*`.
    depth: bool,
}

impl Outlet {
    /// An outlet on `client`, tracing `tick_trace_ratio` of the ticks.
    pub(crate) fn new(client: async_nats::Client, tick_trace_ratio: f64, depth: bool) -> Self {
        Self {
            client,
            subjects: SubjectTable::new(),
            arena: MsgPackArena::new(),
            sampler: Sampler::new(tick_trace_ratio),
            depth,
        }
    }

    /// Whether NATS is connected (while it is not, ticks are not queued).
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes every tick of `ticks` (and its book); a failed publish is logged and the
    /// rest still go. Fails only when a tick cannot be encoded.
    pub(crate) async fn publish(&mut self, ticks: &[MarketTick]) -> Result<(), CodecError> {
        for tick in ticks {
            self.publish_tick(tick).await?;
            if self.depth {
                self.publish_depth(tick).await?;
            }
        }
        Ok(())
    }

    /// One tick on `md.tick.<EXCHANGE>.<SYMBOL>`, traced when the sampler picks it.
    #[inline]
    async fn publish_tick(&mut self, tick: &MarketTick) -> Result<(), CodecError> {
        let payload = self.arena.encode(tick)?;
        let subject = self.subjects.tick(&tick.exchange, &tick.symbol);
        let sent = if self.sampler.sample() {
            crate::trace::publish_traced(&self.client, subject, payload).await
        } else {
            self.client.publish(subject, payload).await
        };
        if let Err(error) = sent {
            tracing::warn!(%error, "tick publish failed");
        }
        Ok(())
    }

    /// The tick's book, if it has one, on `md.depth.<EXCHANGE>.<SYMBOL>`.
    #[inline]
    async fn publish_depth(&mut self, tick: &MarketTick) -> Result<(), CodecError> {
        let Some(depth) = tick.depth_message() else {
            return Ok(());
        };
        let payload = self.arena.encode(&depth)?;
        let subject = self.subjects.depth(&tick.exchange, &tick.symbol);
        if let Err(error) = self.client.publish(subject, payload).await {
            tracing::warn!(%error, "depth publish failed");
        }
        Ok(())
    }
}
