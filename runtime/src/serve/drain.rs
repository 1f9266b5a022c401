//! The drain at shutdown: stopping new deliveries and taking what the server still sends,
//! for at most [`DRAIN_WAIT`].

use std::future::Future;
use std::time::Duration;

/// How long the drain at shutdown waits for the server to confirm the unsubscribe and
/// deliver what it still held (with the server gone it never does).
pub const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Runs `drain` (unsubscribe, then take what was still delivered) for at most
/// [`DRAIN_WAIT`]: the drain ends when the server confirms the unsubscribe, and with the
/// server gone that never happens. What it did not deliver was never taken.
pub(super) async fn within_drain_wait(drain: impl Future<Output = ()>) {
    if tokio::time::timeout(DRAIN_WAIT, drain).await.is_err() {
        tracing::warn!(
            ?DRAIN_WAIT,
            "subscription not drained in time (NATS unreachable?)"
        );
    }
}
