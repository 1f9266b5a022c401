//! Pinnacle's store: the database schema as SeaORM entities, and opening the database.
//!
//! Layer 1 (foundations), beside `pinnacle-metrics` and `pinnacle-vault`, below
//! `pinnacle-audit`, `pinnacle-common` and the services: it knows no NATS, no HTTP server and no other
//! Pinnacle crate (a ciphertext column is a string here; sealing it is
//! `pinnacle_common::keystore`). The tables
//! themselves are created by `pinnacle-migrations`. `tests/layers.rs` checks the order;
//! see "Crates and layers" in `docs/ARCHITECTURE.md`. `pinnacle_common::{db, entities}`
//! and `pinnacle_common::config::DatabaseSettings` are this crate's modules and settings
//! under their old paths.
//!
//! # Layout
//! - [`entities`]: one SeaORM entity per table. Relations point one way, from a child
//!   table to its parent (`api_tokens` and `broker_accounts` to `users`).
//! - [`db`]: connecting to SQLite or PostgreSQL from `DATABASE_URL` (SQLite files
//!   owner-only), and the client span around each statement.
//! - [`settings`]: [`DatabaseSettings`] (`DATABASE_*`) and [`DatabaseConfigError`].
//! - [`compose`]: [`compose::Composer`], several PostgreSQL writes made into one statement.
//! - `testing` (feature `testing`): fresh PostgreSQL databases for tests.
//! - [`writes`]: [`writes::WriteTxn`], a write transaction that sends SQLite statements
//!   whose answers are not read together with the next one that is, and
//!   [`writes::Writer`], through which a process writes (on SQLite a connection of its
//!   own, beside the readers' pool).

pub mod compose;
pub mod db;
pub mod entities;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;
pub mod writes;

pub use settings::{redact_url, DatabaseConfigError, DatabaseSettings};
