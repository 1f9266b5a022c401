//! End-to-end tests: the real services against a real nats-server and real databases.
//!
//! One binary (faster to link); one module per concern. Every database test runs on
//! SQLite and, when reachable, PostgreSQL (see `pinnacle_tests::backends`).

mod after_market;
mod angel_feed;
mod angel_one;
mod audit;
mod audit_chain;
mod audit_stream;
mod auth;
mod backpressure;
mod bad_input;
mod bench;
mod caches;
mod cli_verbs;
mod console;
mod dashboard;
mod dev_banner;
mod faults;
mod hostile_headers;
mod lifecycle;
mod login;
mod market_data;
mod md_snapshot;
mod metrics;
mod migrations;
mod nats_cluster;
mod nats_config;
mod openapi_fuzz;
mod operator_verbs;
mod order_events;
mod orders;
mod outbox;
mod ownership;
mod paper_books;
mod pool;
mod portfolio;
mod processes;
mod publisher;
mod rate_limits;
mod readiness;
mod replay;
mod risk;
mod rollback;
mod schemathesis;
mod secrets;
mod sessions_ready;
mod shutdown;
mod squareoff;
mod ticks;
mod tracing_http;
mod tracing_otlp;
mod user_api;
mod user_api_rules;
mod vault;

use pinnacle_tests::Backend;

/// Runs `test` once per available backend.
pub async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in pinnacle_tests::backends() {
        eprintln!("-- on {backend:?}");
        test(backend).await;
    }
}

/// Runs the `pinnacle` binary under test with `args`, `env` added to the environment (and
/// no OTLP export); returns (success, stdout, stderr).
pub fn run_pinnacle(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    run_pinnacle_input(args, env, "")
}

/// [`run_pinnacle`] with `input` on standard input.
pub fn run_pinnacle_input(
    args: &[&str],
    env: &[(&str, &str)],
    input: &str,
) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pinnacle-under-test"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("PINNACLE_ENV_FILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pinnacle runs");
    if let Some(mut stdin) = child.stdin.take() {
        // A verb that reads nothing closes the pipe early: that is not an error here.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("pinnacle finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
