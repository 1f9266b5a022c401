//! Benchmarks: they measure and report, side by side with raw-NATS baselines taken in the
//! same run. They assert no timing, but a benchmark whose requests fail exits non-zero,
//! and the end-to-end tests run each one at a small size so a broken one fails the build.
//!
//! - [`orders`]: `pinnacle bench orders`, order round trips beside a raw request-reply
//!   echo, a raw JetStream publish+ack and the raw database's read and write, over many
//!   users ([`users`]).
//! - [`ticks`]: `pinnacle bench ticks`, market-data throughput and latency beside raw
//!   publishing, and memory with thousands of symbols.
//! - [`measure`]: one measured row (latency percentiles, throughput, CPU, peak memory,
//!   failures); [`report`]: the orders table and JSON; [`process`]: CPU time and memory of
//!   this process; [`machine`]: the idle-CPU settings the latencies depend on.

use clap::Subcommand;

pub mod machine;
pub mod measure;
pub mod orders;
pub mod process;
pub mod report;
pub mod ticks;
pub mod users;

pub use measure::percentile;
pub use process::rss_kib;

/// `pinnacle bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Order round trip and throughput on the paper broker, beside a raw NATS echo, a raw
    /// JetStream publish+ack and a raw database read and write; exits non-zero if any
    /// request fails.
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
        /// PostgreSQL pool size of the stack under test (`DATABASE_MAX_CONNECTIONS`); SQLite
        /// ignores it (two readers and the writing connection, CONFIGURATION.md).
        #[arg(long, default_value_t = orders::DEFAULT_POOL)]
        database_connections: u32,
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

/// Runs one benchmark and prints its report; fails when its requests failed.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Orders {
            requests,
            clients,
            users,
            database_url,
            database_connections,
            paper_cash,
            json,
        } => {
            let report = orders::run(orders::OrdersOptions {
                requests,
                clients,
                users,
                database_url,
                database_connections,
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
        BenchCommand::Ticks {
            symbols,
            seconds,
            rate,
        } => {
            ticks::run(ticks::TicksOptions {
                symbols,
                seconds,
                rate,
            })
            .await
        }
    }
}
