//! Announcements that reach a worker on the connection its orders arrive on (token
//! revocations, cache invalidations), applied before any order that came after them.
//!
//! # Why "before the next order" holds
//! The server writes a connection's messages in the order it handled them, and the client
//! hands each to its subscription's buffer as it reads it, one at a time. The user API
//! publishes an announcement and waits until the server confirms it has handled it
//! (`pinnacle_common::nats::handled_by_server`) before it replies, so an order sent
//! after that reply reaches the worker's socket after the announcement:
//! by the time the worker receives the order, the announcement already waits in its
//! [`Inbox`]. Whatever reads what an announcement changes drains the inbox first
//! ([`Inbox::drain`], which never waits), through a port of its own: the token cache
//! before it looks a token up ([`pinnacle_common::auth::Revocations`]), the engine's cache
//! before it answers a read ([`crate::engine::Announcements`]).
//!
//! A sweep every [`SWEEP`] ([`Inbox::sweep`]) applies announcements while no order comes,
//! so none waits long and the subscription's buffer never fills. What the inbox cannot see,
//! an announcement lost while the connection was down or a write made straight to the
//! database, the caches' one-second lifetime covers.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use pinnacle_common::auth::Revocations;
use pinnacle_common::invalidate::Invalidation;
use pinnacle_common::shutdown::Shutdown;

use crate::engine::Announcements;

/// How often an idle worker applies what arrived.
pub const SWEEP: Duration = Duration::from_millis(50);

/// One subject's announcements, received and not yet applied.
pub struct Inbox<T> {
    subject: &'static str,
    subscriber: Mutex<async_nats::Subscriber>,
    decode: fn(&[u8]) -> Option<T>,
}

impl<T> fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl<T> Inbox<T> {
    /// Subscribes to `subject` on `client` (the connection orders arrive on), reading each
    /// payload with `decode`; a payload it refuses is logged and skipped.
    pub async fn subscribe(
        client: &async_nats::Client,
        subject: &'static str,
        decode: fn(&[u8]) -> Option<T>,
    ) -> Result<Self, async_nats::SubscribeError> {
        let subscriber = client.subscribe(subject).await?;
        Ok(Self {
            subject,
            subscriber: Mutex::new(subscriber),
            decode,
        })
    }

    /// Applies every announcement received so far and not applied yet, oldest first,
    /// while holding the inbox: whoever drains next finds each one either still waiting or
    /// already applied, never in between. Never waits: it takes only what the client
    /// already holds, whatever the calling task's cooperative budget.
    pub fn drain(&self, mut apply: impl FnMut(T)) {
        // A panic while holding the lock left the subscriber as it was: keep using it.
        let mut subscriber = self
            .subscriber
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while let Some(Some(message)) = tokio::task::unconstrained(subscriber.next()).now_or_never()
        {
            match (self.decode)(&message.payload) {
                Some(announcement) => apply(announcement),
                None => {
                    tracing::debug!(subject = self.subject, "ignoring a malformed announcement")
                }
            }
        }
    }

    /// Applies what arrived, every [`SWEEP`], until `shutdown` fires.
    pub async fn sweep(&self, apply: impl Fn(T), shutdown: Shutdown) {
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => self.drain(&apply),
            }
        }
    }
}

/// The engine's cache takes announced changes from the inbox of `pinnacle.cache.invalidate`.
impl Announcements for Inbox<Invalidation> {
    fn apply_waiting(&self, apply: &mut dyn FnMut(Invalidation)) {
        self.drain(apply);
    }
}

/// The token cache takes announced revocations from the inbox of `pinnacle.tokens.revoked`.
impl Revocations for Inbox<String> {
    fn apply_waiting(&self, apply: &mut dyn FnMut(String)) {
        self.drain(apply);
    }
}
