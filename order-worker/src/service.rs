//! The subscription loop: queue-group membership, bounded concurrency, graceful drain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::audit::AuditLog;
use pinnacle_common::broker::{Broker, BrokerError, BrokerOutcome};
use pinnacle_common::config::WorkerSettings;
use pinnacle_common::crypto::Vault;
use pinnacle_common::micro;
use pinnacle_common::serve;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;
use sea_orm::{DatabaseConnection, EntityTrait};

use crate::events::{self, Relay};
use crate::lease;
use crate::ledger;
use crate::store::{self, Ownership, Patch, TransitionError};
use crate::{handler, reconcile, squareoff};
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::OrderStatus;

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

/// Everything a request handler needs, shared by all in-flight requests.
#[derive(Debug)]
pub struct Worker {
    /// Connection used for replies.
    pub client: async_nats::Client,
    /// Users, tokens, accounts and orders.
    pub db: DatabaseConnection,
    /// Decrypts credentials and holds the token pepper.
    pub vault: Arc<Vault>,
    /// Where credential accesses are recorded before they happen.
    pub audit: AuditLog,
    /// Each broker account's latest credential generation, outside the database: a row
    /// older than it is refused (a rolled-back row).
    pub register: pinnacle_common::keystore::Register,
    /// API token rows, trusted for up to a second (revocations apply within it).
    pub tokens: pinnacle_common::auth::TokenCache,
    /// This worker instance's name (lease tokens and outbox claims start with it).
    pub instance: String,
    /// Issues leases on in-flight orders.
    pub leases: lease::Issuer,
    /// Stores the outbox's order lifecycle events in `ORDER_EVENTS`, off the request path.
    pub relay: Relay,
    /// Brokers by the name stored in `broker_accounts.broker`.
    pub brokers: HashMap<&'static str, Arc<dyn Broker>>,
    /// The paper broker's books, changed with every paper order's fills and end in the
    /// same transaction as the order (see [`crate::ledger`]).
    pub books: ledger::Books,
    /// Limits and timeouts.
    pub settings: WorkerSettings,
    /// Discovery and per-verb statistics over `$SRV.*`.
    pub micro: micro::Service,
}

/// The worker's audit log: chained, with checkpoints as `settings` say.
pub fn audit_log(
    client: &async_nats::Client,
    db: &DatabaseConnection,
    vault: &Arc<Vault>,
    settings: &WorkerSettings,
) -> AuditLog {
    AuditLog::new(
        client.clone(),
        Duration::from_millis(settings.audit_timeout_ms),
        vault.clone(),
    )
    .with_checkpoints(db.clone(), settings.audit.policy())
}

/// How long a stopping worker keeps publishing its outbox before leaving the rest to the
/// other workers' relays.
pub const RELAY_DRAIN: Duration = Duration::from_secs(5);

/// How long a stopping worker waits for NATS to take what it has sent.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// The micro-service name the workers register under.
pub const SERVICE_NAME: &str = "pinnacle-orders";

impl Worker {
    /// A worker with the given brokers registered under their names.
    pub fn new(
        client: async_nats::Client,
        db: DatabaseConnection,
        vault: Arc<Vault>,
        brokers: Vec<Arc<dyn Broker>>,
        settings: WorkerSettings,
    ) -> Self {
        let audit = audit_log(&client, &db, &vault, &settings);
        let register = pinnacle_common::keystore::Register::new(
            client.clone(),
            Duration::from_millis(settings.audit_timeout_ms),
        );
        let instance = format!("w-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let terms = lease::Terms {
            length: Duration::from_millis(settings.lease_ms.max(30)),
            grace: Duration::from_millis(settings.lease_grace_ms),
        };
        Self {
            tokens: Default::default(),
            leases: lease::Issuer::new(instance.clone(), terms),
            instance,
            relay: Relay::new(),
            client,
            db,
            vault,
            audit,
            register,
            brokers: brokers.into_iter().map(|b| (b.name(), b)).collect(),
            books: ledger::Books::new(settings.paper_cash),
            settings,
            micro: micro::Service::new(
                SERVICE_NAME,
                env!("CARGO_PKG_VERSION"),
                "Pinnacle order management: place, modify, cancel, get and list orders",
                subjects::verbs::ALL
                    .iter()
                    .map(|verb| micro::Endpoint {
                        name: verb.to_string(),
                        subject: format!("orders.*.{verb}"),
                        queue_group: subjects::ORDER_WORKER_QUEUE.to_string(),
                    })
                    .collect(),
            ),
        }
    }
}

impl Worker {
    /// The broker an account uses, if this worker has it enabled.
    pub fn broker_for(
        &self,
        account: &pinnacle_common::entities::broker_accounts::Model,
    ) -> Result<&Arc<dyn Broker>, ErrorBody> {
        self.brokers.get(account.broker.as_str()).ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::BrokerRejected,
                format!("broker {:?} is not enabled on this worker", account.broker),
            )
        })
    }

    /// Moves an order through the state machine (compare-and-set, with its event in the
    /// outbox) and wakes the relay.
    pub async fn advance(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, ErrorBody> {
        self.transition(order, to, patch, ownership)
            .await
            .map_err(transition_error)
    }

    /// [`Self::advance`] with a broker's answer that another path (the order-update stream,
    /// another worker, reconciliation after this one lost its lease) may already have
    /// recorded: losing the compare-and-set returns the order as it now stands instead of
    /// an error.
    pub async fn record_outcome(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, ErrorBody> {
        match self.transition(order, to, patch, ownership).await {
            Err(TransitionError::Conflict) => self.reload(order).await,
            other => other.map_err(transition_error),
        }
    }

    async fn transition(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, TransitionError> {
        let next = store::transition(&self.db, &self.books, order, to, patch, ownership).await?;
        self.relay.nudge();
        Ok(next)
    }

    /// Runs `call`, a broker call for the order `lease` is on, under the lease
    /// ([`lease::guard`]), inside a `broker.<operation>` client span, and counts it as
    /// `operation` on `broker`; `None` when the lease was lost and the call dropped.
    pub async fn call_broker<F>(
        &self,
        lease: &lease::Lease,
        broker: &'static str,
        operation: &'static str,
        call: F,
    ) -> Option<Result<BrokerOutcome, BrokerError>>
    where
        F: std::future::Future<Output = Result<BrokerOutcome, BrokerError>>,
    {
        let span = tracing::info_span!(
            "broker.call",
            otel.name = %format_args!("broker.{operation}"),
            otel.kind = "client",
            pinnacle.broker = broker,
            pinnacle.broker.operation = operation,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let call = tracing::Instrument::instrument(call, span.clone());
        let answer = lease::guard(&self.db, lease, self.lease_terms(), call)
            .await
            .ok()?;
        if let Err(error) = &answer {
            let code = crate::place::broker_error(error).code;
            pinnacle_common::telemetry::record_failure(&span, code.as_str());
        }
        pinnacle_common::metrics::metrics().broker_request(broker, operation, answer.is_ok());
        Some(answer)
    }

    /// The order as the database shows it now.
    pub async fn reload(&self, order: &orders::Model) -> Result<orders::Model, ErrorBody> {
        orders::Entity::find_by_id(order.id.clone())
            .one(&self.db)
            .await
            .map_err(|e| handler::internal("reloading the order", e))?
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, "the order no longer exists"))
    }

    /// The lease terms of this worker.
    pub fn lease_terms(&self) -> lease::Terms {
        self.leases.terms()
    }
}

/// The reply for a transition that could not be stored.
fn transition_error(error: TransitionError) -> ErrorBody {
    match error {
        TransitionError::Db(db) => handler::internal("updating the order", db),
        TransitionError::Corrupt(corrupt) => corrupt.into(),
        other => ErrorBody::new(ErrorCode::InvalidState, other.to_string()),
    }
}

/// Starts the outbox relay; it stops when the returned token is cancelled, which `run`
/// does after the last handler has answered, so their events go out too.
fn spawn_relay(worker: &Arc<Worker>) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let stop = Shutdown::new();
    let (w, token) = (worker.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let js = async_nats::jetstream::new(w.client.clone());
        w.relay
            .run(js, w.db.clone(), w.instance.clone(), token, RELAY_DRAIN)
            .await;
    });
    (stop, task)
}

/// Drops announced revocations from the token cache until `shutdown` fires.
async fn forget_revoked(
    worker: Arc<Worker>,
    mut revoked: async_nats::Subscriber,
    shutdown: Shutdown,
) {
    use futures::StreamExt as _;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            message = revoked.next() => match message {
                Some(message) => match std::str::from_utf8(&message.payload) {
                    Ok(token_id) => worker.tokens.forget(token_id),
                    Err(_) => tracing::debug!("ignoring a malformed revocation"),
                },
                None => break,
            },
        }
    }
}

/// Waits until every broker can serve (the paper broker: a first tick), for up to the
/// configured time; a worker that joined the queue group earlier would refuse orders.
async fn wait_ready(worker: &Worker) {
    let timeout = Duration::from_millis(worker.settings.ready_timeout_ms);
    for broker in worker.brokers.values() {
        if !broker.wait_ready(timeout).await {
            tracing::warn!(
                broker = broker.name(),
                waited_ms = worker.settings.ready_timeout_ms,
                "broker not ready; serving anyway (its orders get PRICE_UNAVAILABLE until it is)"
            );
        }
    }
}

/// How much one worker holds: its concurrency plus its queue.
pub fn capacity(settings: &WorkerSettings) -> serve::Capacity {
    serve::Capacity {
        concurrency: settings.concurrency,
        queue: settings.queue_depth,
    }
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
    events::ensure_stream(&async_nats::jetstream::new(worker.client.clone()))
        .await
        .map_err(|e| WorkerError::Subscribe {
            subject: subjects::ORDER_EVENTS_ALL,
            reason: e.to_string(),
        })?;
    let relay = spawn_relay(&worker);
    let revocations = worker
        .client
        .subscribe(subjects::TOKENS_REVOKED)
        .await
        .map_err(|e| WorkerError::Subscribe {
            subject: subjects::TOKENS_REVOKED,
            reason: e.to_string(),
        })?;
    let forgetting = tokio::spawn(forget_revoked(
        worker.clone(),
        revocations,
        shutdown.clone(),
    ));
    wait_ready(&worker).await;
    let member = serve::Member::join(
        serve::QueueGroup {
            client: worker.client.clone(),
            subject: subjects::ORDERS_ALL.to_string(),
            queue: subjects::ORDER_WORKER_QUEUE.to_string(),
        },
        capacity(&worker.settings),
        "order-worker",
        pressure,
    )
    .await
    .map_err(|e| WorkerError::Subscribe {
        subject: subjects::ORDERS_ALL,
        reason: e.to_string(),
    })?;
    let discovery = worker
        .micro
        .serve(worker.client.clone(), shutdown.clone())
        .await
        .map_err(|e| WorkerError::Subscribe {
            subject: "$SRV.>",
            reason: e.to_string(),
        })?;
    let reconciler = tokio::spawn(reconcile::run(worker.clone(), shutdown.clone()));
    let square_off = tokio::spawn(squareoff::run(worker.clone(), shutdown.clone()));
    tracing::info!(subject = subjects::ORDERS_ALL, "order worker started");
    let handler_worker = worker.clone();
    member
        .serve(shutdown, move |message| {
            let worker = handler_worker.clone();
            async move { handler::handle(&worker, message).await }
        })
        .await;
    let _ = forgetting.await;
    let (relay_stop, relay) = relay;
    relay_stop.cancel();
    let _ = relay.await;
    let _ = discovery.await;
    let _ = reconciler.await;
    let _ = square_off.await;
    // Seal what this worker appended since its last checkpoint (a graceful stop leaves
    // no unsealed link for `pinnacle audit verify` to report).
    if let Err(error) = worker.audit.checkpoint_now().await {
        tracing::warn!(%error, "audit checkpoint on shutdown failed");
    }
    // A flush waits for the server: with NATS gone it would wait for ever.
    match tokio::time::timeout(SHUTDOWN_FLUSH, worker.client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "flush on shutdown failed"),
        Err(_) => tracing::warn!(
            ?SHUTDOWN_FLUSH,
            "flush on shutdown timed out (NATS unreachable?)"
        ),
    }
    tracing::info!("order worker stopped");
    Ok(())
}
