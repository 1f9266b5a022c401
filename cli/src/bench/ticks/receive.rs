//! The subscribing sides of the market-data benchmark: counters that say how many
//! messages arrived (so loss is counted, never assumed), and latency collectors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pinnacle_common::codec::Encoding;
use pinnacle_common::subjects;
use tokio::task::JoinHandle;

/// A subscription counting its messages on its own task; dropping it unsubscribes.
#[derive(Debug)]
pub struct Counter {
    /// Messages received so far.
    count: Arc<AtomicU64>,
    /// The counting task (it owns the subscription).
    task: JoinHandle<()>,
}

impl Counter {
    /// Subscribes to `subject` and starts counting once the server has the interest.
    pub async fn start(client: &async_nats::Client, subject: &str) -> anyhow::Result<Self> {
        let mut sub = client.subscribe(subject.to_string()).await?;
        client.flush().await?;
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        let task = tokio::spawn(async move {
            while sub.next().await.is_some() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Self { count, task })
    }

    /// Waits until `expected` messages arrived, or the count stopped moving for a second
    /// (at most 20 s), and returns the count.
    pub async fn settle(&self, expected: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = self.count.load(Ordering::Relaxed);
        let mut still_since = Instant::now();
        loop {
            if last >= expected || Instant::now() > deadline {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.count.load(Ordering::Relaxed);
            if now != last {
                last = now;
                still_since = Instant::now();
            } else if still_since.elapsed() > Duration::from_secs(1) {
                return now;
            }
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Receives until no message came for a second (ten before the first); for each,
/// `latency(message)` gives its latency if it can be measured.
async fn collect(
    mut sub: async_nats::Subscriber,
    mut latency: impl FnMut(&async_nats::Message, Instant) -> Option<Duration>,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    let mut quiet = Duration::from_secs(10);
    while let Ok(Some(message)) = tokio::time::timeout(quiet, sub.next()).await {
        quiet = Duration::from_secs(1);
        let at = Instant::now();
        if let Some(sample) = latency(&message, at) {
            samples.push(sample);
        }
    }
    samples
}

/// Latencies of the publisher's ticks: tick `g` (symbol `g mod n`, sequence number
/// `g div n + 1`) was made at `made[g]`. Like the raw side, which reads an 8-byte stamp,
/// the subscriber reads only what it needs: the symbol from the subject and the sequence
/// number from the payload (a full decode would measure the client's decoder, and fall
/// behind at a full-market rate on two cores).
pub fn publisher_latencies(
    sub: async_nats::Subscriber,
    made: Arc<Mutex<Vec<Instant>>>,
    names: &[(String, String)],
) -> JoinHandle<Vec<Duration>> {
    let n = names.len().max(1) as u64;
    let index: HashMap<String, u64> = names
        .iter()
        .map(|(exchange, symbol)| subjects::tick(exchange, symbol))
        .zip(0..)
        .collect();
    tokio::spawn(collect(sub, move |message, at| {
        let seq = Encoding::MsgPack
            .decode::<SeqOnly>(&message.payload)
            .ok()?
            .seq;
        let i = *index.get(message.subject.as_str())?;
        let g = seq.checked_sub(1)? * n + i;
        let made_at = made.lock().ok()?.get(usize::try_from(g).ok()?).copied()?;
        Some(at.saturating_duration_since(made_at))
    }))
}

/// The one field of a tick the latency subscriber reads; the others are skipped unread.
#[derive(serde::Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// Latencies of raw messages whose first 8 bytes are ns since `origin`.
pub fn raw_latencies(sub: async_nats::Subscriber, origin: Instant) -> JoinHandle<Vec<Duration>> {
    tokio::spawn(collect(sub, move |message, at| {
        let stamp: [u8; 8] = message.payload.get(..8)?.try_into().ok()?;
        let made = Duration::from_nanos(u64::from_le_bytes(stamp));
        Some(at.duration_since(origin).saturating_sub(made))
    }))
}
