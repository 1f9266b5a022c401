//! Pinnacle's shared library: everything two or more services agree on.
//!
//! Layer: above `pinnacle-protocol` (the wire: what a client needs), below the SmartAPI
//! client, the services and the CLI. `tests/tests/layers.rs` checks the order; see
//! "Crates and layers" in `docs/ARCHITECTURE.md`.
//!
//! # Layout
//! Re-exported from `pinnacle-protocol`, so that `pinnacle_common::model::Side` and
//! `pinnacle_protocol::model::Side` are one path to one type:
//! - [`subjects`]: every NATS subject, stream, queue-group and header name.
//! - [`clock`]: Indian Standard Time and the (shiftable) [`clock::Clock`].
//! - [`codec`]: the wire codec (MessagePack maps, or JSON on request).
//! - [`error`]: stable error codes and the structured error reply.
//! - [`model`]: domain types that cross the wire: ticks, market-data requests, orders, audit events.
//!
//! Re-exported from `pinnacle-vault`, under its old name:
//! - [`crypto`]: envelope encryption (AES-256-GCM) under a master key ring, row-bound AAD.
//!
//! Owned here:
//! - [`config`]: typed settings, loaded from the environment with `envy`.
//! - [`entities`]: SeaORM entities for the tables that `pinnacle-migrations` creates.
//! - [`db`]: opening SQLite or PostgreSQL from `DATABASE_URL`.
//! - [`keystore`]: the vault's database side: key bookkeeping, sealing rows, rotation.
//! - [`tokens`]: API token minting, parsing and keyed hashing.
//! - [`auth`]: resolving a bearer token to its user.
//! - [`audit`]: the audit stream: per-user HMAC chains written with JetStream's ack,
//!   signed checkpoints, the verifier.
//! - [`broker`]: the `Broker` port, implemented by the paper broker and (later) Angel One.
//! - [`calendar`]: exchange hours in IST and the holiday calendar (market status, the
//!   simulated feed's hours, the paper broker's after-market orders).
//! - [`feed`]: the market-feed port, implemented by the simulator and replay.
//! - [`nats`]: connecting to NATS with deliberate buffer sizes.
//! - [`invalidate`]: announcing a change to what order workers cache (accounts, limits).
//! - [`jetstream`]: which failed publishes a writer retries (a leader change) and which not.
//! - [`micro`]: NATS micro-services discovery (`$SRV.PING/INFO/STATS`).
//! - [`metrics`]: Prometheus metrics (one registry) and the `/metrics` endpoint.
//! - [`telemetry`]: tracing, OTLP export and W3C trace context in NATS headers.
//! - [`supervise`]: rebuilding a service on a new connection when async-nats's connection
//!   handler dies (a panic on a hostile header).
//! - [`health`]: `/healthz` and `/readyz` from the state of every NATS connection.
//! - [`serve`]: serving requests with bounded concurrency and a drain; queue-group members
//!   that hold at most a bound of requests and leave the group when full.
//! - [`shutdown`]: the cancellation token every service's `run` takes.

pub use pinnacle_protocol::{clock, codec, error, model, subjects};
pub use pinnacle_vault as crypto;

pub mod audit;
pub mod auth;
pub mod broker;
pub mod calendar;
pub mod config;
pub mod db;
pub mod entities;
pub mod feed;
pub mod health;
pub mod invalidate;
pub mod jetstream;
pub mod keystore;
pub mod metrics;
pub mod micro;
pub mod nats;
pub mod serve;
pub mod supervise;
pub mod telemetry;
pub mod tokens;

pub mod shutdown {
    //! Cooperative shutdown: every service's `run` takes a [`Shutdown`] and returns once it fires.
    pub use tokio_util::sync::CancellationToken as Shutdown;
}
