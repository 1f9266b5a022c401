//! The whole stack in one process: [`StackSettings`] and [`Stack`], which `pinnacle dev`,
//! the benches and the end-to-end tests start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::audit::AuditChains;
use pinnacle_common::config::{
    AngelOneMarketDataSettings, DatabaseSettings, MarketDataSettings, MetricsSettings,
    NatsSettings, PaperHours, SimFeedSettings, UserApiSettings, WorkerSettings,
};
use pinnacle_common::crypto::Vault;
use pinnacle_common::health::Health;
use pinnacle_common::shutdown::Shutdown;
use sea_orm::DatabaseConnection;
use tokio::task::JoinSet;

use super::connect::{serve_metrics, service_database, vault_ready};
use super::lifecycle::{join_within_grace, ServiceResult};
use super::publisher::spawn_publisher;
use super::user_api::spawn_user_api;
use super::worker::spawn_worker;

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
    /// Migrates the database and starts all three services. The worker's paper broker
    /// takes its market hours from the simulated feed's (`sim.hours`, `md.holidays`).
    pub async fn start(settings: StackSettings) -> anyhow::Result<Self> {
        let db = service_database(&settings.database).await?;
        vault_ready(&db, &settings.vault).await?;
        let shutdown = Shutdown::new();
        let health = Health::new();
        // Not ready until all three services have started.
        let starting = health.starting();
        let metrics_addr = serve_metrics(&settings.metrics, &health, shutdown.clone()).await?;
        let mut tasks = JoinSet::new();
        // One set of audit chains for every writer in this process.
        let audit_chains = AuditChains::default();
        // One process, one market: the paper broker keeps the simulated feed's hours.
        let mut worker = settings.worker.clone();
        worker.paper_hours = PaperHours {
            hours: settings.sim.hours,
            holidays: settings.md.holidays.clone(),
        };
        // The worker subscribes to ticks before the publisher starts, so none are missed.
        spawn_worker(
            &mut tasks,
            &settings.nats,
            db.clone(),
            settings.vault.clone(),
            worker,
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
        drop(starting);
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
    /// [`SHUTDOWN_GRACE`](super::SHUTDOWN_GRACE), and waits for them.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        join_within_grace(&mut self.tasks).await
    }
}
