//! Pinnacle's service runtime: what every service runs on, whatever it serves.
//!
//! Layer 2, above `pinnacle-protocol`, `pinnacle-metrics` and `pinnacle-vault` (whose
//! settings [`config`] names), below `pinnacle-audit`, `pinnacle-common`, the services and
//! the CLI. It links NATS and the HTTP server of `/metrics` and the probes (axum), and no
//! database: the store's `DATABASE_*` settings stay with `pinnacle-store`, and
//! `pinnacle_common::config` names both. The audit counters (`audit_publish_failed` …) are `pinnacle_audit::metrics`
//! because they take the audit crate's error type; the audit checkpoint policy
//! ([`config::CheckpointPolicy`]) is here, with its settings.
//! `tests/layers.rs` checks the order; see "Crates and layers" in `docs/ARCHITECTURE.md`.
//! `pinnacle_common::{config, telemetry, nats, …}` are this crate's modules under their
//! old paths.
//!
//! # Layout
//! - [`config`]: typed settings, loaded from the environment with `envy`.
//! - [`nats`]: connecting to NATS with deliberate buffer sizes.
//! - [`jetstream`]: which failed publishes a writer retries (a leader change) and which not.
//! - [`micro`]: NATS micro-services discovery (`$SRV.PING/INFO/STATS`).
//! - [`metrics`]: Prometheus metrics (one registry, `pinnacle_metrics`) and the `/metrics`
//!   endpoint.
//! - [`telemetry`]: tracing, OTLP export and W3C trace context in NATS headers.
//! - [`supervise`]: rebuilding a service on a new connection when async-nats's connection
//!   handler dies (a panic on a hostile header).
//! - [`health`]: `/healthz` and `/readyz` from the state of every NATS connection.
//! - [`serve`]: serving requests with bounded concurrency and a drain; queue-group members
//!   that hold at most a bound of requests and leave the group when full.
//! - [`shares`]: counting what each user or sender holds at once, for limits per user.
//! - [`shutdown`]: the cancellation token every service's `run` takes.
//! - [`throttle`]: one warning per interval for what a sender can provoke at will.

pub mod config;
pub mod health;
pub mod jetstream;
pub mod metrics;
pub mod micro;
pub mod nats;
pub mod serve;
pub mod shares;
pub mod supervise;
pub mod telemetry;
pub mod throttle;

pub mod shutdown {
    //! Cooperative shutdown: every service's `run` takes a [`Shutdown`] and returns once it fires.
    pub use tokio_util::sync::CancellationToken as Shutdown;
}
