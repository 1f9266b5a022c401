//! The audit stream: a tamper-evident HMAC chain per user, signed checkpoints, a verifier.
//!
//! "Audit before access": callers record an event with [`AuditLog::record`] and touch the
//! credentials only after it returns `Ok`, which means JetStream has stored the event.
//! Any failure (no stream, no server, a timeout) is an [`AuditError`], and the caller
//! refuses the request: auditing fails closed. The format is documented in `docs/AUDIT.md`.
//!
//! # Layout
//! - [`chain`]: a link's headers and its HMAC-SHA256 hash.
//! - [`log`]: [`AuditLog`], the writer: one chain per subject, serialised by JetStream's
//!   expected-last-subject-sequence, with the tip cached in memory ([`AuditChains`], shared
//!   by a process's writers) and its checkpointing.
//! - [`checkpoint`]: signed checkpoints, in the stream and in the `audit_checkpoints` table.
//! - [`verify`]: checks every link and checkpoint and reports the first bad sequence;
//!   [`reader`]: the one loop that feeds it the stored messages of a stream.
//! - [`stream_check`]: checks the stream itself: no history-discarding limit, deny flags on,
//!   history from sequence 1 without gaps.
//! - [`orders`]: matches orders to the audit events that must precede them.
//! - [`generations`]: broker account rows older than the generation register or the audit
//!   trail says was written (rolled back).
//! - [`register`]: the generation register itself, a JetStream KV bucket outside the
//!   database that a service consults before it decrypts a row (`pinnacle_common::keystore`
//!   re-exports it as `generations`): a witness the database cannot rewrite, like the
//!   audit stream.
//! - [`metrics`]: the audit counters (they take an [`AuditError`]).
//! - `error.rs`: [`AuditError`]; `stream.rs`: the stream's definition and start-up
//!   ([`stream_config`], [`prepare_stream`]); `trail.rs`: a user's trail, page by page
//!   ([`AuditLog::read_user`]).
//!
//! This file only declares and re-exports: no file of the crate imports another in a
//! circle (`tests/import_cycles.rs`).
//!
//! Layer 3, above `pinnacle-protocol`, `pinnacle-vault`, `pinnacle-store` (the
//! `audit_checkpoints`, `orders` and `broker_accounts` tables) and `pinnacle-runtime`
//! (JetStream retries, trace context), below `pinnacle-common`, whose `audit` module is
//! this crate under its old path. `tests/layers.rs` checks the order; see "Crates and
//! layers" in `docs/ARCHITECTURE.md`.

pub mod chain;
pub mod checkpoint;
mod error;
pub mod generations;
pub mod log;
pub mod metrics;
pub mod orders;
pub mod reader;
pub mod register;
mod stream;
pub mod stream_check;
mod trail;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointPolicy};
pub use error::AuditError;
pub use log::{AuditChains, AuditLog};
pub use stream::{ensure_stream, prepare_stream, stream_config, Prepared};
pub use trail::{StoredEvent, UserTrail};
