//! Serving request-reply subjects: bounded concurrency, backpressure by capacity, and a
//! graceful drain that answers every request already received before returning.
//!
//! # Two ways to serve
//! - [`serve_requests`]: one plain subscription, a permit taken before a message is read.
//!   The client library still buffers what the server pushes, so this bounds the work
//!   started, not the requests held. For services whose requests are cheap (market data).
//! - [`Member`]: a *capacity-bounded queue-group member*. NATS core queue groups are
//!   push-based (the server picks a member at random per message) and async-nats drops
//!   what overflows a full subscription buffer (a slow consumer: silent loss), so neither
//!   a permit nor a small buffer stops a saturated member from being sent requests its
//!   idle peers could serve. A member instead subscribes in *grants*: each grant is a
//!   queue subscription followed at once by `UNSUB <sid> <n>`, and the server delivers at
//!   most `n` messages on it, then removes it from the group by itself (nats-server counts
//!   deliveries under the connection's lock and passes a message over-max to another
//!   member). async-nats ends the grant's stream after exactly those `n` messages, so
//!   nothing the server sent is dropped. A member opens grants only for room it has
//!   (held + outstanding grants ≤ [`Capacity::bound`]), and opens the next one as soon as
//!   that leaves [`Capacity::min_grant`] free, before the current ones run out. When its
//!   grants run out with less room than that, it has *left* the group: the server routes
//!   new requests only to members with capacity (or, with none, answers the requester
//!   "no responders" at once). It *rejoins* when it has drained to the low-water mark.
//!   docs/ARCHITECTURE.md ("Readiness and backpressure") has the argument and the limits.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_nats::{Client, Message, Subscriber};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::shutdown::Shutdown;

/// How long the drain at shutdown waits for the server to confirm the unsubscribe and
/// deliver what it still held (with the server gone it never does).
pub const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Runs `handle` for every message on `subscription`, at most `concurrency` at a time,
/// until `shutdown` fires; then stops new deliveries (for at most [`DRAIN_WAIT`]) and
/// finishes what was received.
///
/// async-nats 0.51 forgets a draining subscription one read after writing the UNSUB rather
/// than at the PONG, so a request routed here in that instant can go unanswered; clients
/// retry on timeout (idempotently, for orders).
pub async fn serve_requests<F, Fut>(
    mut subscription: Subscriber,
    concurrency: usize,
    shutdown: Shutdown,
    handle: F,
) where
    F: Fn(Message) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    loop {
        // Capacity first: a request is taken off the subscription only when it can start.
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
        };
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = subscription.next() => message,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {
                drop(permit);
                continue;
            }
        };
        let Some(message) = message else { break };
        let work = handle(message);
        in_flight.spawn(async move {
            work.await;
            drop(permit);
        });
    }
    // The drain ends when the server confirms the unsubscribe: with the server gone that
    // never happens, so it gets DRAIN_WAIT; what it did not deliver was never taken.
    let drained = tokio::time::timeout(DRAIN_WAIT, async {
        if let Err(error) = subscription.drain().await {
            tracing::warn!(%error, "drain failed");
        }
        while let Some(message) = subscription.next().await {
            in_flight.spawn(handle(message));
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            ?DRAIN_WAIT,
            "subscription not drained in time (NATS unreachable?)"
        );
    }
    while in_flight.join_next().await.is_some() {}
}

/// A queue group to serve with bounded capacity: which subject, which group, on which
/// connection.
#[derive(Debug, Clone)]
pub struct QueueGroup {
    /// The connection the grants subscribe on (replies go out on the handler's own).
    pub client: Client,
    /// The subject (may hold wildcards), e.g. `orders.>`.
    pub subject: String,
    /// The queue group, e.g. `order-workers`.
    pub queue: String,
}

/// How much a member may hold: `concurrency` requests running plus `queue` waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Requests handled at once.
    pub concurrency: usize,
    /// Requests received and waiting for a free slot.
    pub queue: usize,
}

impl Capacity {
    /// The most requests this member ever holds (received, not yet answered); the server
    /// never delivers more.
    pub fn bound(self) -> usize {
        self.concurrency.max(1) + self.queue
    }

    /// The smallest grant opened (a quarter of the bound, at least 1): a member opens a
    /// grant whenever what it holds plus what it has been granted leaves that much room,
    /// so it rejoins the group once it holds at most `bound - min_grant` requests (the
    /// low-water mark).
    pub fn min_grant(self) -> usize {
        (self.bound() / 4).max(1)
    }
}

/// What one member did, for metrics and tests. Shared with the serving loop.
#[derive(Debug, Default)]
pub struct Pressure {
    /// Requests received and not yet answered (queued and running).
    held: AtomicUsize,
    /// The most ever held at once.
    peak_held: AtomicUsize,
    /// Requests received and waiting for a free slot.
    queued: AtomicUsize,
    /// Times the member left the group because its grants ran out with no room for more.
    left: AtomicU64,
    /// Times it came back.
    rejoined: AtomicU64,
    /// Requests received in all.
    received: AtomicU64,
}

impl Pressure {
    /// Requests received and not yet answered.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
    /// The most requests ever held at once.
    pub fn peak_held(&self) -> usize {
        self.peak_held.load(Ordering::Relaxed)
    }
    /// Requests waiting for a free slot.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
    /// Times the member left the queue group.
    pub fn left(&self) -> u64 {
        self.left.load(Ordering::Relaxed)
    }
    /// Times it rejoined.
    pub fn rejoined(&self) -> u64 {
        self.rejoined.load(Ordering::Relaxed)
    }
    /// Requests received in all.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// One grant: a queue subscription the server auto-unsubscribes after `size` messages
/// (`UNSUB <sid> <size>`), so its stream ends after exactly the messages it was sent.
#[derive(Debug)]
struct Grant {
    subscriber: Subscriber,
    /// Messages the server may still deliver on it.
    remaining: usize,
}

/// A capacity-bounded member of a queue group (see the module docs).
#[derive(Debug)]
pub struct Member {
    group: QueueGroup,
    capacity: Capacity,
    pressure: Arc<Pressure>,
    /// Which series of `pinnacle_queue_*` it updates, e.g. `order-worker`.
    label: &'static str,
    grants: Vec<Grant>,
}

/// How long to wait before opening a grant again after NATS refused one.
const GRANT_RETRY: Duration = Duration::from_millis(100);

impl Member {
    /// Joins `group` with a first grant of the whole bound; the member receives requests
    /// once [`Member::serve`] runs (the server holds them meanwhile, up to the grant). It
    /// counts what it does in `pressure` (and in the `pinnacle_queue_*` series `label`).
    pub async fn join(
        group: QueueGroup,
        capacity: Capacity,
        label: &'static str,
        pressure: Arc<Pressure>,
    ) -> Result<Self, GrantError> {
        let mut member = Self {
            group,
            capacity,
            pressure,
            label,
            grants: Vec::new(),
        };
        member.open_grant(capacity.bound()).await?;
        let m = crate::metrics::metrics();
        m.queue_depth.with_label_values(&[label]);
        for change in ["left", "rejoined"] {
            m.queue_group_changes.with_label_values(&[label, change]);
        }
        Ok(member)
    }

    /// The member's counters.
    pub fn pressure(&self) -> Arc<Pressure> {
        self.pressure.clone()
    }

    async fn open_grant(&mut self, size: usize) -> Result<(), GrantError> {
        let mut subscriber = self
            .group
            .client
            .queue_subscribe(self.group.subject.clone(), self.group.queue.clone())
            .await
            .map_err(|e| GrantError(e.to_string()))?;
        subscriber
            .unsubscribe_after(size as u64)
            .await
            .map_err(|e| GrantError(e.to_string()))?;
        self.grants.push(Grant {
            subscriber,
            remaining: size,
        });
        Ok(())
    }

    /// Messages the server may still deliver on every open grant.
    fn credit(&self) -> usize {
        self.grants.iter().map(|g| g.remaining).sum()
    }

    /// Runs `handle` for every request, at most `concurrency` at a time, holding at most
    /// the bound, until `shutdown` fires; then stops new deliveries (for at most
    /// [`DRAIN_WAIT`]) and answers everything received before returning.
    pub async fn serve<F, Fut>(mut self, shutdown: Shutdown, handle: F)
    where
        F: Fn(Message) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let concurrency = self.capacity.concurrency.max(1);
        let bound = self.capacity.bound();
        let min_grant = self.capacity.min_grant();
        let metrics = crate::metrics::metrics();
        let depth = metrics.queue_depth.with_label_values(&[self.label]);
        let left = metrics
            .queue_group_changes
            .with_label_values(&[self.label, "left"]);
        let rejoined = metrics
            .queue_group_changes
            .with_label_values(&[self.label, "rejoined"]);
        let mut queue: VecDeque<Message> = VecDeque::new();
        let mut in_flight = JoinSet::new();
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut out_of_group = false;
        loop {
            // Start what the free slots allow.
            while in_flight.len() < concurrency {
                let Some(message) = queue.pop_front() else {
                    break;
                };
                in_flight.spawn(handle(message));
            }
            self.publish_counts(queue.len(), in_flight.len(), &depth);
            // A grant for the room there is, before the open ones run out.
            let held = queue.len() + in_flight.len();
            let free = bound.saturating_sub(held + self.credit());
            if free >= min_grant && retry_at.is_none() {
                match self.open_grant(free).await {
                    Ok(()) => {
                        if out_of_group {
                            out_of_group = false;
                            self.pressure.rejoined.fetch_add(1, Ordering::Relaxed);
                            rejoined.inc();
                            tracing::debug!(subject = %self.group.subject, held, "rejoined the queue group");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, subject = %self.group.subject, "could not open a grant; retrying");
                        retry_at = Some(tokio::time::Instant::now() + GRANT_RETRY);
                    }
                }
                continue;
            }
            let has_grants = !self.grants.is_empty();
            tokio::select! {
                () = shutdown.cancelled() => break,
                (index, message) = next_message(&mut self.grants), if has_grants => {
                    match message {
                        Some(message) => {
                            self.grants[index].remaining = self.grants[index].remaining.saturating_sub(1);
                            self.pressure.received.fetch_add(1, Ordering::Relaxed);
                            queue.push_back(message);
                        }
                        None => {
                            let grant = self.grants.swap_remove(index);
                            if grant.remaining > 0 {
                                tracing::debug!(remaining = grant.remaining, "a grant ended early (connection lost?)");
                            }
                            if self.grants.is_empty() {
                                out_of_group = true;
                                self.pressure.left.fetch_add(1, Ordering::Relaxed);
                                left.inc();
                                tracing::debug!(subject = %self.group.subject, held = queue.len() + in_flight.len(), "left the queue group: at capacity");
                            }
                        }
                    }
                }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
            }
        }
        // Stop new deliveries, keep what was sent: the drain ends when the server has
        // confirmed the unsubscribe; with the server gone that never happens, so it gets
        // DRAIN_WAIT.
        let mut grants = std::mem::take(&mut self.grants);
        let drained = tokio::time::timeout(DRAIN_WAIT, async {
            for grant in &mut grants {
                if let Err(error) = grant.subscriber.drain().await {
                    tracing::warn!(%error, "drain failed");
                }
            }
            for grant in &mut grants {
                while let Some(message) = grant.subscriber.next().await {
                    self.pressure.received.fetch_add(1, Ordering::Relaxed);
                    queue.push_back(message);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?DRAIN_WAIT,
                "subscription not drained in time (NATS unreachable?)"
            );
        }
        // Every request received is answered, at the same concurrency.
        loop {
            while in_flight.len() < concurrency {
                let Some(message) = queue.pop_front() else {
                    break;
                };
                in_flight.spawn(handle(message));
            }
            self.publish_counts(queue.len(), in_flight.len(), &depth);
            if in_flight.join_next().await.is_none() {
                break;
            }
        }
        self.publish_counts(0, 0, &depth);
    }

    fn publish_counts(&self, queued: usize, running: usize, depth: &prometheus::IntGauge) {
        let held = queued + running;
        self.pressure.held.store(held, Ordering::Relaxed);
        self.pressure.peak_held.fetch_max(held, Ordering::Relaxed);
        self.pressure.queued.store(queued, Ordering::Relaxed);
        depth.set(i64::try_from(queued).unwrap_or(i64::MAX));
    }
}

/// NATS refused a grant (the connection is closed or its handler is gone).
#[derive(Debug, thiserror::Error)]
#[error("could not subscribe to the queue group: {0}")]
pub struct GrantError(String);

/// The next message of any grant, oldest grant first; `None` for a grant whose stream
/// ended (its last message was delivered).
async fn next_message(grants: &mut [Grant]) -> (usize, Option<Message>) {
    std::future::poll_fn(|cx| {
        for (index, grant) in grants.iter_mut().enumerate() {
            if let Poll::Ready(message) = grant.subscriber.poll_next_unpin(cx) {
                return Poll::Ready((index, message));
            }
        }
        Poll::Pending
    })
    .await
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
