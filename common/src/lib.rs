//! Pinnacle's shared library: what two or more services agree on that needs the database,
//! NATS and the vault together (key bookkeeping, API tokens, the broker and feed ports),
//! and one path to everything below it.
//!
//! Layer: above `pinnacle-protocol` (the wire: what a client needs), the vault, the store,
//! the runtime and the audit crate; below the services and the CLI. `tests/layers.rs`
//! checks the order; see "Crates and layers" in `docs/ARCHITECTURE.md`.
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
//! Re-exported from `pinnacle-store`:
//! - [`entities`]: SeaORM entities for the tables that `pinnacle-migrations` creates.
//! - [`db`]: opening SQLite or PostgreSQL from `DATABASE_URL`.
//! - [`writes`]: write transactions that send SQLite statements in as few round trips as
//!   their reads allow.
//!
//! Re-exported from `pinnacle-runtime` (what every service runs on):
//! - [`config`]: typed settings, loaded from the environment with `envy` (with the store's
//!   `DATABASE_*`).
//! - [`nats`]: connecting to NATS with deliberate buffer sizes.
//! - [`jetstream`]: which failed publishes a writer retries (a leader change) and which not.
//! - [`micro`]: NATS micro-services discovery (`$SRV.PING/INFO/STATS`).
//! - [`metrics`]: Prometheus metrics (one registry) and the `/metrics` endpoint, with the
//!   audit crate's counters.
//! - [`telemetry`]: tracing, OTLP export and W3C trace context in NATS headers.
//! - [`supervise`]: rebuilding a service on a new connection when async-nats's connection
//!   handler dies (a panic on a hostile header).
//! - [`health`]: `/healthz` and `/readyz` from the state of every NATS connection.
//! - [`serve`]: serving requests with bounded concurrency and a drain; queue-group members
//!   that hold at most a bound of requests and leave the group when full.
//! - [`shutdown`]: the cancellation token every service's `run` takes.
//!
//! Re-exported from `pinnacle-audit`, under its old name:
//! - [`audit`]: the audit stream: per-user HMAC chains written with JetStream's ack,
//!   signed checkpoints, the verifier, and the generation register.
//!
//! Owned here:
//! - [`keystore`]: the vault's database side: key bookkeeping, sealing rows, rotation.
//! - [`tokens`]: API token minting, parsing and keyed hashing.
//! - [`auth`]: resolving a bearer token to its user.
//! - [`broker`]: the `Broker` port, implemented by the paper broker and (later) Angel One.
//! - [`calendar`]: exchange hours in IST and the holiday calendar (market status, the
//!   simulated feed's hours, the paper broker's after-market orders).
//! - [`feed`]: the market-feed port, implemented by the simulator and replay.
//! - [`invalidate`]: announcing a change to what order workers cache (accounts, limits).

pub use pinnacle_audit as audit;
pub use pinnacle_protocol::{clock, codec, error, model, subjects};
pub use pinnacle_runtime::{
    health, jetstream, micro, nats, serve, shares, shutdown, supervise, telemetry, throttle,
};
// A `#[macro_export]` macro of the runtime's telemetry, at its old path.
pub use pinnacle_runtime::tick_consumer_span;
pub use pinnacle_store::{compose, db, entities, writes};
pub use pinnacle_vault as crypto;

pub mod auth;
pub mod broker;
pub mod calendar;
pub mod config;
pub mod feed;
pub mod invalidate;
pub mod keystore;
pub mod metrics;
pub mod tokens;
