//! The `pinnacle` command line: the top-level verbs with their flags and help text (clap),
//! and [`run`], which sets up telemetry for the verbs that run services and hands each
//! parsed verb to the library module that implements it. The verb groups with their own
//! sub-verbs declare those next to their implementation (`audit`, `keys`, `bench`,
//! `nats_admin`, `smartapi`, `trader`, `risk`, `admin`).
//!
//! This file is mostly the table of verbs: it stays as long as the list of verbs.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use pinnacle_common::telemetry::{self, Component, Services};

use crate::client::{self, ClientEnv};
use crate::dev::{self, DevOptions};
use crate::stack::{self, Service};
use crate::{admin, audit, bench, keys, nats_admin, risk, smartapi, trader};

// No doc comment here: clap would take it as the long help; `about` is the help.
#[derive(Debug, Parser)]
#[command(name = "pinnacle", version, about = "Pinnacle trading back end")]
pub struct Cli {
    /// Read settings from this env file (KEY=VALUE lines, such as the .pinnacle/dev.env
    /// that `pinnacle dev` writes) before anything else; its values win over the
    /// environment's. Every verb takes it.
    // Applied in `main` before parsing (client::env_file_in_args), so flags that fall back
    // to a variable see the file's values too; declared here for `--help` and validation.
    #[arg(long, env = "PINNACLE_ENV_FILE", global = true, value_name = "FILE")]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system locally: nats-server, SQLite, simulated feed, paper broker.
    Dev {
        /// Where SQLite, the JetStream store, keys and dev.env live.
        #[arg(long, default_value = ".pinnacle")]
        data_dir: PathBuf,
        /// User API listen address.
        #[arg(long, env = "PINNACLE_API_BIND", default_value = "127.0.0.1:8080")]
        api_bind: String,
        /// Also run the Angel One SmartAPI simulator in-process: the publisher streams and
        /// serves candles from it, and the demo user gets an `angel` (angel_one) account on it.
        #[arg(long, env = "PINNACLE_DEV_SMARTAPI_SIM")]
        smartapi_sim: bool,
        /// With --smartapi-sim: where the simulator listens (REST and both WebSockets on
        /// one port); the default takes a free port, which the banner prints.
        #[arg(
            long,
            env = "PINNACLE_DEV_SMARTAPI_SIM_BIND",
            default_value = "127.0.0.1:0",
            requires = "smartapi_sim"
        )]
        smartapi_sim_bind: std::net::SocketAddr,
    },
    /// Run one service, configured from the environment (see docs/CONFIGURATION.md).
    Serve {
        /// Which service.
        service: ServiceArg,
    },
    /// Apply database migrations to DATABASE_URL.
    Migrate,
    /// Master-key tools.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Print ticks as JSON lines.
    Ticks {
        /// Subject pattern.
        #[arg(default_value = "md.tick.>")]
        pattern: String,
        /// Stop after this many ticks.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Benchmarks (not tests); results belong in docs/BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Your orders: place, modify, cancel, get, list (NATS; docs/PROTOCOL.md).
    Order {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: trader::OrderCommand,
    },
    /// Your funds, positions, holdings and trades.
    Portfolio {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: trader::PortfolioCommand,
    },
    /// Your order events, oldest first (replayed from ORDER_EVENTS), then stop or follow.
    Events {
        #[command(flatten)]
        common: trader::Common,
        #[command(flatten)]
        args: trader::EventsArgs,
    },
    /// Market data: the last tick, candles, the instrument master, market status.
    Md {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: trader::MdCommand,
    },
    /// Audit-stream consumers: follow it, or verify its HMAC chains (see docs/AUDIT.md).
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Angel One SmartAPI tools.
    Smartapi {
        #[command(subcommand)]
        command: smartapi::SmartapiCommand,
    },
    /// Pre-trade limits, platform-wide or per user, through the user API (USER_API_URL,
    /// PINNACLE_API_ADMIN_TOKEN; see docs/PROTOCOL.md, "Pre-trade risk").
    Risk {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: risk::RiskCommand,
    },
    /// Turn a kill switch on (every new order in the scope is refused; cancels still work)
    /// or off, through the user API.
    KillSwitch {
        #[command(flatten)]
        common: trader::Common,
        /// `on` or `off`.
        #[arg(value_enum, ignore_case = true)]
        switch: risk::Switch,
        #[command(flatten)]
        scope: risk::ScopeArgs,
    },
    /// Users: create, list, show (user API; the admin token).
    Users {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: admin::UsersCommand,
    },
    /// API tokens: create, list, revoke (user API; the admin token or the user's own).
    Tokens {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: admin::TokensCommand,
    },
    /// Broker accounts: list, set (credentials from standard input), default, delete (user
    /// API; the admin token or the user's own).
    Accounts {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: admin::AccountsCommand,
    },
    /// Operate the NATS cluster without the `nats` CLI: password hashes, traders, streams
    /// (see nats/README.md).
    Nats {
        #[command(subcommand)]
        command: nats_admin::NatsCommand,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ServiceArg {
    Publisher,
    OrderWorker,
    UserApi,
}

impl ServiceArg {
    fn service(self) -> Service {
        match self {
            Self::Publisher => Service::Publisher,
            Self::OrderWorker => Service::OrderWorker,
            Self::UserApi => Service::UserApi,
        }
    }

    fn component(self) -> Component {
        match self {
            Self::Publisher => Component::Publisher,
            Self::OrderWorker => Component::OrderWorker,
            Self::UserApi => Component::UserApi,
        }
    }
}

/// Runs one parsed command line to its end.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let _telemetry = services(&cli.command).map(telemetry::init).transpose()?;
    match cli.command {
        Command::Dev {
            data_dir,
            api_bind,
            smartapi_sim,
            smartapi_sim_bind,
        } => {
            let options = DevOptions {
                data_dir,
                api_bind,
                smartapi_sim: smartapi_sim.then_some(smartapi_sim_bind),
            };
            dev::run(options).await
        }
        Command::Serve { service } => {
            let stop = stack::bounded_stop(dev::shutdown_signal());
            stack::serve(service.service(), stop).await
        }
        Command::Migrate => migrate().await,
        Command::Keys { command } => keys::run(command).await,
        Command::Ticks { pattern, count } => {
            client::ticks(&ClientEnv::load(None)?, &pattern, count).await
        }
        Command::Bench { command } => bench::run(command).await,
        Command::Order { common, command } => trader::order(&common, command).await,
        Command::Portfolio { common, command } => trader::portfolio(&common, command).await,
        Command::Events { common, args } => trader::events(&common, args).await,
        Command::Md { common, command } => trader::md(&common, command).await,
        Command::Audit { command } => audit::run(command).await,
        Command::Smartapi { command } => smartapi::run(command),
        Command::Risk { common, command } => risk::risk(&common, command).await,
        Command::KillSwitch {
            common,
            switch,
            scope,
        } => risk::kill_switch(&common, switch, scope).await,
        Command::Users { common, command } => admin::users(&common, command).await,
        Command::Tokens { common, command } => admin::tokens(&common, command).await,
        Command::Accounts { common, command } => admin::accounts(&common, command).await,
        Command::Nats { command } => nats_admin::run(command).await,
    }
}

/// Which services log: those that run services do; client verbs print only their output
/// (and errors) so they pipe cleanly.
fn services(command: &Command) -> Option<Services> {
    match command {
        Command::Dev { .. } => Some(Services::Components("pinnacle-dev")),
        Command::Serve { service } => Some(Services::One(service.component().service_name())),
        Command::Migrate => Some(Services::One("pinnacle")),
        _ => None,
    }
}

/// `pinnacle migrate`: applies the migrations to `DATABASE_URL`.
async fn migrate() -> anyhow::Result<()> {
    let settings = pinnacle_common::config::DatabaseSettings::from_env()?;
    stack::cli_database(&settings).await?;
    println!("migrations applied");
    Ok(())
}
