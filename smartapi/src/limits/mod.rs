//! SmartAPI's published rate limits (SPEC §6), enforced per client code before a request
//! leaves Pinnacle.
//!
//! # How a request gets its turn
//! 1. **The local gate.** Each (client code, [`Bucket`]) has one FIFO queue in the
//!    process. A request waits there, in arrival order, behind the requests of the same
//!    client code and bucket only: another account, or another bucket of the same
//!    account, never waits behind it.
//! 2. **The window.** The request at the head of the queue asks the windows whether one
//!    more send fits. With a [`SharedWindows`] store ([`shared::KvWindows`], the JetStream
//!    KV bucket every order worker uses) the windows are the deployment's: one budget per
//!    client code whatever the number of workers. Without one, or while the store cannot
//!    be reached, they are this process's own ([`window`], exact per process).
//! 3. **Wait or refuse.** When the window is full the head sleeps until it opens and asks
//!    again. A request that cannot be sent within [`RateLimiter::max_wait`] of its arrival
//!    (still queued, or the window opens too late) is refused with
//!    [`SmartApiErrorKind::RateLimited`](crate::SmartApiErrorKind::RateLimited) and
//!    [`SmartApiError::retry_after`], so a burst is queued and a flood gets a clear answer
//!    instead of the broker's 403.
//!
//! Metrics (labels: the bucket's [`Bucket::name`], never a client code):
//! `pinnacle_smartapi_rate_queued{bucket}`, `pinnacle_smartapi_rate_delayed_total{bucket}`,
//! `pinnacle_smartapi_rate_refused_total{bucket}`, `pinnacle_smartapi_rate_store_errors_total`
//! and `pinnacle_smartapi_rate_store_seconds`.
//!
//! Layout: `bucket` (the buckets and their published limits), [`window`] (one process's
//! windows), [`shared`] (the deployment's windows in JetStream KV), and here the queues.

mod bucket;
pub mod shared;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinnacle_metrics::metrics;
use tokio::time::Instant;

use crate::error::SmartApiError;
pub use bucket::{Bucket, Limit};
pub use shared::SharedWindows;

/// How many times [`RateLimiter::max_wait`] a request carrying a stored order may queue
/// ([`RateLimiter::stored_wait`]).
pub const STORED_WAIT_FACTOR: u32 = 10;

/// How long the head of a queue waits for the shared store before it falls back to this
/// process's windows for that request.
const STORE_TIMEOUT: Duration = Duration::from_millis(500);

type Key = (String, Bucket);

/// One (client code, bucket)'s queue.
#[derive(Debug, Default)]
struct Gate {
    /// Held by the request whose turn it is; tokio's mutex is fair, so waiters get it in
    /// arrival order.
    turn: tokio::sync::Mutex<()>,
    /// When the head last found the window opening, for the refusal of a request that
    /// timed out in the queue.
    opens_at: Mutex<Option<Instant>>,
}

impl Gate {
    fn set_opens_at(&self, at: Option<Instant>) {
        *self.opens_at.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    fn opens_in(&self) -> Duration {
        let at = *self.opens_at.lock().unwrap_or_else(|p| p.into_inner());
        at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }
}

/// How long a [`Slot`] stays good. The windows stamp a send when its slot is taken and the
/// broker counts it when it arrives, so every request's delay between the two eats into
/// the one-second window's 50 ms margin ([`window::SECOND_MS`]); a request that took
/// longer than this since its reservation has its send moved to when it is sent
/// ([`RateLimiter::renew`]).
pub const SLOT_FRESH: Duration = Duration::from_millis(30);

/// One send that [`RateLimiter::reserve`] already counted: the request that carries it
/// within [`SLOT_FRESH`] skips the queue and the windows. Only the limiter makes one, and
/// it is good for one request of its client code and bucket.
#[derive(Debug)]
#[must_use = "a reserved slot is counted in the window whether or not it is used"]
pub struct Slot {
    client_code: String,
    bucket: Bucket,
    at: Instant,
    stamp: Stamp,
}

/// Where a counted send was stamped: in the shared windows (milliseconds since the Unix
/// epoch) when they answered, and always in this process's own log (milliseconds since
/// the limiter's epoch).
#[derive(Debug, Clone, Copy)]
struct Stamp {
    shared: Option<u64>,
    local: u64,
}

impl Slot {
    /// Whether this slot was counted for `client_code`'s requests in `bucket`.
    pub fn is_for(&self, client_code: &str, bucket: Bucket) -> bool {
        self.client_code == client_code && self.bucket == bucket
    }

    /// Whether it was counted recently enough ([`SLOT_FRESH`]) to be sent in now.
    pub fn is_fresh(&self) -> bool {
        self.at.elapsed() <= SLOT_FRESH
    }
}

/// The per-client-code limiter: the local gate, and the windows (shared or local).
#[derive(Debug)]
pub struct RateLimiter {
    /// This process's sends per (client code, bucket), ms since `epoch`: the windows
    /// without a shared store, and the fallback while it cannot be reached (so they hold
    /// this process's sends either way).
    local: Mutex<HashMap<Key, Vec<u64>>>,
    /// One FIFO queue per (client code, bucket).
    gates: Mutex<HashMap<Key, Arc<Gate>>>,
    /// The deployment-wide windows, when configured.
    shared: Option<Arc<dyn SharedWindows>>,
    /// Set while the shared store fails, so the fallback is logged once per outage.
    degraded: AtomicBool,
    /// Zero of the local clock.
    epoch: Instant,
    max_wait: Duration,
}

/// Counts a request as queued for as long as it lives.
struct Queued(&'static str);

impl Queued {
    fn enter(bucket: Bucket) -> Self {
        metrics().smartapi_rate_queued(bucket.name(), 1);
        Self(bucket.name())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        metrics().smartapi_rate_queued(self.0, -1);
    }
}

impl RateLimiter {
    /// A limiter with this process's windows only, queueing a request for up to
    /// `max_wait` before refusing it.
    pub fn new(max_wait: Duration) -> Arc<Self> {
        Arc::new(Self::build(max_wait, None))
    }

    /// A limiter whose windows are `shared` by every process that uses the same store.
    pub fn with_shared(max_wait: Duration, shared: Arc<dyn SharedWindows>) -> Arc<Self> {
        Arc::new(Self::build(max_wait, Some(shared)))
    }

    fn build(max_wait: Duration, shared: Option<Arc<dyn SharedWindows>>) -> Self {
        // Every bucket's series exists from the start (at 0), so a panel over them has data.
        metrics().smartapi_rate_buckets(&Bucket::ALL.map(Bucket::name));
        Self {
            local: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            shared,
            degraded: AtomicBool::new(false),
            epoch: Instant::now(),
            max_wait,
        }
    }

    /// How long a request may queue.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// How long a request that carries an order already stored may queue:
    /// [`STORED_WAIT_FACTOR`] times [`Self::max_wait`]. Refusing it would store a
    /// rejection of an order that was never sent, and burn its client order id; its owner
    /// holds the order's lease while it waits, so nothing else sends it meanwhile.
    pub fn stored_wait(&self) -> Duration {
        self.max_wait * STORED_WAIT_FACTOR
    }

    /// [`Self::acquire`], ahead of the request itself: the send is counted now and the
    /// returned [`Slot`] lets the request go without queueing again. A caller that must
    /// not store anything the limiter could still refuse (an order) takes its slot first.
    /// A slot that is never used only wastes its place in the window; one used after
    /// [`SLOT_FRESH`] has its send moved to when it goes ([`Self::renew`]).
    pub async fn reserve(&self, client_code: &str, bucket: Bucket) -> Result<Slot, SmartApiError> {
        self.reserve_within(client_code, bucket, self.max_wait)
            .await
    }

    /// [`Self::reserve`] for a request that carries an order already stored (a resend
    /// after a renewed session or the broker's 403): it queues for up to
    /// [`Self::stored_wait`].
    pub async fn reserve_stored(
        &self,
        client_code: &str,
        bucket: Bucket,
    ) -> Result<Slot, SmartApiError> {
        self.reserve_within(client_code, bucket, self.stored_wait())
            .await
    }

    async fn reserve_within(
        &self,
        client_code: &str,
        bucket: Bucket,
        max_wait: Duration,
    ) -> Result<Slot, SmartApiError> {
        let stamp = self.acquire_within(client_code, bucket, max_wait).await?;
        Ok(Slot {
            client_code: client_code.to_string(),
            bucket,
            at: Instant::now(),
            stamp,
        })
    }

    /// Waits, in arrival order, until `client_code` may send a request in `bucket`, and
    /// counts it; or refuses it once it could not be sent within [`Self::max_wait`].
    pub async fn acquire(&self, client_code: &str, bucket: Bucket) -> Result<(), SmartApiError> {
        self.acquire_within(client_code, bucket, self.max_wait)
            .await
            .map(drop)
    }

    async fn acquire_within(
        &self,
        client_code: &str,
        bucket: Bucket,
        max_wait: Duration,
    ) -> Result<Stamp, SmartApiError> {
        let deadline = Instant::now() + max_wait;
        let gate = self.gate(client_code, bucket);
        let _queued = Queued::enter(bucket);
        let mut delayed = false;
        let _turn = match gate.turn.try_lock() {
            Ok(turn) => turn,
            Err(_) => {
                delayed = true;
                match tokio::time::timeout_at(deadline, gate.turn.lock()).await {
                    Ok(turn) => turn,
                    Err(_) => return Err(self.refuse(bucket, max_wait, gate.opens_in())),
                }
            }
        };
        loop {
            let wait = match self.take(client_code, bucket).await {
                Ok(stamp) => {
                    gate.set_opens_at(None);
                    if delayed {
                        metrics().smartapi_rate_delayed(bucket.name());
                    }
                    return Ok(stamp);
                }
                Err(wait) => wait,
            };
            let ready_at = Instant::now() + wait;
            gate.set_opens_at(Some(ready_at));
            if ready_at > deadline {
                return Err(self.refuse(bucket, max_wait, wait));
            }
            delayed = true;
            tokio::time::sleep_until(ready_at).await;
        }
    }

    /// Counts, at last, the send of a request whose reserved `slot` went stale before it
    /// was sent: its stamp moves to now ([`window::restamp`]), which never overfills a
    /// window, so it neither waits nor can be refused. Only when the stamp cannot be moved
    /// (a second or more old, or gone from the windows, or the shared store failing) does
    /// the request queue again, for up to [`Self::stored_wait`], since what it sends (a
    /// stored order) should rather wait than be refused now.
    pub async fn renew(&self, slot: Slot) -> Result<(), SmartApiError> {
        if self.restamp(&slot).await {
            return Ok(());
        }
        self.acquire_within(&slot.client_code, slot.bucket, self.stored_wait())
            .await
            .map(drop)
    }

    fn gate(&self, client_code: &str, bucket: Bucket) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry((client_code.to_string(), bucket))
            .or_default()
            .clone()
    }

    fn refuse(&self, bucket: Bucket, waited: Duration, opens_in: Duration) -> SmartApiError {
        metrics().smartapi_rate_refused(bucket.name());
        let after = if opens_in.is_zero() {
            "requests of the same client code queued ahead of it took every turn".to_string()
        } else {
            format!("the window opens in {} ms", opens_in.as_millis())
        };
        SmartApiError::limited(
            format!(
                "SmartAPI rate limit for {bucket:?}: the request could not be sent within {} ms \
                 of queueing; {after}",
                waited.as_millis(),
            ),
            opens_in,
        )
    }

    /// Counts a send if the windows have room (where it was stamped), or says how long
    /// until they do.
    async fn take(&self, client_code: &str, bucket: Bucket) -> Result<Stamp, Duration> {
        if let Some(shared) = &self.shared {
            let started = std::time::Instant::now();
            let answer =
                tokio::time::timeout(STORE_TIMEOUT, shared.take_stamped(client_code, bucket))
                    .await
                    .unwrap_or(Err(shared::RateStoreError::TimedOut(STORE_TIMEOUT)));
            metrics().smartapi_rate_store_round_trip(started.elapsed());
            match answer {
                Ok(taken) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::info!("shared SmartAPI rate windows reachable again");
                    }
                    // Keep this process's own log too, for the fallback.
                    return taken.map(|stamp| Stamp {
                        shared: Some(stamp),
                        local: self.note_local(client_code, bucket),
                    });
                }
                Err(error) => self.store_failed(&error),
            }
        }
        self.take_local(client_code, bucket).map(|local| Stamp {
            shared: None,
            local,
        })
    }

    fn store_failed(&self, error: &shared::RateStoreError) {
        metrics().smartapi_rate_store_error();
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %error,
                "shared SmartAPI rate windows unavailable; limiting per process until they return"
            );
        }
    }

    /// Moves `slot`'s send to now, in the windows it was stamped in; whether it moved.
    async fn restamp(&self, slot: &Slot) -> bool {
        let key = (slot.client_code.clone(), slot.bucket);
        let moved_locally = {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.local_now();
            let log = local.entry(key).or_default();
            window::restamp(log, slot.stamp.local, now, slot.bucket.limit()).is_some()
        };
        let (Some(from), Some(shared)) = (slot.stamp.shared, &self.shared) else {
            return moved_locally;
        };
        let moved = shared.restamp(&slot.client_code, slot.bucket, from);
        match tokio::time::timeout(STORE_TIMEOUT, moved)
            .await
            .unwrap_or(Err(shared::RateStoreError::TimedOut(STORE_TIMEOUT)))
        {
            Ok(moved) => moved.is_some(),
            Err(error) => {
                self.store_failed(&error);
                false
            }
        }
    }

    fn local_now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn take_local(&self, client_code: &str, bucket: Bucket) -> Result<u64, Duration> {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.local_now();
        let log = local.entry((client_code.to_string(), bucket)).or_default();
        match window::admit(log, now, bucket.limit()) {
            None => Ok(log.last().copied().unwrap_or(now)),
            Some(wait) => Err(Duration::from_millis(wait)),
        }
    }

    fn note_local(&self, client_code: &str, bucket: Bucket) -> u64 {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.local_now();
        let log = local.entry((client_code.to_string(), bucket)).or_default();
        window::prune(log, now, bucket.limit());
        let stamp = log.last().map_or(now, |last| now.max(*last));
        log.push(stamp);
        stamp
    }
}

#[cfg(test)]
mod tests;
