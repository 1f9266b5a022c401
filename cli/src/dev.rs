//! `pinnacle dev`: the whole system on one machine, with nothing configured.
//!
//! It starts (or reuses, via `NATS_URL`) a JetStream-enabled nats-server on loopback,
//! opens SQLite in the data dir and migrates it, runs the publisher, order worker and
//! user API in this process, makes sure a demo user with a paper account exists and has an
//! API token (kept across restarts in `<data-dir>/demo.token`), writes
//! `<data-dir>/dev.env` with everything the client and operator verbs need, and stops
//! everything cleanly on Ctrl-C or SIGTERM.
//!
//! With `--smartapi-sim` it also runs the SmartAPI simulator in this process and points
//! the publisher (feed and candles) and the worker's Angel One broker at it, and gives the
//! demo user an `angel_one` account labelled `angel` (see [`crate::dev_sim`]).
//!
//! # Layout
//! - [`settings`]: NATS, the console's WebSocket, the database, the key ring, the data
//!   dir's secrets.
//! - [`demo`]: the demo user, its paper account and its token.
//! - [`banner`]: `dev.env` and the banners.
//! - this file: [`run`], which starts, waits and stops.

pub mod banner;
pub mod demo;
pub mod settings;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pinnacle_common::audit::AuditLog;
use pinnacle_common::config::{
    AngelOneMarketDataSettings, DatabaseSettings, MarketDataSettings, NatsSettings,
    SimFeedSettings, UserApiSettings, WorkerSettings,
};
use pinnacle_common::crypto::Vault;
use secrecy::SecretString;

pub use demo::{ensure_demo_user, DemoUser, DEMO_USER};

use crate::dev_sim::DevSim;
use crate::nats_server::NatsServer;
use crate::stack::{Stack, StackSettings};
use banner::{print_banner, print_sim_banner, Banner, DevEnv};
use settings::{
    console_nats_url, database_settings, load_or_create_secret, master_keys, start_nats,
    write_private,
};

/// Options for `pinnacle dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Where SQLite, the JetStream store, keys and `dev.env` live.
    pub data_dir: PathBuf,
    /// User API listen address.
    pub api_bind: String,
    /// Run the SmartAPI simulator, listening here, and use Angel One (simulated) for market
    /// data and for the demo user's `angel` account.
    pub smartapi_sim: Option<std::net::SocketAddr>,
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a signal that arrives while the process is still starting
/// is held for it, instead of killing the process with the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            () = received(interrupt) => {},
            () = received(term) => {},
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves when `signal` arrives; never, when its handler could not be installed.
#[cfg(unix)]
async fn received(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Runs `pinnacle dev` until Ctrl-C or SIGTERM.
pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    // Taken from the start: a stop while everything starts is held until it has started,
    // then stops it all cleanly (the embedded nats-server included).
    let stop = shutdown_signal();
    let data_dir = &options.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let (nats, embedded) = start_nats(&options.api_bind, &data_dir)?;
    let console_nats = console_nats_url(embedded.as_ref());
    let database = database_settings(&data_dir)?;
    let keys = master_keys(&data_dir)?;
    let vault = Arc::new(Vault::from_settings(&keys.settings)?);
    let admin_token = match std::env::var("PINNACLE_API_ADMIN_TOKEN") {
        Ok(token) if !token.is_empty() => SecretString::from(token),
        _ => load_or_create_secret(&data_dir.join("admin.token"), || {
            format!("admin_{}", uuid::Uuid::new_v4().simple())
        })?,
    };
    let (stack, worker, dev_sim) =
        start_stack(&options, &data_dir, &nats, &database, &vault, &admin_token).await?;

    let audit_client = pinnacle_common::nats::connect(&nats, "pinnacle-dev").await?;
    let audit = AuditLog::new(
        audit_client,
        Duration::from_millis(worker.audit_timeout_ms),
        vault.clone(),
    )
    .with_checkpoints(stack.db.clone(), worker.audit.policy())
    .with_chains(stack.audit_chains.clone());
    let demo = ensure_demo_user(&stack.db, &vault, &audit, &data_dir.join("demo.token")).await?;
    if let Some(dev_sim) = &dev_sim {
        dev_sim
            .put_demo_account(&stack.db, &vault, &audit, &demo.user_id)
            .await?;
    }
    let env_file = data_dir.join("dev.env");
    let sim_url = dev_sim.as_ref().map(|dev_sim| dev_sim.sim.rest_url());
    let written = DevEnv {
        nats: &nats,
        api_url: &stack.api_url(),
        demo: &demo,
        admin_token: &admin_token,
        database: &database,
        key_file: keys.file.as_deref(),
        smartapi_sim: sim_url.as_deref(),
    };
    write_private(&env_file, &written.render(&env_file))?;
    print_banner(&Banner {
        nats: &nats.url,
        db: &database,
        api: &stack.api_url(),
        user_id: &demo.user_id,
        env_file: &env_file,
        smartapi_sim: dev_sim.is_some(),
        console_nats: console_nats.as_deref(),
    });
    if let Some(url) = &sim_url {
        print_sim_banner(url, &env_file);
    }
    run_until_stopped(stack, &audit, dev_sim, embedded, stop).await
}

/// Starts the services (with the SmartAPI simulator pointed at when asked), and returns the
/// worker settings they run with.
async fn start_stack(
    options: &DevOptions,
    data_dir: &Path,
    nats: &NatsSettings,
    database: &DatabaseSettings,
    vault: &Arc<Vault>,
    admin_token: &SecretString,
) -> anyhow::Result<(Stack, WorkerSettings, Option<DevSim>)> {
    let mut worker = WorkerSettings::from_env()?;
    let mut md = MarketDataSettings::from_env()?;
    let mut angel = AngelOneMarketDataSettings::from_env()?;
    let dev_sim = if let Some(bind) = options.smartapi_sim {
        let dev_sim = DevSim::start(md.instruments.as_deref(), data_dir, bind).await?;
        md = dev_sim.market_data(md);
        worker = dev_sim.worker(worker);
        angel = dev_sim.platform_credentials();
        Some(dev_sim)
    } else {
        None
    };
    let stack = Stack::start(StackSettings {
        nats: nats.clone(),
        database: database.clone(),
        vault: vault.clone(),
        sim: SimFeedSettings::from_env()?,
        md,
        angel,
        worker: worker.clone(),
        api: UserApiSettings {
            bind: options.api_bind.clone(),
            admin_token: Some(admin_token.clone()),
        },
        metrics: pinnacle_common::config::MetricsSettings::from_env()?,
    })
    .await?;
    Ok((stack, worker, dev_sim))
}

/// Waits for Ctrl-C or SIGTERM (or a service's end), then seals the audit chains and
/// stops everything, the services first and the NATS server last.
async fn run_until_stopped(
    mut stack: Stack,
    audit: &AuditLog,
    dev_sim: Option<DevSim>,
    embedded: Option<NatsServer>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let outcome = stack.wait(crate::stack::bounded_stop(stop)).await;
    eprintln!("\nstopping…");
    match tokio::time::timeout(crate::stack::SHUTDOWN_GRACE / 4, audit.checkpoint_now()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "audit checkpoint on shutdown failed"),
        Err(_) => tracing::warn!("audit checkpoint on shutdown did not finish in time"),
    }
    let stopped = stack.stop().await;
    if let Some(dev_sim) = dev_sim {
        dev_sim.shutdown().await;
    }
    drop(embedded);
    outcome.and(stopped)
}
