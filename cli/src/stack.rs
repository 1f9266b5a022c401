//! Wiring: each service started from its settings, and the whole stack in one process.
//!
//! `pinnacle serve <service>` starts one of these; `pinnacle dev` and the end-to-end
//! tests start all three with [`Stack::start`]. Each service gets its own NATS
//! connection, named after it, as it would in production, and runs under
//! [`supervise`](pinnacle_common::supervise): when that connection's handler dies (an
//! async-nats panic on a hostile header), the service is rebuilt on a new connection.
//!
//! # Layout
//! - `lifecycle`: [`SHUTDOWN_GRACE`], [`SHUTDOWN_BOUND`], [`bounded_stop`] and joining
//!   the service tasks.
//! - `connect`: what a service opens first ([`database`], [`vault_ready`], [`nats`],
//!   [`prepare_audit_stream`], [`serve_metrics`]) and the verbs' [`cli_database`] and
//!   [`cli_connect`].
//! - `publisher`: [`spawn_publisher`]; `worker`: [`spawn_worker`] and the Angel One
//!   broker ([`angel_one_broker`]); `user_api`: [`spawn_user_api`].
//! - `whole`: [`StackSettings`] and [`Stack`], all three in this process.
//! - `serve`: [`Service`] and [`serve()`], one service from the environment.
//!
//! The files import only from `lifecycle` and `connect` (and `whole` and `serve` from the
//! three services); this file only re-exports.

mod connect;
mod lifecycle;
mod publisher;
mod serve;
mod user_api;
mod whole;
mod worker;

pub use connect::{
    cli_connect, cli_database, database, nats, prepare_audit_stream, serve_metrics, vault_ready,
};
pub use lifecycle::{bounded_stop, ServiceResult, SHUTDOWN_BOUND, SHUTDOWN_GRACE};
pub use publisher::spawn_publisher;
pub use serve::{serve, Service};
pub use user_api::spawn_user_api;
pub use whole::{Stack, StackSettings};
pub use worker::{angel_one_broker, angel_one_broker_audited, spawn_worker};
