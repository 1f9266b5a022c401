//! The `pinnacle` command. Applies the env file, parses arguments and runs
//! [`pinnacle_cli::command::run`] on a Tokio runtime; nothing else lives here.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use pinnacle_cli::client;
use pinnacle_cli::command::{self, Cli};

/// jemalloc rather than glibc's malloc: on the order path (many small allocations freed
/// on other threads) it costs about a sixth less CPU an order, and peak memory stays
/// within the worker's budget (docs/BENCHMARKS.md, "2026-12-06, 20:55").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Before the arguments are parsed and before any thread starts: the env file's values
    // become the process environment, so every verb, and every flag that falls back to a
    // variable, reads its settings one way.
    if let Some(file) = client::env_file_in_args(std::env::args_os()) {
        if let Err(error) = client::apply_env_file(&file) {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse();
    let started = tokio::runtime::Runtime::new().map_err(anyhow::Error::from);
    let outcome = started.and_then(|runtime| {
        let outcome = runtime.block_on(command::run(cli));
        // Dropping the runtime would wait for every blocking task without limit; the stop
        // is bounded (stack::SHUTDOWN_BOUND), so this wait is too.
        runtime.shutdown_timeout(Duration::from_millis(500));
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
