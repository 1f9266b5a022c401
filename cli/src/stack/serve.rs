//! `pinnacle serve <service>`: one service, configured from the environment.

use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::audit::AuditChains;
use pinnacle_common::config::{
    AngelOneMarketDataSettings, DatabaseSettings, MarketDataSettings, MetricsSettings,
    NatsSettings, SimFeedSettings, UserApiSettings, VaultSettings, WorkerSettings,
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
/// [`SHUTDOWN_GRACE`](super::SHUTDOWN_GRACE) to finish (pass a [`bounded_stop`](super::bounded_stop)
/// for the whole [`SHUTDOWN_BOUND`](super::SHUTDOWN_BOUND)).
pub async fn serve(
    service: Service,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(stop);
    let nats_settings = NatsSettings::from_env()?;
    let shutdown = Shutdown::new();
    let health = Health::new();
    // Not ready until the service has started: the probes are served from now on.
    let starting = health.starting();
    let mut tasks = JoinSet::new();
    // A stop while the service starts (migrating, connecting) ends the start, cleanly.
    let started = {
        let start = async {
            serve_metrics(&MetricsSettings::from_env()?, &health, shutdown.clone()).await?;
            let context = (&nats_settings, &health, shutdown.clone());
            match service {
                Service::Publisher => spawn_publisher_from_env(&mut tasks, context).await,
                Service::OrderWorker => spawn_worker_from_env(&mut tasks, context).await,
                Service::UserApi => spawn_user_api_from_env(&mut tasks, context).await,
            }
        };
        tokio::select! {
            () = &mut stop => None,
            started = start => Some(started),
        }
    };
    let outcome = match started {
        None => {
            tracing::info!("stopped while starting");
            Ok(())
        }
        Some(Err(error)) => Err(error),
        Some(Ok(())) => {
            drop(starting);
            tokio::select! {
                () = &mut stop => Ok(()),
                Some(joined) = tasks.join_next() => match joined {
                    Ok((_, result)) => result,
                    Err(e) => Err(anyhow::anyhow!("service panicked: {e}")),
                },
            }
        }
    };
    shutdown.cancel();
    let stopped = join_within_grace(&mut tasks).await;
    outcome.and(stopped)
}

/// What every service is started with: its NATS settings, the process's health and the
/// stop signal.
type Context<'a> = (&'a NatsSettings, &'a Health, Shutdown);

async fn spawn_publisher_from_env(
    tasks: &mut JoinSet<ServiceResult>,
    (nats_settings, health, shutdown): Context<'_>,
) -> anyhow::Result<()> {
    let angel = AngelOneMarketDataSettings::from_env()?;
    tracing::info!(
        angel_one_configured = angel.is_configured(),
        "market-data credentials come from ANGEL_ONE_* only; the simulated feed needs none"
    );
    spawn_publisher(
        tasks,
        nats_settings,
        &SimFeedSettings::from_env()?,
        &MarketDataSettings::from_env()?,
        &angel,
        health,
        shutdown,
    )
    .await
}

async fn spawn_worker_from_env(
    tasks: &mut JoinSet<ServiceResult>,
    (nats_settings, health, shutdown): Context<'_>,
) -> anyhow::Result<()> {
    // Settings first: a malformed one stops the start before anything connects.
    let settings = WorkerSettings::from_env()?;
    let (db, vault) = database_and_vault_from_env().await?;
    spawn_worker(
        tasks,
        nats_settings,
        db,
        vault,
        settings,
        AuditChains::default(),
        health,
        shutdown,
    )
    .await
}

async fn spawn_user_api_from_env(
    tasks: &mut JoinSet<ServiceResult>,
    (nats_settings, health, shutdown): Context<'_>,
) -> anyhow::Result<()> {
    let (db, vault) = database_and_vault_from_env().await?;
    let api = UserApiSettings::from_env()?;
    let worker = WorkerSettings::from_env()?;
    spawn_user_api(
        tasks,
        nats_settings,
        db,
        vault,
        &api,
        (
            Duration::from_millis(worker.audit_timeout_ms),
            worker.audit,
            AuditChains::default(),
        ),
        health,
        shutdown,
    )
    .await?;
    Ok(())
}

/// The migrated database and the key ring, checked against it.
async fn database_and_vault_from_env() -> anyhow::Result<(DatabaseConnection, Arc<Vault>)> {
    let db = service_database(&DatabaseSettings::from_env()?).await?;
    let vault = Arc::new(Vault::from_settings(&VaultSettings::from_env()?)?);
    vault_ready(&db, &vault).await?;
    Ok((db, vault))
}
