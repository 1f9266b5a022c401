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

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pinnacle_common::audit::AuditLog;
use pinnacle_common::config::{
    AngelOneMarketDataSettings, DatabaseSettings, MarketDataSettings, NatsSettings,
    SimFeedSettings, UserApiSettings, VaultSettings, WorkerSettings,
};
use pinnacle_common::crypto::Vault;
use pinnacle_common::entities::{broker_accounts, users};
use pinnacle_user_api::accounts::{put_account, PutAccount, Writer};
use pinnacle_user_api::api_tokens::{issue_token, TokenSpec};
use pinnacle_user_api::console;
use pinnacle_user_api::users::create_user;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use secrecy::{ExposeSecret, SecretString};

use crate::dev_sim::DevSim;
use crate::nats_server::NatsServer;
use crate::stack::{Stack, StackSettings};

/// The demo user's name.
pub const DEMO_USER: &str = "demo";

/// Options for `pinnacle dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Where SQLite, the JetStream store, keys and `dev.env` live.
    pub data_dir: PathBuf,
    /// User API listen address.
    pub api_bind: String,
    /// Run the SmartAPI simulator and use Angel One (simulated) for market data and for
    /// the demo user's `angel` account.
    pub smartapi_sim: bool,
}

/// The demo user and its API token.
#[derive(Debug)]
pub struct DemoUser {
    /// User id.
    pub user_id: String,
    /// An API token with the trade and read scopes.
    pub token: SecretString,
}

/// Reads a secret from `path`, or creates it with `make` (mode 0600).
fn load_or_create_secret(
    path: &Path,
    make: impl FnOnce() -> String,
) -> anyhow::Result<SecretString> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(SecretString::from(existing.trim().to_string()));
    }
    let value = make();
    write_private(path, &value)?;
    Ok(SecretString::from(value))
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Makes sure the demo user and its paper account exist, and gives it a token (the one in
/// `token_file` while it stays valid).
pub async fn ensure_demo_user(
    db: &DatabaseConnection,
    vault: &Vault,
    audit: &AuditLog,
    token_file: &Path,
) -> anyhow::Result<DemoUser> {
    let existing = users::Entity::find()
        .filter(users::Column::Name.eq(DEMO_USER))
        .one(db)
        .await?;
    let user = match existing {
        Some(user) => user,
        None => create_user(db, DEMO_USER).await?,
    };
    // (Re)store the paper account when it is missing or predates envelope encryption
    // (a data dir from an older build has no wrapped data key).
    let account = broker_accounts::Entity::find()
        .filter(broker_accounts::Column::UserId.eq(user.id.as_str()))
        .filter(broker_accounts::Column::Label.eq("paper"))
        .one(db)
        .await?;
    if account.is_none_or(|a| a.data_key_enc.is_none()) {
        let paper = PutAccount::basic(
            "paper",
            SecretString::from("paper-demo-api-key"),
            SecretString::from("PAPERDEMO"),
            SecretString::from("0000"),
        );
        let register = pinnacle_common::keystore::Register::new(
            audit.client(),
            std::time::Duration::from_secs(5),
        );
        let writer = Writer {
            actor: "pinnacle-dev".into(),
            token_id: None,
            request_id: uuid::Uuid::now_v7().to_string(),
        };
        put_account(
            db, vault, audit, &register, &writer, &user.id, "paper", &paper,
        )
        .await?;
    }
    // With a second (simulator) account, requests that name none still go to paper.
    if user.default_account.is_none() {
        let mut active: users::ActiveModel = user.clone().into();
        active.default_account = Set(Some("paper".into()));
        active.update(db).await?;
    }
    let token = demo_token(db, vault, &user.id, token_file).await?;
    Ok(DemoUser {
        user_id: user.id,
        token,
    })
}

/// The demo user's token: the one in `token_file` while it is still valid for this user
/// (so restarts do not pile up never-expiring tokens), else a fresh one, saved there.
async fn demo_token(
    db: &DatabaseConnection,
    vault: &Vault,
    user_id: &str,
    token_file: &Path,
) -> anyhow::Result<SecretString> {
    if let Ok(saved) = std::fs::read_to_string(token_file) {
        let saved = saved.trim();
        let owner =
            pinnacle_common::auth::authenticate(db, vault.token_pepper(), Some(saved)).await;
        if owner.is_ok_and(|p| p.user_id == user_id) {
            return Ok(SecretString::from(saved.to_string()));
        }
    }
    let (_, token) = issue_token(db, vault, user_id, &TokenSpec::full()).await?;
    write_private(token_file, token.expose_secret())?;
    Ok(token)
}

/// The origins the console is served from when the user API's address is known before it
/// binds (`127.0.0.1:8080`, not `:0`): only those pages may open the dev NATS server's
/// WebSocket, so no other web page in the developer's browser can reach its (unauthenticated)
/// NATS. A loopback address is also reachable as `localhost`. Empty (any origin) when the
/// port is chosen at bind time.
fn console_origins(api_bind: &str) -> Vec<String> {
    let Ok(addr) = api_bind.parse::<std::net::SocketAddr>() else {
        return Vec::new();
    };
    if addr.port() == 0 {
        return Vec::new();
    }
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    origins
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Runs `pinnacle dev` until Ctrl-C or SIGTERM.
pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    let data_dir = &options.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;

    // NATS: the one in NATS_URL, or our own on a free loopback port.
    let mut embedded = None;
    let nats = match std::env::var("NATS_URL") {
        Ok(url) if !url.trim().is_empty() => NatsSettings::from_env()?,
        _ => {
            let binary = crate::nats_server::find_binary()?;
            let origins = console_origins(&options.api_bind);
            let server =
                NatsServer::start_with_websocket(&binary, &data_dir.join("nats"), &origins)?;
            let settings = NatsSettings {
                url: server.url().to_string(),
                ..NatsSettings::from_env()?
            };
            embedded = Some(server);
            settings
        }
    };

    // The console (served by the user API at `/`) connects to NATS over WebSocket: our own
    // server's loopback listener, unless the operator named one. Set before any service
    // starts, while nothing else reads the environment.
    let console_nats = match std::env::var(console::NATS_WS_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let url = embedded
                .as_ref()
                .and_then(|server| server.websocket_url().map(str::to_string));
            if let Some(url) = &url {
                std::env::set_var(console::NATS_WS_URL_VAR, url);
            }
            url
        }
    };

    let database = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => DatabaseSettings::from_env()?,
        _ => DatabaseSettings {
            database_url: format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("pinnacle.db").display()
            ),
            database_max_connections: 8,
        },
    };
    let configured = [
        "PINNACLE_MASTER_KEY",
        "PINNACLE_MASTER_KEYS",
        "PINNACLE_MASTER_KEY_FILE",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    // Without a configured key, the ring is the key file in the data dir
    // (`PINNACLE_MASTER_KEY_FILE` format, `<id>:<base64>`), which dev.env points the
    // operator verbs at. It is created once, with key 1 (taken over from an older data
    // dir's bare `master.key`), and then only ever appended to (`pinnacle keys add`), so a
    // restart never drops a key that data keys may be wrapped under.
    let key_file = data_dir.join("master.keys");
    let master_key = if configured {
        VaultSettings::from_env()?
    } else {
        if !key_file.exists() {
            let key = load_or_create_secret(&data_dir.join("master.key"), || {
                Vault::generate_master_key().expose_secret().to_string()
            })?;
            write_private(&key_file, &format!("1:{}\n", key.expose_secret()))?;
        }
        VaultSettings::file(key_file.display().to_string())
    };
    let vault = Arc::new(Vault::from_settings(&master_key)?);
    let admin_token = match std::env::var("PINNACLE_API_ADMIN_TOKEN") {
        Ok(token) if !token.is_empty() => SecretString::from(token),
        _ => load_or_create_secret(&data_dir.join("admin.token"), || {
            format!("admin_{}", uuid::Uuid::new_v4().simple())
        })?,
    };
    let mut worker = WorkerSettings::from_env()?;
    let mut md = MarketDataSettings::from_env()?;
    let mut angel = AngelOneMarketDataSettings::from_env()?;
    let dev_sim = if options.smartapi_sim {
        let dev_sim = DevSim::start(md.instruments.as_deref(), &data_dir).await?;
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
    let accounts = if dev_sim.is_some() {
        format!("paper,{}", crate::dev_sim::DEMO_LABEL)
    } else {
        "paper".to_string()
    };
    let mut env = format!(
        "# Written by `pinnacle dev` (mode 0600): everything the client and operator verbs\n\
         # need. Use it with --env-file, PINNACLE_ENV_FILE, or `set -a; . {env}; set +a`.\n\
         NATS_URL={}\nUSER_API_URL={}\nDEMO_USER_ID={}\nDEMO_API_TOKEN={}\n\
         DEMO_ACCOUNTS={accounts}\nPINNACLE_API_ADMIN_TOKEN={}\nDATABASE_URL={}\n",
        nats.url,
        stack.api_url(),
        demo.user_id,
        demo.token.expose_secret(),
        admin_token.expose_secret(),
        database.database_url,
        env = env_file.display(),
    );
    if !configured {
        env.push_str(&format!(
            "PINNACLE_MASTER_KEY_FILE={}\n",
            key_file.display()
        ));
    }
    write_private(&env_file, &env)?;
    print_banner(&Banner {
        nats: &nats.url,
        db: &database,
        api: &stack.api_url(),
        user_id: &demo.user_id,
        env_file: &env_file,
        smartapi_sim: dev_sim.is_some(),
        console_nats: console_nats.as_deref(),
    });
    if let Some(dev_sim) = &dev_sim {
        print_sim_banner(&dev_sim.sim.rest_url(), &env_file);
    }

    let mut stack = stack;
    let outcome = stack
        .wait(crate::stack::bounded_stop(shutdown_signal()))
        .await;
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

fn print_sim_banner(rest_url: &str, env_file: &Path) {
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pinnacle".into());
    let env = env_file.display();
    println!(
        "\nAngel One SmartAPI simulator (--smartapi-sim) at {rest_url}\
         \n  market data  feed angel_one and candles (source \"angel_one\") from the simulator,\
         \n               logged in as the platform account {platform}\
         \n  demo user    broker account `{label}` (angel_one, client {client}, static IP 127.0.0.1, algo id {algo})\n\
         \nPlace a LIMIT order through the simulator (rupees; it fills when the price crosses):\
         \n  {me} order place --env-file {env} --account {label} --symbol SBIN-EQ --side BUY --quantity 1 --price 800\
         \nAn order that names no account goes to `paper`, the demo user's default account.",
        platform = crate::dev_sim::PLATFORM_CLIENT,
        label = crate::dev_sim::DEMO_LABEL,
        client = crate::dev_sim::DEMO_CLIENT,
        algo = crate::dev_sim::DEMO_ALGO_ID,
    );
}

/// What the banner shows.
struct Banner<'a> {
    nats: &'a str,
    db: &'a DatabaseSettings,
    api: &'a str,
    user_id: &'a str,
    env_file: &'a Path,
    smartapi_sim: bool,
    /// The NATS WebSocket URL the console uses (none: the console cannot reach NATS).
    console_nats: Option<&'a str>,
}

fn print_banner(b: &Banner<'_>) {
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pinnacle".into());
    let env = b.env_file.display();
    let (what, accounts) = if b.smartapi_sim {
        (
            "Angel One SmartAPI simulator feed; paper and simulated angel_one accounts",
            format!(
                "paper (paper broker, the default), {} (angel_one on the simulator)",
                crate::dev_sim::DEMO_LABEL
            ),
        )
    } else {
        (
            "simulated feed, paper broker",
            "paper (paper broker, the default)".to_string(),
        )
    };
    let console = match b.console_nats {
        Some(ws) => format!(
            "{api}/   (log in with DEMO_API_TOKEN from the env file; NATS over WebSocket at {ws})",
            api = b.api
        ),
        None => format!(
            "{api}/   (no NATS WebSocket listener: set {var} to one)",
            api = b.api,
            var = console::NATS_WS_URL_VAR
        ),
    };
    println!(
        "\nPinnacle is running ({what}).\n\
         \n  console    {console}\
         \n  API docs   {api}/docs\
         \n  NATS       {nats}\
         \n  database   {db}\
         \n  user API   {api}\
         \n  demo user  {user_id}, accounts: {accounts}\
         \n  env file   {env}   (NATS_URL, USER_API_URL, DEMO_USER_ID, DEMO_API_TOKEN, DEMO_ACCOUNTS,\
         \n                     PINNACLE_API_ADMIN_TOKEN, DATABASE_URL, PINNACLE_MASTER_KEY_FILE)\n\
         \nWatch ticks:\n  {me} ticks --env-file {env} 'md.tick.NSE.>'\n\
         \nPlace an order (paper broker, fills at the last tick):\n  {me} order place --env-file {env} --symbol SBIN-EQ --side buy --quantity 10\n\
         \nYour orders and funds:\n  {me} order list --env-file {env}\n  {me} portfolio funds --env-file {env}\n\
         \nOperate (the admin token in the env file):\n  {me} users list --env-file {env}\n  {me} accounts list --env-file {env}\n  {me} risk show --env-file {env} --user {user_id}\n  {me} kill-switch on --env-file {env} --global\n  {me} kill-switch off --env-file {env} --global\n\
         \nOr from any NATS client: request on orders.<DEMO_USER_ID>.place with header\n  Authorization: Bearer <DEMO_API_TOKEN>   (see docs/PROTOCOL.md)\n\
         \nMarket data (no token needed): md.tick.<EX>.<SYM>, md.depth.<EX>.<SYM>, md.status.<EX>,\n  and requests on md.req.last, md.req.candles, md.req.symbols.search, md.req.symbols.lookup,\n  md.req.status\n\
         \nStop with Ctrl-C.",
        nats = b.nats,
        db = pinnacle_common::config::redact_url(&b.db.database_url),
        api = b.api,
        user_id = b.user_id,
    );
}

#[cfg(test)]
mod tests {
    use super::console_origins;

    #[test]
    fn a_known_api_address_limits_the_websocket_to_its_pages() {
        assert_eq!(
            console_origins("127.0.0.1:8080"),
            ["http://127.0.0.1:8080", "http://localhost:8080"]
        );
        assert_eq!(console_origins("10.0.0.5:9000"), ["http://10.0.0.5:9000"]);
        assert!(console_origins("127.0.0.1:0").is_empty());
        assert!(console_origins("not an address").is_empty());
    }
}
