//! Tick tracing without flooding the collector: a deterministic 1-in-N sample of ticks is
//! published inside a producer span, with `traceparent` in the message headers, so a
//! consumer can continue the trace; every other tick goes out bare (no span, no headers).

use async_nats::{Client, HeaderMap, PublishError, Subject};
use bytes::Bytes;
use pinnacle_common::telemetry;
use tracing::Instrument as _;

/// Picks every `every`-th tick (none when `every` is 0).
#[derive(Debug, Clone)]
pub struct Sampler {
    /// 1 / ratio, rounded; 0 disables tracing.
    every: u64,
    /// Ticks seen so far.
    seen: u64,
}

impl Sampler {
    /// A sampler for `ratio` (0 to 1) of ticks; anything not above 0 (or NaN) traces none.
    pub fn new(ratio: f64) -> Self {
        let every = if ratio > 0.0 {
            (1.0 / ratio.min(1.0)).round().max(1.0) as u64
        } else {
            0
        };
        Self { every, seen: 0 }
    }

    /// Whether the next tick is traced.
    pub fn sample(&mut self) -> bool {
        if self.every == 0 {
            return false;
        }
        self.seen = self.seen.wrapping_add(1);
        self.seen % self.every == 1 % self.every
    }
}

/// Publishes one tick inside a root producer span and carries its context in the headers.
pub async fn publish_traced(
    client: &Client,
    subject: Subject,
    payload: Bytes,
) -> Result<(), PublishError> {
    let span = tracing::info_span!(
        parent: None,
        "md.tick.publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %subject,
    );
    async move {
        let mut headers = HeaderMap::new();
        telemetry::inject_context(&mut headers);
        client.publish_with_headers(subject, headers, payload).await
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_one_in_n() {
        let mut off = Sampler::new(0.0);
        assert!(!(0..10_000).any(|_| off.sample()));
        let mut thousandth = Sampler::new(0.001);
        assert_eq!((0..10_000).filter(|_| thousandth.sample()).count(), 10);
        let mut all = Sampler::new(1.0);
        assert!((0..100).all(|_| all.sample()));
        assert!(!Sampler::new(f64::NAN).sample());
    }
}
