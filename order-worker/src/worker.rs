//! The NATS shell's state: the [`Worker`] is an [`Engine`] plus what serving it over NATS
//! needs (the connection, the API-token cache, the micro-service statistics).

use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::audit::AuditLog;
use pinnacle_common::auth::TokenCache;
use pinnacle_common::broker::Broker;
use pinnacle_common::config::WorkerSettings;
use pinnacle_common::crypto::Vault;
use pinnacle_common::keystore::Register;
use pinnacle_common::micro;
use pinnacle_common::subjects;
use sea_orm::DatabaseConnection;

use crate::engine::Engine;
use crate::history::History;

/// The micro-service name the workers register under.
pub const SERVICE_NAME: &str = "pinnacle-orders";

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

/// One order worker: the engine, served over NATS.
#[derive(Debug)]
pub struct Worker {
    /// Does every order's work; shared with the side tasks (reconciler, square-off,
    /// matcher, order-update follower).
    engine: Arc<Engine>,
    /// Audit events leave on it; the relay publishes on it.
    client: async_nats::Client,
    /// The `events` verb's reader of `ORDER_EVENTS`, on the main connection.
    history: History,
    /// Orders and the announcements that must precede them arrive on it, and replies
    /// leave on it (the server lets a service answer a request only on the connection it
    /// came in on): the main connection unless [`Worker::with_intake`] gave one of its
    /// own.
    intake: async_nats::Client,
    /// API tokens are looked up here (a request is authenticated before the engine runs)
    /// and the outbox relay reads and deletes its rows here.
    db: DatabaseConnection,
    /// Holds the token pepper that authentication hashes with.
    vault: Arc<Vault>,
    /// The engine's audit writer, kept to seal its chains with a checkpoint on shutdown.
    audit: AuditLog,
    /// API token rows, trusted for up to a second (revocations apply within it).
    tokens: TokenCache,
    /// Discovery and per-verb statistics over `$SRV.*`.
    micro: micro::Service,
}

impl Worker {
    /// A worker with the given brokers, its own audit writer and generation register.
    pub fn new(
        client: async_nats::Client,
        db: DatabaseConnection,
        vault: Arc<Vault>,
        brokers: Vec<Arc<dyn Broker>>,
        settings: WorkerSettings,
    ) -> Self {
        let audit = audit_log(&client, &db, &vault, &settings);
        let register = Register::new(
            client.clone(),
            Duration::from_millis(settings.audit_timeout_ms),
        );
        Self::with_audit(client, db, vault, brokers, settings, (audit, register))
    }

    /// [`Worker::new`] sharing `audit` and `register` with other components of the
    /// process (the Angel One session store), so one writer serves each chain.
    pub fn with_audit(
        client: async_nats::Client,
        db: DatabaseConnection,
        vault: Arc<Vault>,
        brokers: Vec<Arc<dyn Broker>>,
        settings: WorkerSettings,
        (audit, register): (AuditLog, Register),
    ) -> Self {
        let sink: Arc<dyn crate::engine::AuditSink> = Arc::new(audit.clone());
        let engine = Engine::new(
            db.clone(),
            vault.clone(),
            (sink, Arc::new(register)),
            brokers,
            settings,
        );
        Self {
            engine: Arc::new(engine),
            intake: client.clone(),
            history: History::new(async_nats::jetstream::new(client.clone())),
            client,
            db,
            vault,
            audit,
            tokens: TokenCache::default(),
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

    /// The engine this worker serves.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Orders arrive on `intake` instead of the main connection (see
    /// [`pinnacle_common::nats::Connections`]).
    pub fn with_intake(mut self, intake: async_nats::Client) -> Self {
        self.intake = intake;
        self
    }

    /// The main NATS connection: audit events, JetStream.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Pages of order events for the `events` verb.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The connection orders and announcements arrive on, and replies leave on.
    pub fn intake(&self) -> &async_nats::Client {
        &self.intake
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &WorkerSettings {
        self.engine.settings()
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub(crate) fn vault(&self) -> &Vault {
        &self.vault
    }

    pub(crate) fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub(crate) fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    pub(crate) fn micro(&self) -> &micro::Service {
        &self.micro
    }
}
