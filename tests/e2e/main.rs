//! End-to-end tests: the real services against a real nats-server and real databases.
//!
//! One binary (faster to link); one module per concern. Every database test runs on
//! SQLite and, when reachable, PostgreSQL (see `pinnacle_tests::backends`).

mod audit;
mod auth;
mod bad_input;
mod market_data;
mod nats_config;
mod orders;
mod publisher;
mod replay;
mod secrets;
mod ticks;
mod user_api;

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
