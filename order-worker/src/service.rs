//! The subscription loop: queue-group membership, bounded concurrency, graceful drain;
//! and the side tasks a worker runs beside it (outbox relay, the announcements' sweep, the
//! engine's reconciler and square-off).

use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::config::WorkerSettings;
use pinnacle_common::invalidate::Invalidation;
use pinnacle_common::serve;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;

use crate::events::{self, Relay};
use crate::handler;
use crate::inbox::Inbox;
use crate::worker::Worker;

pub use crate::worker::{audit_log, SERVICE_NAME};

/// The worker could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Subscribing to the order subjects, or creating the events stream, failed.
    #[error("could not set up {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: &'static str,
        /// Why.
        reason: String,
    },
}

/// How long a stopping worker keeps publishing its outbox before leaving the rest to the
/// other workers' relays.
pub const RELAY_DRAIN: Duration = Duration::from_secs(5);

/// How long a stopping worker waits for NATS to take what it has sent.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Starts the outbox relay; it stops when the returned token is cancelled, which `run`
/// does after the last handler has answered, so their events go out too.
fn spawn_relay(worker: &Arc<Worker>) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let stop = Shutdown::new();
    let (w, token) = (worker.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let js = async_nats::jetstream::new(w.client().clone());
        let instance = w.engine().instance().to_string();
        Relay::woken_by(w.engine().outbox_nudge())
            .run(js, w.db().clone(), instance, token, RELAY_DRAIN)
            .await;
    });
    (stop, task)
}

/// Subscribes to token revocations and cache invalidations on the connection orders
/// arrive on (see [`crate::inbox`]): the handler and the engine's cache take what arrived
/// before each order, and a sweep applies it while none comes, until `shutdown`.
async fn listen(
    worker: &Arc<Worker>,
    shutdown: &Shutdown,
) -> Result<tokio::task::JoinHandle<()>, WorkerError> {
    let client = worker.intake();
    let failed = |subject: &'static str| {
        move |e: async_nats::SubscribeError| WorkerError::Subscribe {
            subject,
            reason: e.to_string(),
        }
    };
    let revocations = Arc::new(
        Inbox::subscribe(client, subjects::TOKENS_REVOKED, |payload| {
            std::str::from_utf8(payload).ok().map(str::to_owned)
        })
        .await
        .map_err(failed(subjects::TOKENS_REVOKED))?,
    );
    let invalidations = Arc::new(
        Inbox::subscribe(client, subjects::CACHE_INVALIDATE, |payload| {
            Invalidation::decode(payload).ok()
        })
        .await
        .map_err(failed(subjects::CACHE_INVALIDATE))?,
    );
    worker.tokens().listen(revocations.clone());
    worker.engine().listen(invalidations.clone());
    let (worker, shutdown) = (worker.clone(), shutdown.clone());
    Ok(tokio::spawn(async move {
        let forget = revocations.sweep(
            |token_id| worker.tokens().forget(&token_id),
            shutdown.clone(),
        );
        let invalidate =
            invalidations.sweep(|change| worker.engine().invalidate(&change), shutdown);
        futures::join!(forget, invalidate);
    }))
}

/// How much one worker holds: its concurrency plus its queue.
pub fn capacity(settings: &WorkerSettings) -> serve::Capacity {
    serve::Capacity {
        concurrency: settings.concurrency,
        queue: settings.queue_depth,
    }
}

/// The most requests one user may hold in a worker at least half full
/// (`PINNACLE_WORKER_SENDER_SHARE`; unset: [`serve::Capacity::sender_share`]; 0: no limit).
pub fn sender_share(settings: &WorkerSettings) -> usize {
    settings
        .sender_share
        .unwrap_or_else(|| capacity(settings).sender_share())
}

/// Serves `orders.>` in the `order-workers` queue group, holding at most
/// [`capacity`]'s bound of requests (see [`serve::Member`]), until `shutdown` fires, then
/// stops taking requests and answers every one already received before returning.
pub async fn run(worker: Arc<Worker>, shutdown: Shutdown) -> Result<(), WorkerError> {
    run_observed(worker, shutdown, Arc::default()).await
}

/// [`run`], counting the queue group's backpressure in `pressure` (for tests and tools
/// that watch one worker among several in a process).
pub async fn run_observed(
    worker: Arc<Worker>,
    shutdown: Shutdown,
    pressure: Arc<serve::Pressure>,
) -> Result<(), WorkerError> {
    events::ensure_stream(&async_nats::jetstream::new(worker.client().clone()))
        .await
        .map_err(|e| WorkerError::Subscribe {
            subject: subjects::ORDER_EVENTS_ALL,
            reason: e.to_string(),
        })?;
    let relay = spawn_relay(&worker);
    let listening = listen(&worker, &shutdown).await?;
    // Not yet ready (no price for any symbol) when the stop comes: stop without serving.
    let ready = tokio::select! {
        () = worker.engine().wait_ready() => true,
        () = shutdown.cancelled() => false,
    };
    if ready {
        serve_orders(&worker, &shutdown, pressure).await?;
    }
    let _ = listening.await;
    let (relay_stop, relay) = relay;
    relay_stop.cancel();
    let _ = relay.await;
    seal_and_flush(&worker).await;
    tracing::info!("order worker stopped");
    Ok(())
}

/// Joins the queue group and serves orders (with discovery, the reconciler and the
/// square-off beside it) until `shutdown`.
async fn serve_orders(
    worker: &Arc<Worker>,
    shutdown: &Shutdown,
    pressure: Arc<serve::Pressure>,
) -> Result<(), WorkerError> {
    let member = serve::Member::join(
        serve::QueueGroup {
            client: worker.intake().clone(),
            subject: subjects::ORDERS_ALL.to_string(),
            queue: subjects::ORDER_WORKER_QUEUE.to_string(),
        },
        capacity(worker.settings()),
        "order-worker",
        pressure,
    )
    .await
    .map_err(|e| WorkerError::Subscribe {
        subject: subjects::ORDERS_ALL,
        reason: e.to_string(),
    })?
    .with_senders(subjects::order_sender, sender_share(worker.settings()));
    // `$SRV` requests arrive, and are answered, on the intake connection too: anyone who
    // may publish there could send a header block async-nats cannot parse.
    let discovery = worker
        .micro()
        .serve(worker.intake().clone(), shutdown.clone())
        .await
        .map_err(|e| WorkerError::Subscribe {
            subject: "$SRV.>",
            reason: e.to_string(),
        })?;
    let reconciler = tokio::spawn(worker.engine().clone().run_reconciler(shutdown.clone()));
    let square_off = tokio::spawn(worker.engine().clone().run_square_off(shutdown.clone()));
    tracing::info!(subject = subjects::ORDERS_ALL, "order worker started");
    let handler_worker = worker.clone();
    member
        .serve(shutdown.clone(), move |message, admission| {
            let worker = handler_worker.clone();
            async move { handler::handle(&worker, message, admission).await }
        })
        .await;
    let _ = discovery.await;
    let _ = reconciler.await;
    let _ = square_off.await;
    Ok(())
}

/// After the last reply: seals what this worker appended to the audit chains since its
/// last checkpoint (a graceful stop leaves no unsealed link for `pinnacle audit verify`
/// to report), then waits, boundedly, for NATS to take what was sent.
async fn seal_and_flush(worker: &Worker) {
    if let Err(error) = worker.audit().checkpoint_now().await {
        tracing::warn!(%error, "audit checkpoint on shutdown failed");
    }
    // A flush waits for the server: with NATS gone it would wait for ever.
    match tokio::time::timeout(SHUTDOWN_FLUSH, worker.client().flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "flush on shutdown failed"),
        Err(_) => tracing::warn!(
            ?SHUTDOWN_FLUSH,
            "flush on shutdown timed out (NATS unreachable?)"
        ),
    }
}
