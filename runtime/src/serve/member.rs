//! [`Member`]: a capacity-bounded queue-group member that subscribes in grants (`UNSUB
//! <sid> <n>`), leaves the group when full and rejoins at the low-water mark (see
//! [`super`]'s module docs), and, given who sent each request ([`Member::with_senders`]),
//! keeps one sender from holding the room every other sender needs ([`Admission`]).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_nats::{Client, Message, Subscriber};
use futures::StreamExt;
use prometheus::{IntCounter, IntGauge};
use tokio::task::JoinSet;

use super::drain::within_drain_wait;
use super::pressure::{Capacity, Pressure};
use crate::shares::{Share, Shares};
use crate::shutdown::Shutdown;

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
    /// Its grants ran out with no room for another: it is out of the group until the next
    /// grant opens.
    out_of_group: bool,
    /// When to try opening a grant again after NATS refused one.
    retry_at: Option<tokio::time::Instant>,
    /// Who sent a request, read from its subject, and the most one sender may hold while
    /// the member is at least half full; `None`: every request is admitted.
    senders: Option<(SenderOf, usize)>,
}

/// Reads who sent a request from its subject (e.g. the user id of `orders.<USER_ID>.<verb>`);
/// `None` for a subject that names nobody.
pub type SenderOf = fn(&str) -> Option<&str>;

/// How long to wait before opening a grant again after NATS refused one.
const GRANT_RETRY: Duration = Duration::from_millis(100);

/// How a request was taken, for the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// To be served: it waited for a free slot like every other.
    Admitted,
    /// To be refused at once, without being served: the member was at least half full and
    /// its sender already held `share` of the requests it holds
    /// ([`Member::with_senders`]). Its handler answers it with a retryable refusal that
    /// touches nothing; it never waits for a slot.
    OverShare {
        /// The requests the member held from this sender.
        held: usize,
        /// The most it holds from one sender while at least half full.
        share: usize,
    },
}

/// The requests a member holds: received and waiting for a free slot, and running; and
/// the refusals being answered, which run at once, outside the slots.
struct Held {
    queue: VecDeque<(Message, Option<Share>)>,
    in_flight: JoinSet<()>,
    refusing: JoinSet<()>,
    /// Requests run at once.
    concurrency: usize,
    /// Each sender's requests held (queued and running): a request's share goes with it.
    senders: Shares,
}

impl Held {
    fn new(concurrency: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            in_flight: JoinSet::new(),
            refusing: JoinSet::new(),
            concurrency,
            senders: Shares::default(),
        }
    }

    /// Requests received and not yet answered, refusals left out while there are fewer
    /// of them than `bound`: a refusal takes microseconds and reads nothing, and counting
    /// each would close the member's grants, and so the group, under the very flood the
    /// refusals answer. Past `bound` they count, so that nothing grows without limit.
    fn len(&self, bound: usize) -> usize {
        self.queue.len() + self.in_flight.len() + self.refusing.len().saturating_sub(bound)
    }

    /// Requests admitted and not yet answered.
    fn admitted(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Queues a request to be served, with its sender's share, if known.
    fn push(&mut self, message: Message, share: Option<Share>) {
        self.queue.push_back((message, share));
    }

    /// A request from `sender` taken while the member holds what it holds, counted in its
    /// sender's share until the share is dropped; refused over its `share` only when the
    /// member is at least half full.
    fn admit(&self, sender: &str, share: usize, capacity: Capacity) -> Result<Share, Admission> {
        let most = if self.admitted() < capacity.bound() / 2 {
            usize::MAX
        } else {
            share
        };
        self.senders
            .take_below(sender, most)
            .map_err(|held| Admission::OverShare { held, share })
    }

    /// Starts what the free slots allow.
    fn start<F, Fut>(&mut self, handle: &F)
    where
        F: Fn(Message, Admission) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        while self.in_flight.len() < self.concurrency {
            let Some((message, share)) = self.queue.pop_front() else {
                break;
            };
            let served = handle(message, Admission::Admitted);
            self.in_flight.spawn(async move {
                served.await;
                drop(share);
            });
        }
    }

    /// Answers a request over its sender's share at once, outside the slots.
    fn refuse<F, Fut>(&mut self, handle: &F, message: Message, admission: Admission)
    where
        F: Fn(Message, Admission) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.refusing.spawn(handle(message, admission));
    }
}

/// A member's `pinnacle_queue_*` series.
struct Series {
    depth: IntGauge,
    left: IntCounter,
    rejoined: IntCounter,
}

impl Series {
    fn of(label: &'static str) -> Self {
        let metrics = crate::metrics::metrics();
        Self {
            depth: metrics.queue_depth.with_label_values(&[label]),
            left: metrics
                .queue_group_changes
                .with_label_values(&[label, "left"]),
            rejoined: metrics
                .queue_group_changes
                .with_label_values(&[label, "rejoined"]),
        }
    }
}

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
            out_of_group: false,
            retry_at: None,
            senders: None,
        };
        member.open_grant(capacity.bound()).await?;
        let m = crate::metrics::metrics();
        m.queue_depth.with_label_values(&[label]);
        for change in ["left", "rejoined"] {
            m.queue_group_changes.with_label_values(&[label, change]);
        }
        Ok(member)
    }

    /// Reads each request's sender with `sender_of`, so that one sender cannot hold the
    /// room every other needs: while the member holds at least half its bound, a request
    /// whose sender already holds `share` requests (by default
    /// [`Capacity::sender_share`]) is handed to the handler at once as
    /// [`Admission::OverShare`], to be refused. Without it, or with a `share` of 0, every
    /// request is [`Admission::Admitted`].
    #[must_use]
    pub fn with_senders(mut self, sender_of: SenderOf, share: usize) -> Self {
        self.senders = (share > 0).then_some((sender_of, share));
        self
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
    /// [`DRAIN_WAIT`](super::DRAIN_WAIT)) and answers everything received before returning.
    /// A request over its sender's share ([`Self::with_senders`]) is handed over at once,
    /// as [`Admission::OverShare`], for the handler to refuse.
    pub async fn serve<F, Fut>(mut self, shutdown: Shutdown, handle: F)
    where
        F: Fn(Message, Admission) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let series = Series::of(self.label);
        let bound = self.capacity.bound();
        let mut held = Held::new(self.capacity.concurrency.max(1));
        loop {
            held.start(&handle);
            self.publish_counts(held.queue.len(), held.in_flight.len(), &series.depth);
            // A grant for the room there is, before the open ones run out.
            let holds = held.len(bound);
            let free = bound.saturating_sub(holds + self.credit());
            if free >= self.capacity.min_grant() && self.retry_at.is_none() {
                self.regrant(free, holds, &series).await;
                continue;
            }
            let has_grants = !self.grants.is_empty();
            tokio::select! {
                () = shutdown.cancelled() => break,
                (index, message) = next_message(&mut self.grants), if has_grants => {
                    if let Some(message) = self.delivered(index, message, &series) {
                        self.take(message, &mut held, &handle);
                    }
                }
                Some(_) = held.in_flight.join_next(), if !held.in_flight.is_empty() => {}
                Some(_) = held.refusing.join_next(), if !held.refusing.is_empty() => {}
                () = sleep_until(self.retry_at), if self.retry_at.is_some() => self.retry_at = None,
            }
        }
        self.drain(&mut held).await;
        self.answer_all(&mut held, &handle, &series.depth).await;
    }

    /// Opens a grant of `free` while `held` requests are held: the member is (back) in the
    /// group. When NATS refuses, the next try waits [`GRANT_RETRY`].
    async fn regrant(&mut self, free: usize, held: usize, series: &Series) {
        match self.open_grant(free).await {
            Ok(()) => {
                if self.out_of_group {
                    self.out_of_group = false;
                    self.pressure.note_rejoined();
                    series.rejoined.inc();
                    tracing::debug!(subject = %self.group.subject, held, "rejoined the queue group");
                }
            }
            Err(error) => {
                tracing::warn!(%error, subject = %self.group.subject, "could not open a grant; retrying");
                self.retry_at = Some(tokio::time::Instant::now() + GRANT_RETRY);
            }
        }
    }

    /// What grant `index` delivered: a request to take, or its end (after the last one
    /// ends, the member has left the group).
    fn delivered(
        &mut self,
        index: usize,
        message: Option<Message>,
        series: &Series,
    ) -> Option<Message> {
        let Some(message) = message else {
            let grant = self.grants.swap_remove(index);
            if grant.remaining > 0 {
                tracing::debug!(
                    remaining = grant.remaining,
                    "a grant ended early (connection lost?)"
                );
            }
            if self.grants.is_empty() {
                self.out_of_group = true;
                self.pressure.note_left();
                series.left.inc();
                tracing::debug!(subject = %self.group.subject, "left the queue group: at capacity");
            }
            return None;
        };
        self.grants[index].remaining = self.grants[index].remaining.saturating_sub(1);
        self.pressure.note_received();
        Some(message)
    }

    /// Holds a request received, or hands it over at once to be refused when its sender is
    /// over its share.
    fn take<F, Fut>(&self, message: Message, held: &mut Held, handle: &F)
    where
        F: Fn(Message, Admission) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let sender = self
            .senders
            .and_then(|(sender_of, most)| sender_of(&message.subject).map(|sender| (sender, most)));
        let share = match sender.map(|(sender, most)| held.admit(sender, most, self.capacity)) {
            Some(Err(refusal)) => {
                self.pressure.note_over_share();
                held.refuse(handle, message, refusal);
                return;
            }
            admitted => admitted.and_then(Result::ok),
        };
        held.push(message, share);
    }

    /// Stops new deliveries and keeps what was sent, into `held`'s queue (for at most
    /// [`DRAIN_WAIT`](super::DRAIN_WAIT)); all of it is served.
    async fn drain(&mut self, held: &mut Held) {
        let mut grants = std::mem::take(&mut self.grants);
        let pressure = &self.pressure;
        within_drain_wait(async {
            for grant in &mut grants {
                if let Err(error) = grant.subscriber.drain().await {
                    tracing::warn!(%error, "drain failed");
                }
            }
            for grant in &mut grants {
                while let Some(message) = grant.subscriber.next().await {
                    pressure.note_received();
                    held.push(message, None);
                }
            }
        })
        .await;
    }

    /// Answers every request received, at the same concurrency.
    async fn answer_all<F, Fut>(&self, held: &mut Held, handle: &F, depth: &IntGauge)
    where
        F: Fn(Message, Admission) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            held.start(handle);
            self.publish_counts(held.queue.len(), held.in_flight.len(), depth);
            if held.in_flight.join_next().await.is_none() {
                break;
            }
        }
        while held.refusing.join_next().await.is_some() {}
        self.publish_counts(0, 0, depth);
    }

    fn publish_counts(&self, queued: usize, running: usize, depth: &IntGauge) {
        self.pressure.set_held(queued, running);
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
