//! Keeping a service on NATS when its connection dies for good: the service is rebuilt on a
//! fresh connection, with every subscription, in the same process.
//!
//! # Why
//! async-nats 0.51 panicked in its connection reader on a header value with a bare `\r`
//! (nats-io/nats.rs PR #1612). Anyone who may publish to a subject a service subscribes to
//! could send one. The panic ended the spawned connection-handler task: Tokio catches it,
//! so the process ran on, but every subscription ended, every publish failed, and nothing
//! in async-nats reported it. Other malformed headers (non-UTF-8, no colon) only make
//! async-nats drop the message and reconnect, which it survives alone.
//!
//! # How
//! [`supervise`] runs a service in *incarnations*. Each one gets its own
//! [`Connections`] (a main connection and, for a service that takes requests, an intake
//! connection), a [`HandlerWatch`] on each and a child of the process's shutdown token.
//! When a watch fires, the supervisor cancels the incarnation's token (the old one
//! finishes what it can, for at most [`Policy::drain`], then is aborted), connects again
//! and starts a new incarnation right away, retrying with backoff until it succeeds or
//! shutdown fires. The dead connection's TCP socket closed with the handler, so the server
//! has already removed its subscriptions; the old incarnation leaves the queue groups of
//! its live connection as it stops (a service's drain unsubscribes first).
//!
//! The service itself needs nothing special: it must stop when its token fires, which
//! every Pinnacle service's `run` already does. Health reports every link's state
//! ([`crate::health`]); `pinnacle_nats_rebuilds_total{service}` counts rebuilds.
//!
//! # Since async-nats 0.52
//! 0.52 (PR #1673) no longer panics on a line break in a header value, the one hostile
//! input that killed the handler. The supervisor stays as a safety net for a handler that
//! ends for any other reason (async-nats giving up reconnecting, a panic not yet known);
//! docs/ARCHITECTURE.md, "Hostile headers".

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};

// The whole workaround rests on Tokio catching a panic inside async-nats's spawned task;
// with `panic = "abort"` a hostile header would end the process instead.
#[cfg(not(panic = "unwind"))]
compile_error!("Pinnacle must be built with panic = \"unwind\" (see runtime/src/supervise.rs)");

use crate::config::NatsSettings;
use crate::health::Link;
use crate::nats::{self, ConnectError, Connections, HandlerWatch, Intake};
use crate::shutdown::Shutdown;

/// A running incarnation: resolves when it has stopped.
pub type Run<E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;
/// Starting an incarnation: its subscriptions are in place when this resolves.
pub type Start<E> = Pin<Box<dyn Future<Output = Result<Run<E>, E>> + Send>>;

/// How a service is supervised: its connections and the timings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Whether requests arrive on a connection of their own ([`Connections::intake`]).
    pub intake: Intake,
    /// How long a dead incarnation may take to finish its in-flight work (database writes
    /// already under way) before it is aborted. The new one starts meanwhile.
    pub drain: Duration,
    /// After an incarnation stops on its own, how long to wait for the watch to confirm a
    /// dead connection (the subscriptions and the canary end at nearly the same moment).
    pub settle: Duration,
    /// First wait between failed attempts to rebuild; doubles up to `backoff_max`.
    pub backoff_start: Duration,
    /// Longest wait between failed attempts to rebuild.
    pub backoff_max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            intake: Intake::Own,
            drain: Duration::from_secs(30),
            settle: Duration::from_secs(1),
            backoff_start: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// One incarnation: its connections' watches, its stop token and its task.
struct Incarnation<E> {
    watch: Watches,
    stop: Shutdown,
    task: JoinHandle<Result<(), E>>,
}

/// What every incarnation of one supervised service shares.
struct Supervision {
    name: &'static str,
    settings: NatsSettings,
    link: Link,
    policy: Policy,
    shutdown: Shutdown,
}

/// Runs a service named `name` under supervision until `shutdown` fires or the service
/// stops on its own while its connection is alive.
///
/// `start(connections, stop)` sets the service up on `connections` (as `policy.intake`
/// says) and returns the future that runs it until `stop` fires. The first incarnation
/// starts before this returns (so requests sent right after are served), and its failure
/// is returned; later ones are retried.
/// The returned task ends with the service's own result; a panic in the service's
/// future is resumed there.
pub async fn supervise<E, F>(
    name: &'static str,
    settings: NatsSettings,
    link: Link,
    policy: Policy,
    shutdown: Shutdown,
    mut start: F,
) -> Result<JoinHandle<Result<(), E>>, E>
where
    E: From<ConnectError> + std::fmt::Display + Send + 'static,
    F: FnMut(Connections, Shutdown) -> Start<E> + Send + 'static,
{
    // The series exists (at 0) from the start, so a panel over it has data.
    crate::metrics::metrics()
        .nats_rebuilds
        .with_label_values(&[name]);
    let supervision = Supervision {
        name,
        settings,
        link,
        policy,
        shutdown,
    };
    let first = supervision.incarnate(&mut start).await?;
    Ok(tokio::spawn(supervision.run(first, start)))
}

impl Supervision {
    /// Keeps the service running from `current` on: each time its connection dies, a new
    /// incarnation replaces it. Ends with the service's own result, or `Ok` at shutdown.
    async fn run<E, F>(self, first: Incarnation<E>, mut start: F) -> Result<(), E>
    where
        E: From<ConnectError> + std::fmt::Display + Send + 'static,
        F: FnMut(Connections, Shutdown) -> Start<E>,
    {
        let mut current = first;
        loop {
            if let Some(outcome) = self.until_dead(current).await {
                return outcome;
            }
            self.link.mark_dead();
            crate::metrics::metrics()
                .nats_rebuilds
                .with_label_values(&[self.name])
                .inc();
            tracing::error!(
                service = self.name,
                "NATS connection handler is gone (async-nats panicked or gave up); \
                 rebuilding the connection and every subscription"
            );
            let Some(next) = self.rebuild(&mut start).await else {
                return Ok(());
            };
            current = next;
            tracing::info!(
                service = self.name,
                "service rebuilt on a new NATS connection"
            );
        }
    }

    /// Waits until the incarnation's connection dies (`None`: rebuild; the old one drains
    /// meanwhile) or it stops on its own with the connection alive (`Some`: its outcome,
    /// supervision ends).
    async fn until_dead<E>(&self, mut current: Incarnation<E>) -> Option<Result<(), E>>
    where
        E: std::fmt::Display + Send + 'static,
    {
        let ended = tokio::select! {
            joined = &mut current.task => Some(joined),
            () = current.watch.dead() => None,
        };
        let Some(joined) = ended else {
            current.stop.cancel();
            tokio::spawn(drain(self.name, current.task, self.policy.drain));
            return None;
        };
        let died = !self.shutdown.is_cancelled()
            && tokio::time::timeout(self.policy.settle, current.watch.dead())
                .await
                .is_ok();
        // Whatever the incarnation spawned besides its run future stops too.
        current.stop.cancel();
        if !died {
            self.link.detach();
            return Some(outcome(joined));
        }
        if let Ok(Err(error)) = &joined {
            tracing::warn!(service = self.name, %error, "service stopped as its NATS connection died");
        }
        None
    }

    /// A new incarnation, retried with backoff; `None` when shutdown fires first.
    async fn rebuild<E, F>(&self, start: &mut F) -> Option<Incarnation<E>>
    where
        E: From<ConnectError> + std::fmt::Display + Send + 'static,
        F: FnMut(Connections, Shutdown) -> Start<E>,
    {
        let mut backoff = self.policy.backoff_start;
        loop {
            if self.shutdown.is_cancelled() {
                self.link.detach();
                return None;
            }
            match self.incarnate(start).await {
                Ok(next) => return Some(next),
                Err(error) => {
                    tracing::warn!(service = self.name, %error, ?backoff, "rebuilding failed; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.policy.backoff_max);
                }
            }
        }
    }

    /// Connects, watches the connections and starts one incarnation.
    async fn incarnate<E, F>(&self, start: &mut F) -> Result<Incarnation<E>, E>
    where
        E: From<ConnectError> + Send + 'static,
        F: FnMut(Connections, Shutdown) -> Start<E>,
    {
        let connections =
            Connections::connect(&self.settings, self.name, self.policy.intake).await?;
        let mut watches = Vec::new();
        for (_, client) in connections.each() {
            watches.push(
                nats::watch_handler(client)
                    .await
                    .map_err(|e| ConnectError {
                        url: self.settings.url.clone(),
                        reason: format!("could not watch the connection: {e}"),
                    })?,
            );
        }
        let stop = self.shutdown.child_token();
        match start(connections.clone(), stop.clone()).await {
            Ok(run) => {
                self.link
                    .attach(connections.each().map(|(role, c)| (role, c.clone())));
                Ok(Incarnation {
                    watch: Watches(watches),
                    stop,
                    task: tokio::spawn(run),
                })
            }
            Err(error) => {
                // Whatever the partial start spawned stops with its token.
                stop.cancel();
                Err(error)
            }
        }
    }
}

/// The watches on an incarnation's connections: it is dead once any one is.
struct Watches(Vec<HandlerWatch>);

impl Watches {
    /// Resolves once any connection's handler is gone.
    async fn dead(&self) {
        futures::future::select_all(self.0.iter().map(|watch| Box::pin(watch.dead()))).await;
    }
}

/// Lets a dead incarnation finish its in-flight work, for at most `limit`.
async fn drain<E: std::fmt::Display>(
    name: &'static str,
    mut task: JoinHandle<Result<(), E>>,
    limit: Duration,
) {
    match tokio::time::timeout(limit, &mut task).await {
        Err(_) => {
            task.abort();
            tracing::warn!(
                service = name,
                ?limit,
                "the dead incarnation did not stop in time; aborted"
            );
        }
        Ok(Err(error)) if error.is_panic() => {
            tracing::error!(service = name, %error, "the dead incarnation panicked while stopping")
        }
        Ok(Ok(Err(error))) => {
            tracing::warn!(service = name, %error, "the dead incarnation stopped with an error")
        }
        Ok(_) => {}
    }
}

/// The service's own result; its panic, resumed.
fn outcome<E>(joined: Result<Result<(), E>, JoinError>) -> Result<(), E> {
    match joined {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_panic_in_a_spawned_task_is_caught_and_seen_as_a_panic() {
        let task = tokio::spawn(async { panic!("like async-nats's header assert") });
        let error = task.await.expect_err("the task panicked");
        assert!(error.is_panic());
    }
}
