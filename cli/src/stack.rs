//! Wiring: each service started from its settings, and the whole stack in one process.
//!
//! `pinnacle serve <service>` starts one of these; `pinnacle dev` and the end-to-end
//! tests start all three with [`Stack::start`]. Each service gets its own NATS
//! connection, named after it, as it would in production.

use pinnacle_order_worker::angel::store::DbSessionStore;
use pinnacle_order_worker::angel::symbols::SymbolResolver;
use pinnacle_order_worker::angel::AngelOneBroker;
use pinnacle_smartapi::session::SessionManager;
use pinnacle_smartapi::RestConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pinnacle_common::audit::{self, AuditLog};
use pinnacle_common::config::{
    AngelOneMarketDataSettings, DatabaseSettings, MarketDataSettings, MetricsSettings,
    NatsSettings, SimFeedSettings, UserApiSettings, WorkerSettings,
};
use pinnacle_common::crypto::Vault;
use pinnacle_common::shutdown::Shutdown;
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

/// How often a service tries to apply the migrations before it gives up.
const MIGRATION_ATTEMPTS: u32 = 8;

/// Records the ring's keys in the database and loads which are retired; fails on a
/// ring whose key material differs from what the database knows under the same id.
pub async fn vault_ready(db: &DatabaseConnection, vault: &Vault) -> anyhow::Result<()> {
    pinnacle_common::keystore::sync_ring(db, vault)
        .await
        .context("checking the master key ring against the database")
}

/// Connects to NATS and makes sure the audit stream exists.
pub async fn nats(settings: &NatsSettings, name: &str) -> anyhow::Result<async_nats::Client> {
    let client = pinnacle_common::nats::connect(settings, name).await?;
    audit::ensure_stream(&async_nats::jetstream::new(client.clone()))
        .await
        .context("creating the audit stream")?;
    Ok(client)
}

/// Starts the market-data publisher: the feed loop, the `md.req.>` service and the
/// market-status announcer, each on the publisher's connection.
///
/// The feed is `PINNACLE_MD_FEED`'s; candles come from Angel One whenever `angel` (the
/// platform's `ANGEL_ONE_*` credentials, the only ones the publisher ever reads) is set.
pub async fn spawn_publisher(
    tasks: &mut JoinSet<ServiceResult>,
    nats_settings: &NatsSettings,
    sim: &SimFeedSettings,
    md: &MarketDataSettings,
    angel: &AngelOneMarketDataSettings,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let catalog = Arc::new(
        Catalog::load(md.instruments.as_deref())
            .await
            .context("loading the instrument master")?,
    );
    let calendar = Arc::new(Calendar::load(md.holidays.as_deref())?);
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
    let client = pinnacle_common::nats::connect(nats_settings, "pinnacle-publisher").await?;
    let cache = Arc::new(LastValues::new());
    let service = Arc::new(MdService {
        client: client.clone(),
        cache: cache.clone(),
        catalog,
        calendar: calendar.clone(),
        history: SimHistory { seed: sim.seed },
        angel: sources.history,
        max_payload: md.max_payload,
    });
    // Subscribe before returning, so requests sent right after start are answered.
    let service_shutdown = shutdown.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tasks.spawn(async move {
        let result =
            pinnacle_publisher::service::run_with_ready(service, service_shutdown, ready_tx).await;
        ("md-service", result.map_err(Into::into))
    });
    ready_rx
        .await
        .context("the market-data service did not start")??;
    let status_client = client.clone();
    let status_shutdown = shutdown.clone();
    tasks.spawn(async move {
        pinnacle_publisher::status::run(
            status_client,
            calendar,
            Duration::from_secs(1),
            status_shutdown,
        )
        .await;
        ("md-status", Ok(()))
    });
    let options = PublishOptions {
        cache,
        stall_timeout: Duration::from_millis(md.stall_ms.max(1)),
        depth: sim.depth,
        tick_trace_ratio: md.tick_trace_ratio,
        ..PublishOptions::default()
    };
    tasks.spawn(async move {
        let result = pinnacle_publisher::run(client, sources.feed, options, shutdown).await;
        ("publisher", result.map_err(Into::into))
    });
    Ok(())
}

/// Starts an order worker with the paper broker, which follows the tick stream, and the
/// paper matcher, which fills resting paper orders from it.
pub async fn spawn_worker(
    tasks: &mut JoinSet<ServiceResult>,
    nats_settings: &NatsSettings,
    db: DatabaseConnection,
    vault: Arc<Vault>,
    settings: WorkerSettings,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let client = nats(nats_settings, "pinnacle-order-worker").await?;
    let paper = PaperBroker::with_ledger(db.clone(), settings.paper_cash);
    let follower = paper.follow_ticks(client.clone(), shutdown.clone()).await?;
    let (angel, notices) = angel_one_broker(&client, &db, &vault, &settings);
    let order_ws_url = settings.smartapi_order_ws_url.clone();
    let worker = Arc::new(Worker::new(
        client,
        db,
        vault,
        vec![Arc::new(paper), Arc::new(angel)],
        settings,
    ));
    // Angel One order updates move live orders through the same state machine.
    tokio::spawn(pinnacle_order_worker::angel::updates::run(
        worker.clone(),
        order_ws_url,
        notices,
        shutdown.clone(),
    ));
    // Resting paper orders fill from the tick stream.
    let matcher = tokio::spawn(pinnacle_order_worker::matcher::run(
        worker.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(async move {
        let result = pinnacle_order_worker::run(worker, shutdown).await;
        let _ = follower.await;
        match matcher.await {
            Ok(Err(error)) => tracing::error!(%error, "paper matcher could not subscribe"),
            Err(error) => tracing::error!(%error, "paper matcher panicked"),
            Ok(Ok(())) => {}
        }
        ("order-worker", result.map_err(Into::into))
    });
    Ok(())
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
    let store = DbSessionStore::new(db.clone(), vault.clone(), audit);
    let config = RestConfig {
        base_url: settings.smartapi_url.clone(),
        timeout: Duration::from_millis(settings.smartapi_timeout_ms.max(1)),
        ..RestConfig::default()
    };
    let symbols = SymbolResolver::new(client.clone(), Duration::from_secs(2));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let broker = AngelOneBroker::new(config, SessionManager::default(), Arc::new(store), symbols)
        .with_notices(tx);
    (broker, rx)
}

/// Starts the user API on `bind`; returns the address it listens on.
pub async fn spawn_user_api(
    tasks: &mut JoinSet<ServiceResult>,
    nats_settings: &NatsSettings,
    db: DatabaseConnection,
    vault: Arc<Vault>,
    api: &UserApiSettings,
    audit_timeout: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<SocketAddr> {
    let bind = api.bind.as_str();
    let client = nats(nats_settings, "pinnacle-user-api").await?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the user API to {bind}"))?;
    let addr = listener.local_addr()?;
    let audit = AuditLog::new(client, audit_timeout, vault.clone())
        .with_checkpoints(db.clone(), audit::CheckpointPolicy::default());
    let state = pinnacle_user_api::AppState {
        db,
        vault,
        audit,
        admin_token: api.admin_token.clone(),
        limits: Arc::new(pinnacle_user_api::limits::Limits::default()),
    };
    tasks.spawn(async move {
        let result = pinnacle_user_api::serve(listener, state, shutdown).await;
        ("user-api", result.map_err(Into::into))
    });
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
    /// The stack's database connection.
    pub db: DatabaseConnection,
    /// Where `/metrics` is served, when `metrics.addr` was set (port 0 resolved).
    pub metrics_addr: Option<SocketAddr>,
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
        let metrics_addr = serve_metrics(&settings.metrics, shutdown.clone()).await?;
        let mut tasks = JoinSet::new();
        // The worker subscribes to ticks before the publisher starts, so none are missed.
        spawn_worker(
            &mut tasks,
            &settings.nats,
            db.clone(),
            settings.vault.clone(),
            settings.worker.clone(),
            shutdown.clone(),
        )
        .await?;
        spawn_publisher(
            &mut tasks,
            &settings.nats,
            &settings.sim,
            &settings.md,
            &settings.angel,
            shutdown.clone(),
        )
        .await?;
        let api_addr = spawn_user_api(
            &mut tasks,
            &settings.nats,
            db.clone(),
            settings.vault.clone(),
            &settings.api,
            Duration::from_millis(settings.worker.audit_timeout_ms),
            shutdown.clone(),
        )
        .await?;
        Ok(Self {
            api_addr,
            db,
            metrics_addr,
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

    /// Stops every service, letting in-flight requests finish, and waits for them.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(e))) => {
                    tracing::error!(service = name, error = %e, "service failed during shutdown");
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(anyhow::anyhow!("a service panicked: {e}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Serves `/metrics` on `settings.addr` until `shutdown` fires; `None` when unset.
pub async fn serve_metrics(
    settings: &MetricsSettings,
    shutdown: Shutdown,
) -> anyhow::Result<Option<SocketAddr>> {
    match &settings.addr {
        Some(addr) => Ok(Some(pinnacle_common::metrics::serve(addr, shutdown).await?)),
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

/// Runs one service, configured from the environment, until `stop` resolves.
pub async fn serve(
    service: Service,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use pinnacle_common::config::VaultSettings;
    let nats_settings = NatsSettings::from_env()?;
    let shutdown = Shutdown::new();
    serve_metrics(&MetricsSettings::from_env()?, shutdown.clone()).await?;
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
                shutdown.clone(),
            )
            .await?;
        }
        Service::OrderWorker => {
            let db = database(&DatabaseSettings::from_env()?).await?;
            let vault = Arc::new(Vault::from_settings(&VaultSettings::from_env()?)?);
            vault_ready(&db, &vault).await?;
            spawn_worker(
                &mut tasks,
                &nats_settings,
                db,
                vault,
                WorkerSettings::from_env()?,
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
                Duration::from_millis(worker.audit_timeout_ms),
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
    while tasks.join_next().await.is_some() {}
    outcome
}
