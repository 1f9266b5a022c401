//! The `pinnacle` command. Parses arguments, sets up telemetry and dispatches to
//! `pinnacle_cli`; nothing else lives here.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use pinnacle_cli::client::{self, ClientEnv};
use pinnacle_cli::dev::{self, DevOptions};
use pinnacle_cli::stack::{self, Service};
use pinnacle_cli::trader;
use secrecy::ExposeSecret;

#[derive(Debug, Parser)]
#[command(name = "pinnacle", version, about = "Pinnacle trading back end")]
struct Cli {
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
        command: KeysCommand,
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
        command: BenchCommand,
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
        command: AuditCommand,
    },
    /// Angel One SmartAPI tools.
    Smartapi {
        #[command(subcommand)]
        command: SmartapiCommand,
    },
    /// Pre-trade limits, platform-wide or per user, through the user API (USER_API_URL,
    /// PINNACLE_API_ADMIN_TOKEN; see docs/PROTOCOL.md, "Pre-trade risk").
    Risk {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: pinnacle_cli::risk::RiskCommand,
    },
    /// Turn a kill switch on (every new order in the scope is refused; cancels still work)
    /// or off, through the user API.
    KillSwitch {
        #[command(flatten)]
        common: trader::Common,
        /// `on` or `off`.
        #[arg(value_enum, ignore_case = true)]
        switch: pinnacle_cli::risk::Switch,
        #[command(flatten)]
        scope: pinnacle_cli::risk::ScopeArgs,
    },
    /// Users: create, list, show (user API; the admin token).
    Users {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: pinnacle_cli::admin::UsersCommand,
    },
    /// API tokens: create, list, revoke (user API; the admin token or the user's own).
    Tokens {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: pinnacle_cli::admin::TokensCommand,
    },
    /// Broker accounts: list, set (credentials from standard input), default, delete (user
    /// API; the admin token or the user's own).
    Accounts {
        #[command(flatten)]
        common: trader::Common,
        #[command(subcommand)]
        command: pinnacle_cli::admin::AccountsCommand,
    },
    /// Operate the NATS cluster without the `nats` CLI: password hashes, traders, streams
    /// (see nats/README.md).
    Nats {
        #[command(subcommand)]
        command: NatsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum NatsCommand {
    /// Print a bcrypt hash of the password on standard input (one line), for
    /// passwords.conf.
    Passwd {
        /// bcrypt cost (4–31); nats-server checks one hash per connection.
        #[arg(long, default_value_t = pinnacle_cli::nats_admin::DEFAULT_COST)]
        cost: u32,
    },
    /// Add a trader to auth.conf with a password read from standard input, then reload
    /// the servers (`kill -HUP`): no restart, no dropped connections.
    AddTrader {
        /// The trader's Pinnacle user id (a lower-case UUID), also their NATS user name.
        user_id: String,
        /// Read the trader's NATS password from standard input (one line); required, so
        /// that it never sits in shell history or the process list.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The auth file; `trader.conf.tmpl` must be next to it.
        #[arg(long, default_value = "nats/auth.conf")]
        auth_file: PathBuf,
        /// bcrypt cost (4–31).
        #[arg(long, default_value_t = pinnacle_cli::nats_admin::DEFAULT_COST)]
        cost: u32,
    },
    /// JetStream streams.
    Streams {
        #[command(subcommand)]
        command: StreamsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum StreamsCommand {
    /// Create every stream defined in DIR that does not exist, and update those whose
    /// live config differs (NATS_URL, NATS_USER/NATS_PASSWORD: the admin).
    Apply {
        /// The directory of stream definitions (JetStream API JSON).
        #[arg(long, default_value = "nats/streams")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Follow audit events live (NATS_URL; as the `auditor` NATS user in production).
    Tail {
        /// Only this user's events.
        #[arg(long)]
        user: Option<String>,
        /// Start at this stream sequence (default: only new events).
        #[arg(long)]
        since_seq: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// The stream to read.
        #[arg(long, default_value = "AUDIT")]
        stream: String,
    },
    /// Check every chain link and checkpoint, and that every order has its audit event;
    /// exits non-zero on any problem (NATS_URL, DATABASE_URL, PINNACLE_MASTER_KEY*).
    Verify {
        /// Only this user's chain, checkpoints and orders.
        #[arg(long)]
        user: Option<String>,
        /// The stream to read (AUDIT, or a copy with the same subjects).
        #[arg(long, default_value = "AUDIT")]
        stream: String,
        /// Skip the orders-have-audit-events check.
        #[arg(long)]
        skip_orders: bool,
        /// Report a chain whose last link is older than this many seconds and covered by
        /// no checkpoint (default: PINNACLE_AUDIT_CHECKPOINT_SECS + PINNACLE_AUDIT_SEAL_GRACE_SECS).
        #[arg(long, conflicts_with = "skip_sealing")]
        max_unsealed_secs: Option<u64>,
        /// Don't check that chains are sealed by checkpoints (e.g. for an old backup).
        #[arg(long)]
        skip_sealing: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SmartapiCommand {
    /// Decode one SmartWebSocketV2 binary tick given as hex; prints it as JSON.
    Decode {
        /// The frame in hex; spaces and `0x` prefixes are allowed (several arguments are joined).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        hex: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Order round trip and throughput on the paper broker, beside a raw NATS echo and a
    /// raw JetStream publish+ack; exits non-zero if any request fails.
    Orders {
        /// Requests per concurrency level (orders, and each baseline).
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Concurrency levels.
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        clients: Vec<usize>,
        /// Users (each with its own token and paper account) to spread the orders over;
        /// default: as many as clients in each run.
        #[arg(long)]
        users: Option<usize>,
        /// Database URL (default: a temporary SQLite file); PostgreSQL wants an empty database.
        #[arg(long)]
        database_url: Option<String>,
        /// Starting cash of every paper account, paise (default: enough for every order).
        #[arg(long)]
        paper_cash: Option<i64>,
        /// Print the report as JSON instead of a Markdown table.
        #[arg(long)]
        json: bool,
    },
    /// Market data: throughput, fan-out and latency against raw NATS, CPU and memory.
    Ticks {
        /// Simulated instruments.
        #[arg(long, default_value_t = 5_000)]
        symbols: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Ticks per second for the latency measurement (in 1 ms batches).
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ServiceArg {
    Publisher,
    OrderWorker,
    UserApi,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random master key for PINNACLE_MASTER_KEY.
    Generate,
    /// Append a new random key to a key file (PINNACLE_MASTER_KEY_FILE format).
    Add {
        /// The key file; created with mode 0600 if missing.
        #[arg(long, env = "PINNACLE_MASTER_KEY_FILE")]
        file: PathBuf,
    },
    /// Show, per master key id, how many accounts it wraps and how many encryptions it made.
    Status,
    /// Rewrap every data key under the current master key, online.
    Rotate,
    /// Retire a master key; refused while any account still uses it.
    Retire {
        /// The key id.
        key_id: u32,
    },
}

fn main() -> std::process::ExitCode {
    // Before the arguments are parsed and before any thread starts: the env file's values
    // become the process environment, so every verb, and every flag that falls back to a
    // variable, reads its settings one way.
    if let Some(file) = client::env_file_in_args(std::env::args_os()) {
        if let Err(error) = client::apply_env_file(&file) {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse();
    let started = tokio::runtime::Runtime::new().map_err(anyhow::Error::from);
    let outcome = started.and_then(|runtime| {
        let outcome = runtime.block_on(run(cli));
        // Dropping the runtime would wait for every blocking task without limit; the stop
        // is bounded (stack::SHUTDOWN_BOUND), so this wait is too.
        runtime.shutdown_timeout(std::time::Duration::from_millis(500));
        outcome
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Services log; client verbs print only their output (and errors) so they pipe cleanly.
    use pinnacle_common::telemetry::{self, Component, Services};
    let services = match &cli.command {
        Command::Dev { .. } => Some(Services::Components("pinnacle-dev")),
        Command::Serve { service } => Some(Services::One(
            match service {
                ServiceArg::Publisher => Component::Publisher,
                ServiceArg::OrderWorker => Component::OrderWorker,
                ServiceArg::UserApi => Component::UserApi,
            }
            .service_name(),
        )),
        Command::Migrate => Some(Services::One("pinnacle")),
        _ => None,
    };
    let _telemetry = services.map(telemetry::init).transpose()?;
    match cli.command {
        Command::Smartapi {
            command: SmartapiCommand::Decode { hex },
        } => {
            println!(
                "{}",
                pinnacle_cli::smartapi::decode_command(&hex.join(" "))?
            );
            Ok(())
        }
        Command::Audit { command } => match command {
            AuditCommand::Tail {
                user,
                since_seq,
                json,
                count,
                stream,
            } => {
                let options = pinnacle_cli::audit::TailOptions {
                    user,
                    since_seq,
                    json,
                    count,
                };
                pinnacle_cli::audit::tail_command(&stream, &options).await
            }
            AuditCommand::Verify {
                user,
                stream,
                skip_orders,
                max_unsealed_secs,
                skip_sealing,
                json,
            } => {
                let max_unsealed = match (skip_sealing, max_unsealed_secs) {
                    (true, _) => None,
                    (false, Some(secs)) => Some(std::time::Duration::from_secs(secs)),
                    (false, None) => {
                        Some(pinnacle_common::config::AuditSettings::from_env()?.max_unsealed())
                    }
                };
                let options = pinnacle_cli::audit::VerifyOptions {
                    stream,
                    user,
                    check_orders: !skip_orders,
                    max_unsealed,
                    progress: true,
                    ..Default::default()
                };
                pinnacle_cli::audit::verify_command(&options, json).await
            }
        },
        Command::Dev {
            data_dir,
            api_bind,
            smartapi_sim,
        } => {
            dev::run(DevOptions {
                data_dir,
                api_bind,
                smartapi_sim,
            })
            .await
        }
        Command::Serve { service } => {
            let service = match service {
                ServiceArg::Publisher => Service::Publisher,
                ServiceArg::OrderWorker => Service::OrderWorker,
                ServiceArg::UserApi => Service::UserApi,
            };
            stack::serve(service, stack::bounded_stop(dev::shutdown_signal())).await
        }
        Command::Migrate => {
            let settings = pinnacle_common::config::DatabaseSettings::from_env()?;
            stack::cli_database(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys { command } => match command {
            KeysCommand::Generate => {
                println!(
                    "{}",
                    pinnacle_common::crypto::Vault::generate_master_key().expose_secret()
                );
                Ok(())
            }
            KeysCommand::Add { file } => {
                let id = pinnacle_cli::keys::add_to_file(&file)?;
                println!("added master key {id} to {}", file.display());
                Ok(())
            }
            KeysCommand::Status => pinnacle_cli::keys::status().await,
            KeysCommand::Rotate => pinnacle_cli::keys::rotate().await,
            KeysCommand::Retire { key_id } => pinnacle_cli::keys::retire(key_id).await,
        },
        Command::Bench {
            command:
                BenchCommand::Orders {
                    requests,
                    clients,
                    users,
                    database_url,
                    paper_cash,
                    json,
                },
        } => {
            let report =
                pinnacle_cli::bench::orders::run(pinnacle_cli::bench::orders::OrdersOptions {
                    requests,
                    clients,
                    users,
                    database_url,
                    paper_cash,
                })
                .await?;
            if json {
                println!("{}", report.to_json()?);
            } else {
                println!("{}", report.to_markdown());
            }
            report.check()
        }
        Command::Bench {
            command:
                BenchCommand::Ticks {
                    symbols,
                    seconds,
                    rate,
                },
        } => {
            pinnacle_cli::bench::ticks::run(pinnacle_cli::bench::ticks::TicksOptions {
                symbols,
                seconds,
                rate,
            })
            .await
        }
        Command::Nats { command } => nats(command).await,
        Command::Risk { common, command } => pinnacle_cli::risk::risk(&common, command).await,
        Command::KillSwitch {
            common,
            switch,
            scope,
        } => pinnacle_cli::risk::kill_switch(&common, switch, scope).await,
        Command::Users { common, command } => pinnacle_cli::admin::users(&common, command).await,
        Command::Tokens { common, command } => pinnacle_cli::admin::tokens(&common, command).await,
        Command::Accounts { common, command } => {
            pinnacle_cli::admin::accounts(&common, command).await
        }
        Command::Ticks { pattern, count } => {
            client::ticks(&ClientEnv::load(None)?, &pattern, count).await
        }
        Command::Order { common, command } => trader::order(&common, command).await,
        Command::Portfolio { common, command } => trader::portfolio(&common, command).await,
        Command::Md { common, command } => trader::md(&common, command).await,
        Command::Events { common, args } => trader::events(&common, args).await,
    }
}

async fn nats(command: NatsCommand) -> anyhow::Result<()> {
    use pinnacle_cli::nats_admin::{self, Applied};
    match command {
        NatsCommand::Passwd { cost } => {
            let password = nats_admin::read_password(std::io::stdin().lock())?;
            println!("{}", nats_admin::hash(&password, cost)?);
        }
        NatsCommand::AddTrader {
            user_id,
            password_stdin: _,
            auth_file,
            cost,
        } => {
            let password = nats_admin::read_password(std::io::stdin().lock())?;
            nats_admin::add_trader(&auth_file, &user_id, &nats_admin::hash(&password, cost)?)?;
            eprintln!(
                "added {user_id} to {}; reload the servers (kill -HUP <nats-server pid>)",
                auth_file.display()
            );
        }
        NatsCommand::Streams {
            command: StreamsCommand::Apply { dir },
        } => {
            let settings = pinnacle_common::config::NatsSettings::from_env()?;
            let client = pinnacle_common::nats::connect(&settings, "pinnacle-nats-admin").await?;
            let mut failed = 0;
            for path in nats_admin::definitions(&dir)? {
                match nats_admin::apply_stream(&client, &path).await {
                    Ok((name, Applied::Created)) => println!("{name}: created"),
                    Ok((name, Applied::Unchanged)) => println!("{name}: unchanged"),
                    Ok((name, Applied::Updated(fields))) => {
                        println!("{name}: updated {}", fields.join(", "))
                    }
                    Err(error) => {
                        eprintln!("{}: {error}", path.display());
                        failed += 1;
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} stream definition(s) not applied");
        }
    }
    Ok(())
}
