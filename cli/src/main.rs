//! The `pinnacle` command. Parses arguments, sets up telemetry and dispatches to
//! `pinnacle_cli`; nothing else lives here.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use pinnacle_cli::client::{self, ClientEnv};
use pinnacle_cli::dev::{self, DevOptions};
use pinnacle_cli::stack::{self, Service};
use pinnacle_common::model::{OrderRequest, OrderType, Side};
use secrecy::ExposeSecret;

#[derive(Debug, Parser)]
#[command(name = "pinnacle", version, about = "Pinnacle trading back end")]
struct Cli {
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
        /// Env file with NATS_URL (e.g. .pinnacle/dev.env).
        #[arg(long)]
        env_file: Option<PathBuf>,
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
    /// Order verbs.
    Order {
        #[command(subcommand)]
        command: OrderCommand,
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
    /// Market data: throughput and latency against raw NATS, and memory.
    Ticks {
        /// Simulated instruments.
        #[arg(long, default_value_t = 5_000)]
        symbols: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Ticks per second for the latency measurement.
        #[arg(long, default_value_t = 10_000)]
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

#[derive(Debug, Subcommand)]
enum OrderCommand {
    /// Place an order and print the reply.
    Place {
        /// Env file with NATS_URL, DEMO_USER_ID and DEMO_API_TOKEN.
        #[arg(long)]
        env_file: Option<PathBuf>,
        #[arg(long, default_value = "NSE")]
        exchange: String,
        #[arg(long)]
        symbol: String,
        #[arg(long, value_parser = ["BUY", "SELL", "buy", "sell"])]
        side: String,
        #[arg(long)]
        quantity: i64,
        /// Limit price in rupees (e.g. 820.50); omit for a market order.
        #[arg(long)]
        price: Option<String>,
        /// Defaults to a fresh UUID; reuse one to retry safely.
        #[arg(long)]
        client_order_id: Option<String>,
        /// Broker account label, when the user has several.
        #[arg(long)]
        account: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let quiet = matches!(
        cli.command,
        Command::Ticks { .. }
            | Command::Order { .. }
            | Command::Keys { .. }
            | Command::Bench { .. }
            | Command::Smartapi { .. }
            | Command::Audit { .. }
    );
    let _telemetry = if quiet {
        None
    } else {
        Some(pinnacle_common::telemetry::init("pinnacle")?)
    };
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
            stack::serve(service, dev::shutdown_signal()).await
        }
        Command::Migrate => {
            let settings = pinnacle_common::config::DatabaseSettings::from_env()?;
            stack::database(&settings).await?;
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
        Command::Ticks {
            env_file,
            pattern,
            count,
        } => client::ticks(&ClientEnv::load(env_file.as_deref())?, &pattern, count).await,
        Command::Order {
            command:
                OrderCommand::Place {
                    env_file,
                    exchange,
                    symbol,
                    side,
                    quantity,
                    price,
                    client_order_id,
                    account,
                },
        } => {
            let price = price
                .map(|p| {
                    pinnacle_publisher::sim::parse_rupees(&p)
                        .ok_or_else(|| anyhow::anyhow!("--price must be rupees like 820.50"))
                })
                .transpose()?;
            let request = OrderRequest {
                client_order_id: client_order_id
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                exchange,
                symbol,
                side: if side.eq_ignore_ascii_case("BUY") {
                    Side::Buy
                } else {
                    Side::Sell
                },
                order_type: if price.is_some() {
                    OrderType::Limit
                } else {
                    OrderType::Market
                },
                quantity,
                price,
                trigger_price: None,
                product: Default::default(),
                account,
            };
            client::place(&ClientEnv::load(env_file.as_deref())?, &request)
                .await
                .map(|_| ())
        }
    }
}
