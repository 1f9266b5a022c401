//! Pinnacle's wire protocol: what a client needs to talk to Pinnacle over NATS, and
//! nothing more.
//!
//! This is the lowest crate of the workspace. It knows no database, no HTTP server and
//! no vault (no sea-orm, sqlx, axum, hyper or tower); `tests/tests/layers.rs` fails if
//! it starts to. `pinnacle-common` re-exports every module under the same name, so
//! `pinnacle_common::model::Side` and `pinnacle_protocol::model::Side` are one type.
//!
//! # Layout
//! - [`subjects`]: every NATS subject, stream, queue-group and header name.
//! - [`codec`]: the wire codec (MessagePack maps, or JSON on request), with the bounded
//!   pre-scan ([`codec::scan`]) every payload passes before a deserialiser sees it.
//! - [`model`]: domain types that cross the wire: ticks, market-data requests, orders,
//!   portfolio replies, audit events.
//! - [`error`]: stable error codes and the structured error reply.
//! - [`clock`]: Indian Standard Time and the (shiftable) [`clock::Clock`].
//!
//! The layout of the subjects and payloads is documented in `docs/PROTOCOL.md`.

pub mod clock;
pub mod codec;
pub mod error;
pub mod model;
pub mod subjects;
