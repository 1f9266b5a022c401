//! The order worker: the paper broker following the tick stream, the paper matcher, the
//! Angel One broker with its order-update follower and session prewarming, under
//! supervision.

use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::audit::{AuditChains, AuditLog};
use pinnacle_common::config::{NatsSettings, WorkerSettings};
use pinnacle_common::crypto::Vault;
use pinnacle_common::health::Health;
use pinnacle_common::keystore::Register;
use pinnacle_common::metrics::{metrics, Component};
use pinnacle_common::nats::Connections;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::supervise::{self, Policy, Run, Start};
use pinnacle_order_worker::angel::prewarm::Prewarm;
use pinnacle_order_worker::angel::store::DbSessionStore;
use pinnacle_order_worker::angel::symbols::SymbolResolver;
use pinnacle_order_worker::angel::updates::SessionNotice;
use pinnacle_order_worker::angel::AngelOneBroker;
use pinnacle_order_worker::paper::{MarketHours, PaperBroker};
use pinnacle_order_worker::Worker;
use pinnacle_smartapi::session::{SessionManager, SessionPolicy};
use pinnacle_smartapi::RestConfig;
use sea_orm::DatabaseConnection;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::{JoinHandle, JoinSet};

use super::connect::prepare_audit_stream;
use super::lifecycle::{joined, ServiceResult};

/// Starts an order worker with the paper broker, which follows the tick stream, and the
/// paper matcher, which fills resting paper orders from it, under supervision. Its audit
/// writes go through `chains`, the process's ([`AuditChains`]: pass the same one to every
/// component of a process, a new one for a worker that stands for another process).
#[allow(clippy::too_many_arguments)]
pub async fn spawn_worker(
    tasks: &mut JoinSet<ServiceResult>,
    nats_settings: &NatsSettings,
    db: DatabaseConnection,
    vault: Arc<Vault>,
    settings: WorkerSettings,
    chains: AuditChains,
    health: &Health,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    metrics().enable(Component::OrderWorker);
    let start = move |connections: Connections, stop: Shutdown| -> Start<anyhow::Error> {
        Box::pin(start_worker(
            connections,
            db.clone(),
            vault.clone(),
            settings.clone(),
            chains.clone(),
            stop,
        ))
    };
    let supervisor = supervise::supervise(
        "pinnacle-order-worker",
        nats_settings.clone(),
        health.link("pinnacle-order-worker"),
        Policy::default(),
        shutdown,
        start,
    )
    .await?;
    tasks.spawn(async move { ("order-worker", joined(supervisor.await)) });
    Ok(())
}

/// One incarnation of the order worker on `connections` (orders arrive on the intake
/// one), until `stop` fires.
async fn start_worker(
    connections: Connections,
    db: DatabaseConnection,
    vault: Arc<Vault>,
    settings: WorkerSettings,
    chains: AuditChains,
    stop: Shutdown,
) -> anyhow::Result<Run<anyhow::Error>> {
    let client = connections.main().clone();
    prepare_audit_stream(&client, &db, "pinnacle-order-worker").await?;
    warn_if_clock_shifted(&settings);
    let hours = MarketHours::from_settings(&settings.paper_hours, settings.sim_now.clock())?;
    let paper = PaperBroker::with_ledger(db.clone(), settings.paper_cash).with_hours(hours.clone());
    let follower = paper.follow_ticks(client.clone(), stop.clone()).await?;
    // One audit writer for the worker and its Angel One session store, so the worker's
    // shutdown checkpoint seals both, on the process's chains.
    let audit = pinnacle_order_worker::service::audit_log(&client, &db, &vault, &settings)
        .with_chains(chains);
    // And one generation register (one KV watch) for both.
    let register = Register::new(
        client.clone(),
        Duration::from_millis(settings.audit_timeout_ms),
    );
    let (angel, notices) = angel_one_broker_audited(
        &client,
        &db,
        &vault,
        &settings,
        (audit.clone(), register.clone()),
    );
    let order_ws_url = settings.smartapi_order_ws_url.clone();
    let prewarm = Prewarm::from_settings(&settings);
    let angel = Arc::new(angel);
    let worker = Arc::new(
        Worker::with_audit(
            client,
            db.clone(),
            vault,
            vec![Arc::new(paper), angel.clone()],
            settings,
            (audit, register),
        )
        .with_intake(connections.intake().clone()),
    );
    spawn_angel_one_tasks(
        &worker,
        (order_ws_url, notices),
        (db, angel, prewarm),
        &stop,
    );
    // Resting paper orders fill from the tick stream.
    let matcher = tokio::spawn(pinnacle_order_worker::matcher::run(
        worker.clone(),
        hours,
        stop.clone(),
    ));
    Ok(Box::pin(run_worker(worker, follower, matcher, stop)))
}

/// Says so when `PINNACLE_WORKER_SIM_NOW` shifts the worker's session clock.
fn warn_if_clock_shifted(settings: &WorkerSettings) {
    let clock = settings.sim_now.clock();
    if !clock.is_real() {
        tracing::warn!(
            now = %clock.now_ist(),
            "PINNACLE_WORKER_SIM_NOW is set: the worker's session clock is shifted (tests only)"
        );
    }
}

/// Starts the Angel One order-update follower, the watch that follows accounts with working
/// orders, and (each when configured) session prewarming.
fn spawn_angel_one_tasks(
    worker: &Arc<Worker>,
    (order_ws_url, notices): (String, UnboundedReceiver<SessionNotice>),
    (db, angel, prewarm): (DatabaseConnection, Arc<AngelOneBroker>, Option<Prewarm>),
    stop: &Shutdown,
) {
    // Angel One order updates move live orders through the same engine.
    tokio::spawn(pinnacle_order_worker::angel::updates::run(
        worker.engine().clone(),
        order_ws_url,
        notices,
        stop.clone(),
    ));
    // Accounts with working orders are followed even when no request uses their session
    // (after a restart, or once the broker refused the socket's session).
    tokio::spawn(pinnacle_order_worker::angel::watch::run(
        worker.engine().clone(),
        db.clone(),
        angel.clone(),
        stop.clone(),
    ));
    // Angel One sessions in use are renewed before they are needed.
    if let Some(prewarm) = prewarm {
        tokio::spawn(pinnacle_order_worker::angel::prewarm::run(
            worker.engine().clone(),
            db,
            angel,
            prewarm,
            stop.clone(),
        ));
    }
}

/// Runs the worker until `stop` fires, then waits for the tick follower and the matcher.
async fn run_worker(
    worker: Arc<Worker>,
    follower: JoinHandle<()>,
    matcher: JoinHandle<Result<(), async_nats::SubscribeError>>,
    stop: Shutdown,
) -> anyhow::Result<()> {
    let result = pinnacle_order_worker::run(worker, stop).await;
    let _ = follower.await;
    match matcher.await {
        Ok(Err(error)) => tracing::error!(%error, "paper matcher could not subscribe"),
        Err(error) => tracing::error!(%error, "paper matcher panicked"),
        Ok(Ok(())) => {}
    }
    result.map_err(Into::into)
}

/// The Angel One broker for `angel_one` accounts, and the channel of sessions it uses
/// (for the order-update follower).
pub fn angel_one_broker(
    client: &async_nats::Client,
    db: &DatabaseConnection,
    vault: &Arc<Vault>,
    settings: &WorkerSettings,
) -> (AngelOneBroker, UnboundedReceiver<SessionNotice>) {
    let audit = pinnacle_order_worker::service::audit_log(client, db, vault, settings);
    let register = Register::new(
        client.clone(),
        Duration::from_millis(settings.audit_timeout_ms),
    );
    angel_one_broker_audited(client, db, vault, settings, (audit, register))
}

/// [`angel_one_broker`] recording session logins with the worker's audit log and checking
/// and advancing the worker's generation register.
pub fn angel_one_broker_audited(
    client: &async_nats::Client,
    db: &DatabaseConnection,
    vault: &Arc<Vault>,
    settings: &WorkerSettings,
    (audit, register): (AuditLog, Register),
) -> (AngelOneBroker, UnboundedReceiver<SessionNotice>) {
    let clock = settings.sim_now.clock();
    let store =
        DbSessionStore::with_register(db.clone(), vault.clone(), audit, register).with_clock(clock);
    let config = RestConfig {
        base_url: settings.smartapi_url.clone(),
        timeout: Duration::from_millis(settings.smartapi_timeout_ms.max(1)),
        ..RestConfig::default()
    };
    let symbols = SymbolResolver::new(client.clone(), Duration::from_secs(2));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // One budget per client code across every worker: the windows live in the
    // SMARTAPI_RATE KV bucket (docs/SMARTAPI.md, "Rate limits").
    let windows = pinnacle_smartapi::limits::shared::KvWindows::new(async_nats::jetstream::new(
        client.clone(),
    ));
    let limiter = pinnacle_smartapi::limits::RateLimiter::with_shared(
        pinnacle_order_worker::angel::RATE_LIMIT_WAIT,
        Arc::new(windows),
    );
    let sessions = SessionManager::new(SessionPolicy {
        clock,
        ..SessionPolicy::default()
    });
    let broker = AngelOneBroker::new(config, sessions, Arc::new(store), symbols)
        .with_limiter(limiter)
        .with_notices(tx);
    (broker, rx)
}
