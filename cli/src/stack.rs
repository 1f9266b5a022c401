//! Wiring: each service started from its settings, and the whole stack in one process.
//!
//! `pinnacle serve <service>` starts one of these; `pinnacle dev` and the end-to-end
//! tests start all three with [`Stack::start`]. Each service gets its own NATS
//! connection, named after it, as it would in production, and runs under
//! [`supervise`](pinnacle_common::supervise): when that connection's handler dies (an
//! async-nats panic on a hostile header), the service is rebuilt on a new connection.

use pinnacle_order_worker::angel::store::DbSessionStore;
use pinnacle_order_worker::angel::symbols::SymbolResolver;
use pinnacle_order_worker::angel::AngelOneBroker;
use pinnacle_smartapi::session::{SessionManager, SessionPolicy};
use pinnacle_smartapi::RestConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pinnacle_common::audit::{self, AuditChains, AuditLog};
use pinnacle_common::config::{
    AngelOneMarketDataSettings, AuditSettings, DatabaseSettings, MarketDataSettings,
    MetricsSettings, NatsSettings, SimFeedSettings, UserApiSettings, WorkerSettings,
};
use pinnacle_common::crypto::Vault;
use pinnacle_common::feed::SharedFeed;
use pinnacle_common::health::Health;
use pinnacle_common::metrics::{metrics, Component};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::supervise::{self, Policy, Run, Start};
use pinnacle_migrations::{Migrator, MigratorTrait};
use pinnacle_order_worker::paper::PaperBroker;
use pinnacle_order_worker::Worker;
use pinnacle_publisher::cache::LastValues;
use pinnacle_publisher::calendar::Calendar;
use pinnacle_publisher::candles::SimHistory;
use pinnacle_publisher::instruments::Catalog;
use pinnacle_publisher::service::MdService;
use pinnacle_publisher::PublishOptions;
use sea_orm::DatabaseConnection;
use tokio::task::JoinSet;

/// After the stop signal, how long the services get to finish what they hold (answer the
/// requests they took, drain the outbox, seal the audit chain, flush) before they are
/// abandoned, as a crash would leave them (docs/CONFIGURATION.md, "Stopping").
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// The documented bound: a `pinnacle serve` or `pinnacle dev` process exits at most this
/// long after SIGTERM or Ctrl-C, whatever the state of NATS or the database.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// Resolves when `signal` does, and from then on holds the process to [`SHUTDOWN_BOUND`]:
/// a watchdog thread ends it (status 1, saying so) if it is still running by then, so no
/// stuck flush, connection or exporter can keep it alive.
pub async fn bounded_stop(signal: impl std::future::Future<Output = ()>) {
    signal.await;
    tracing::info!(
        grace_s = SHUTDOWN_GRACE.as_secs(),
        bound_s = SHUTDOWN_BOUND.as_secs(),
        "stopping"
    );
    arm_watchdog(SHUTDOWN_BOUND);
}

/// Ends the process `bound` from now unless it has exited by itself.
fn arm_watchdog(bound: Duration) {
    let spawned = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            std::thread::sleep(bound);
            eprintln!(
                "error: still running {} s after the stop signal; exiting with work unfinished",
                bound.as_secs()
            );
            std::process::exit(1);
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start the shutdown watchdog");
    }
}

/// Waits for every task in `tasks` for up to [`SHUTDOWN_GRACE`], then aborts the rest;
/// the names of the services that stopped with an error, and an error when some had to be
/// abandoned.
async fn join_within_grace(tasks: &mut JoinSet<ServiceResult>) -> anyhow::Result<()> {
    let mut first_error = None;
    let joined = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(e))) => {
                    tracing::error!(service = name, error = %e, "service failed during shutdown");
                    first_error.get_or_insert(e.context(name));
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    first_error.get_or_insert(anyhow::anyhow!("a service panicked: {e}"));
                }
            }
        }
    })
    .await;
    if joined.is_err() {
        let left = tasks.len();
        tasks.abort_all();
        tracing::error!(
            services = left,
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "services did not stop within the grace; abandoned (as after a crash)"
        );
        return Err(anyhow::anyhow!(
            "{left} service(s) did not stop within {} s of the stop signal",
            SHUTDOWN_GRACE.as_secs()
        ));
    }
    first_error.map_or(Ok(()), Err)
}

/// A service task's result, tagged with its name.
pub type ServiceResult = (&'static str, anyhow::Result<()>);

/// Opens the database and applies every pending migration.
///
/// Services started together on a fresh database race to apply the migrations; the loser
/// of a race (a table or index "already exists", a lock) tries again, and then finds them
/// applied.
pub async fn database(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let db = pinnacle_common::db::connect(settings)
        .await
        .context("opening the database")?;
    let mut attempt = 1;
    loop {
        match Migrator::up(&db, None).await {
            Ok(()) => return Ok(db),
            Err(error) if attempt < MIGRATION_ATTEMPTS => {
                tracing::warn!(%error, attempt, "applying migrations failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * attempt as u64)).await;
                attempt += 1;
            }
            Err(error) => return Err(error).context("applying migrations"),
        }
    }
}

/// How long a command-line verb waits for its database before it says so.
const CLI_DATABASE_WAIT: Duration = Duration::from_secs(5);

/// [`database`] for a command-line verb: a database that does not answer within 5 s is an
/// error that names it (password redacted) and says where the setting comes from, instead
/// of a silent wait (services keep [`database`]'s longer patience).
pub async fn cli_database(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    within_cli_wait(settings, database(settings)).await
}

/// [`cli_database`] without applying migrations, for verbs that only read (`audit verify`
/// may run against a restored copy).
pub async fn cli_connect(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let connect = async {
        pinnacle_common::db::connect(settings)
            .await
            .context("opening the database")
    };
    within_cli_wait(settings, connect).await
}

async fn within_cli_wait(
    settings: &DatabaseSettings,
    open: impl std::future::Future<Output = anyhow::Result<DatabaseConnection>>,
) -> anyhow::Result<DatabaseConnection> {
    let url = pinnacle_common::config::redact_url(&settings.database_url);
    match tokio::time::timeout(CLI_DATABASE_WAIT, open).await {
        Ok(db) => db.with_context(|| {
            format!("the database at {url} (DATABASE_URL, or --env-file .pinnacle/dev.env)")
        }),
        Err(_) => anyhow::bail!(
            "the database at {url} did not answer within {} s; is it running? (set \
             DATABASE_URL, or pass --env-file .pinnacle/dev.env)",
            CLI_DATABASE_WAIT.as_secs()
        ),
    }
}

/// How often a service tries to apply the migrations before it gives up.
const MIGRATION_ATTEMPTS: u32 = 8;

/// Records the ring's keys in the database and loads which are retired; fails on a
/// ring whose key material differs from what the database knows under the same id.
pub async fn vault_ready(db: &DatabaseConnection, vault: &Vault) -> anyhow::Result<()> {
    pinnacle_common::keystore::sync_ring(db, vault)
        .await
        .context("checking the master key ring against the database")
}

/// Connects to NATS (for the one-shot commands; it creates no stream: `audit verify` must
/// see a missing AUDIT, not an empty new one).
pub async fn nats(settings: &NatsSettings, name: &str) -> anyhow::Result<async_nats::Client> {
    Ok(pinnacle_common::nats::connect(settings, name).await?)
}

/// A service's start-up check of the AUDIT stream ([`audit::prepare_stream`]). A missing
/// AUDIT that held history is logged and the service starts anyway: every credential access
/// is then refused with `AUDIT_UNAVAILABLE` ("audit stream unavailable: …") until an
/// operator restores it. Any other failure (NATS, the database) fails the start.
pub async fn prepare_audit_stream(
    client: &async_nats::Client,
    db: &DatabaseConnection,
    service: &str,
) -> anyhow::Result<()> {
    match audit::prepare_stream(&async_nats::jetstream::new(client.clone()), db).await {
        Ok(audit::Prepared::Found) => Ok(()),
        Ok(audit::Prepared::Created) => {
            tracing::info!(
                service,
                "created the audit stream (nothing was audited before)"
            );
            Ok(())
        }
        Err(error) if error.is_stream_unavailable() => {
            tracing::error!(
                service,
                %error,
                "audit stream unavailable: refusing every credential access until it is restored"
            );
            Ok(())
        }
        Err(error) => Err(error).context("preparing the audit stream"),
    }
}

/// Starts the market-data publisher: the feed loop, the `md.req.>` service and the
/// market-status announcer, each on the publisher's connection, under supervision.
///
/// The feed is `PINNACLE_MD_FEED`'s; candles come from Angel One whenever `angel` (the
/// platform's `ANGEL_ONE_*` credentials, the only ones the publisher ever reads) is set.
/// The feed and the last-value cache outlive a rebuilt connection.
pub async fn spawn_publisher(
    tasks: &mut JoinSet<ServiceResult>,
    nats_settings: &NatsSettings,
    sim: &SimFeedSettings,
    md: &MarketDataSettings,
    angel: &AngelOneMarketDataSettings,
    health: &Health,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    metrics().enable(Component::Publisher);
    let catalog = Arc::new(
        Catalog::load(md.instruments.as_deref())
            .await
            .context("loading the instrument master")?,
    );
    let calendar = Arc::new(Calendar::load(md.holidays.as_deref())?);
    let clock = sim.now.clock();
    let sources = pinnacle_publisher::source::build_sources(sim, md, angel, &catalog)?;
    tracing::info!(
        feed = sources.feed.name(),
        candles = if sources.history.is_some() {
            "angel_one"
        } else {
            "simulated"
        },
        "market-data sources"
    );
    let cache = Arc::new(LastValues::new());
    let feed = SharedFeed::new(sources.feed);
    let history = sources.history;
    let seed = sim.seed;
    let max_payload = md.max_payload;
    // One discovery identity for the process, so statistics survive a rebuilt connection.
    let micro = pinnacle_publisher::service::discovery();
    let options = PublishOptions {
        cache: cache.clone(),
        stall_timeout: Duration::from_millis(md.stall_ms.max(1)),
        depth: sim.depth,
        tick_trace_ratio: md.tick_trace_ratio,
        ..PublishOptions::default()
    };
    let start = move |client: async_nats::Client, stop: Shutdown| -> Start<anyhow::Error> {
        let service = Arc::new(MdService {
            client: client.clone(),
            cache: cache.clone(),
            catalog: catalog.clone(),
            calendar: calendar.clone(),
            history: SimHistory { seed },
            clock,
            angel: history.clone(),
            max_payload,
            micro: micro.clone(),
        });
        let (calendar, feed, options) = (calendar.clone(), feed.clone(), options.clone());
        Box::pin(async move {
            let mut parts = JoinSet::new();
            // Subscribe before returning, so requests sent right after start are answered.
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let service_stop = stop.clone();
            parts.spawn(async move {
                let result =
                    pinnacle_publisher::service::run_with_ready(service, service_stop, ready_tx)
                        .await;
                ("md-service", result.map_err(Into::into))
            });
            ready_rx
                .await
                .context("the market-data service did not start")??;
            let (status_client, status_stop) = (client.clone(), stop.clone());
            parts.spawn(async move {
                pinnacle_publisher::status::run(
                    status_client,
                    calendar,
                    clock,
                    Duration::from_secs(1),
                    status_stop,
                )
                .await;
                ("md-status", Ok(()))
            });
            let publish_stop = stop.clone();
            parts.spawn(async move {
                let result =
                    pinnacle_publisher::run(client, Box::new(feed), options, publish_stop).await;
                ("publisher", result.map_err(Into::into))
            });
            Ok(first_to_stop(parts, stop))
        })
    };
    let supervisor = supervise::supervise(
        "pinnacle-publisher",
        nats_settings.clone(),
        health.link("pinnacle-publisher"),
        Policy::default(),
        shutdown,
        start,
    )
    .await?;
    tasks.spawn(async move { ("publisher", joined(supervisor.await)) });
    Ok(())
}

/// Runs an incarnation's parts until the first one stops, then stops the others; the
/// first one's result, or an error if it stopped on its own.
fn first_to_stop(mut parts: JoinSet<ServiceResult>, stop: Shutdown) -> Run<anyhow::Error> {
    Box::pin(async move {
        let first = match parts.join_next().await {
            Some(Ok((name, result))) if stop.is_cancelled() => result.context(name),
            Some(Ok((name, Ok(())))) => Err(anyhow::anyhow!("{name} stopped unexpectedly")),
            Some(Ok((name, Err(error)))) => Err(error.context(format!("{name} failed"))),
            Some(Err(error)) => Err(anyhow::anyhow!("a service task panicked: {error}")),
            None => Ok(()),
        };
        stop.cancel();
        while parts.join_next().await.is_some() {}
        first
    })
}

/// A supervisor's result, with its panic resumed.
fn joined(result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match result {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(anyhow::anyhow!("supervisor stopped: {error}")),
    }
}

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
    let start = move |client: async_nats::Client, stop: Shutdown| -> Start<anyhow::Error> {
        Box::pin(start_worker(
            client,
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

/// One incarnation of the order worker on `client`, until `stop` fires.
async fn start_worker(
    client: async_nats::Client,
    db: DatabaseConnection,
    vault: Arc<Vault>,
    settings: WorkerSettings,
    chains: AuditChains,
    stop: Shutdown,
) -> anyhow::Result<Run<anyhow::Error>> {
    prepare_audit_stream(&client, &db, "pinnacle-order-worker").await?;
    let clock = settings.sim_now.clock();
    if !clock.is_real() {
        tracing::warn!(
            now = %clock.now_ist(),
            "PINNACLE_WORKER_SIM_NOW is set: the worker's session clock is shifted (tests only)"
        );
    }
    let paper = PaperBroker::with_ledger(db.clone(), settings.paper_cash);
    let follower = paper.follow_ticks(client.clone(), stop.clone()).await?;
    // One audit writer for the worker and its Angel One session store, so the worker's
    // shutdown checkpoint seals both, on the process's chains.
    let audit = pinnacle_order_worker::service::audit_log(&client, &db, &vault, &settings)
        .with_chains(chains);
    // And one generation register (one KV watch) for both.
    let register = pinnacle_common::keystore::Register::new(
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
    let prewarm = pinnacle_order_worker::angel::prewarm::Prewarm::from_settings(&settings);
    let angel = Arc::new(angel);
    let worker = Arc::new(Worker::with_audit(
        client,
        db.clone(),
        vault,
        vec![Arc::new(paper), angel.clone()],
        settings,
        (audit, register),
    ));
    // Angel One order updates move live orders through the same engine.
    tokio::spawn(pinnacle_order_worker::angel::updates::run(
        worker.engine().clone(),
        order_ws_url,
        notices,
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
    // Resting paper orders fill from the tick stream.
    let matcher = tokio::spawn(pinnacle_order_worker::matcher::run(
        worker.clone(),
        stop.clone(),
    ));
    Ok(Box::pin(async move {
        let result = pinnacle_order_worker::run(worker, stop).await;
        let _ = follower.await;
        match matcher.await {
            Ok(Err(error)) => tracing::error!(%error, "paper matcher could not subscribe"),
            Err(error) => tracing::error!(%error, "paper matcher panicked"),
            Ok(Ok(())) => {}
        }
        result.map_err(Into::into)
    }))
}

/// The Angel One broker for `angel_one` accounts, and the channel of sessions it uses
/// (for the order-update follower).
pub fn angel_one_broker(
    client: &async_nats::Client,
    db: &DatabaseConnection,
    vault: &Arc<Vault>,
    settings: &WorkerSettings,
) -> (
    AngelOneBroker,
    tokio::sync::mpsc::UnboundedReceiver<pinnacle_order_worker::angel::updates::SessionNotice>,
) {
    let audit = pinnacle_order_worker::service::audit_log(client, db, vault, settings);
    let register = pinnacle_common::keystore::Register::new(
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
    (audit, register): (AuditLog, pinnacle_common::keystore::Register),
) -> (
    AngelOneBroker,
    tokio::sync::mpsc::UnboundedReceiver<pinnacle_order_worker::angel::updates::SessionNotice>,
) {
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

/// Starts the user API on `bind`, under supervision; returns the address it listens on.
///
/// The listening socket and the login limits outlive a rebuilt connection: each
/// incarnation serves a duplicate of the same socket, so the address never changes.
#[allow(clippy::too_many_arguments)]
pub async fn spawn_user_api(
    tasks: &mut JoinSet<ServiceResult>,
    nats_settings: &NatsSettings,
    db: DatabaseConnection,
    vault: Arc<Vault>,
    api: &UserApiSettings,
    (audit_timeout, audit_settings, chains): (Duration, AuditSettings, AuditChains),
    health: &Health,
    shutdown: Shutdown,
) -> anyhow::Result<SocketAddr> {
    metrics().enable(Component::UserApi);
    let bind = api.bind.as_str();
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the user API to {bind}"))?;
    let addr = listener.local_addr()?;
    let listener = listener.into_std()?;
    let limits = Arc::new(pinnacle_user_api::limits::Limits::default());
    let admin_token = api.admin_token.clone();
    let state_health = health.clone();
    let start = move |client: async_nats::Client, stop: Shutdown| -> Start<anyhow::Error> {
        let socket = listener.try_clone();
        let state = (
            db.clone(),
            vault.clone(),
            admin_token.clone(),
            limits.clone(),
            state_health.clone(),
            chains.clone(),
        );
        Box::pin(async move {
            let (db, vault, admin_token, limits, health, chains) = state;
            prepare_audit_stream(&client, &db, "pinnacle-user-api").await?;
            let listener = tokio::net::TcpListener::from_std(socket?)?;
            let register = pinnacle_common::keystore::Register::new(client.clone(), audit_timeout);
            let audit = AuditLog::new(client, audit_timeout, vault.clone())
                .with_checkpoints(db.clone(), audit_settings.policy())
                .with_chains(chains);
            let state = pinnacle_user_api::AppState {
                db,
                vault,
                audit,
                register,
                admin_token,
                limits,
                health,
            };
            let run: Run<anyhow::Error> = Box::pin(async move {
                pinnacle_user_api::serve(listener, state, stop)
                    .await
                    .map_err(Into::into)
            });
            Ok(run)
        })
    };
    let supervisor = supervise::supervise(
        "pinnacle-user-api",
        nats_settings.clone(),
        health.link("pinnacle-user-api"),
        Policy::default(),
        shutdown,
        start,
    )
    .await?;
    tasks.spawn(async move { ("user-api", joined(supervisor.await)) });
    Ok(addr)
}

/// What the whole stack needs.
#[derive(Debug, Clone)]
pub struct StackSettings {
    /// NATS server.
    pub nats: NatsSettings,
    /// Database.
    pub database: DatabaseSettings,
    /// Master key ring.
    pub vault: Arc<Vault>,
    /// Simulated feed.
    pub sim: SimFeedSettings,
    /// Market-data services and the feed choice.
    pub md: MarketDataSettings,
    /// The platform's Angel One market-data credentials (empty: simulated candles, and
    /// no `angel_one` feed).
    pub angel: AngelOneMarketDataSettings,
    /// Order worker limits.
    pub worker: WorkerSettings,
    /// User API listen address (`127.0.0.1:0` for any free port) and admin token.
    pub api: UserApiSettings,
    /// Where to serve `/metrics` for every service in this process (unset: nowhere).
    pub metrics: MetricsSettings,
}

/// The publisher, order worker and user API, running in this process.
#[derive(Debug)]
pub struct Stack {
    /// Where the user API listens.
    pub api_addr: SocketAddr,
    /// The audit chains every writer of this process shares (the worker, its session
    /// store, the user API; `pinnacle dev` adds its own writer to them).
    pub audit_chains: AuditChains,
    /// The stack's database connection.
    pub db: DatabaseConnection,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, when `metrics.addr` was set
    /// (port 0 resolved).
    pub metrics_addr: Option<SocketAddr>,
    /// Every service's NATS connection, as `/healthz` and `/readyz` report them.
    pub health: Health,
    /// Fires to stop every service.
    shutdown: Shutdown,
    /// The service tasks.
    tasks: JoinSet<ServiceResult>,
}

impl Stack {
    /// Migrates the database and starts all three services.
    pub async fn start(settings: StackSettings) -> anyhow::Result<Self> {
        let db = database(&settings.database).await?;
        vault_ready(&db, &settings.vault).await?;
        let shutdown = Shutdown::new();
        let health = Health::new();
        let metrics_addr = serve_metrics(&settings.metrics, &health, shutdown.clone()).await?;
        let mut tasks = JoinSet::new();
        // One set of audit chains for every writer in this process.
        let audit_chains = AuditChains::default();
        // The worker subscribes to ticks before the publisher starts, so none are missed.
        spawn_worker(
            &mut tasks,
            &settings.nats,
            db.clone(),
            settings.vault.clone(),
            settings.worker.clone(),
            audit_chains.clone(),
            &health,
            shutdown.clone(),
        )
        .await?;
        spawn_publisher(
            &mut tasks,
            &settings.nats,
            &settings.sim,
            &settings.md,
            &settings.angel,
            &health,
            shutdown.clone(),
        )
        .await?;
        let api_addr = spawn_user_api(
            &mut tasks,
            &settings.nats,
            db.clone(),
            settings.vault.clone(),
            &settings.api,
            (
                Duration::from_millis(settings.worker.audit_timeout_ms),
                settings.worker.audit,
                audit_chains.clone(),
            ),
            &health,
            shutdown.clone(),
        )
        .await?;
        Ok(Self {
            api_addr,
            audit_chains,
            db,
            metrics_addr,
            health,
            shutdown,
            tasks,
        })
    }

    /// The user API's base URL.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Waits until a service stops on its own (an error) or `stop` fires.
    pub async fn wait(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            () = stop => Ok(()),
            Some(joined) = self.tasks.join_next() => match joined {
                Ok((name, Ok(()))) => anyhow::bail!("{name} stopped unexpectedly"),
                Ok((name, Err(e))) => Err(e.context(format!("{name} failed"))),
                Err(e) => Err(anyhow::anyhow!("a service panicked: {e}")),
            },
        }
    }

    /// Stops every service, letting in-flight requests finish for up to
    /// [`SHUTDOWN_GRACE`], and waits for them.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        join_within_grace(&mut self.tasks).await
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `settings.addr` until `shutdown` fires;
/// `None` when unset.
pub async fn serve_metrics(
    settings: &MetricsSettings,
    health: &Health,
    shutdown: Shutdown,
) -> anyhow::Result<Option<SocketAddr>> {
    match &settings.addr {
        Some(addr) => Ok(Some(
            pinnacle_common::metrics::serve(addr, health, shutdown).await?,
        )),
        None => Ok(None),
    }
}

/// One service, for `pinnacle serve <service>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The market-data publisher.
    Publisher,
    /// The order worker.
    OrderWorker,
    /// The user API.
    UserApi,
}

/// Runs one service, configured from the environment, until `stop` resolves; then gives it
/// [`SHUTDOWN_GRACE`] to finish (pass a [`bounded_stop`] for the whole [`SHUTDOWN_BOUND`]).
pub async fn serve(
    service: Service,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use pinnacle_common::config::VaultSettings;
    let nats_settings = NatsSettings::from_env()?;
    let shutdown = Shutdown::new();
    let health = Health::new();
    serve_metrics(&MetricsSettings::from_env()?, &health, shutdown.clone()).await?;
    let mut tasks = JoinSet::new();
    match service {
        Service::Publisher => {
            let angel = AngelOneMarketDataSettings::from_env()?;
            tracing::info!(
                angel_one_configured = angel.is_configured(),
                "market-data credentials come from ANGEL_ONE_* only; the simulated feed needs none"
            );
            spawn_publisher(
                &mut tasks,
                &nats_settings,
                &SimFeedSettings::from_env()?,
                &MarketDataSettings::from_env()?,
                &angel,
                &health,
                shutdown.clone(),
            )
            .await?;
        }
        Service::OrderWorker => {
            // Settings first: a malformed one stops the start before anything connects.
            let settings = WorkerSettings::from_env()?;
            let db = database(&DatabaseSettings::from_env()?).await?;
            let vault = Arc::new(Vault::from_settings(&VaultSettings::from_env()?)?);
            vault_ready(&db, &vault).await?;
            spawn_worker(
                &mut tasks,
                &nats_settings,
                db,
                vault,
                settings,
                AuditChains::default(),
                &health,
                shutdown.clone(),
            )
            .await?;
        }
        Service::UserApi => {
            let db = database(&DatabaseSettings::from_env()?).await?;
            let vault = Arc::new(Vault::from_settings(&VaultSettings::from_env()?)?);
            vault_ready(&db, &vault).await?;
            let api = UserApiSettings::from_env()?;
            let worker = WorkerSettings::from_env()?;
            spawn_user_api(
                &mut tasks,
                &nats_settings,
                db,
                vault,
                &api,
                (
                    Duration::from_millis(worker.audit_timeout_ms),
                    worker.audit,
                    AuditChains::default(),
                ),
                &health,
                shutdown.clone(),
            )
            .await?;
        }
    }
    let outcome = tokio::select! {
        () = stop => Ok(()),
        Some(joined) = tasks.join_next() => match joined {
            Ok((_, result)) => result,
            Err(e) => Err(anyhow::anyhow!("service panicked: {e}")),
        },
    };
    shutdown.cancel();
    let stopped = join_within_grace(&mut tasks).await;
    outcome.and(stopped)
}
