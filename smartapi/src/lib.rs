//! A client for Angel One's SmartAPI, written to `shared/smartapi/SPEC.md`.
//!
//! # Layout
//! - [`bounds`]: size and nesting limits on every reply and message, checked before parsing.
//! - [`envelope`]: the two response envelopes, lenient numbers, and the plain-text 403.
//! - [`error`]: one error type for every SmartAPI call, classified by what to do next.
//! - [`totp`]: RFC 6238 codes from the stored base32 seed, for login.
//! - [`rest`]: the REST client for one account: headers, routes, timeouts, and the
//!   account's egress (its registered static IP or a proxy).
//! - [`types`]: request and reply records, with the broker's field names; prices in paise.
//! - [`limits`]: the published per-client-code rate limits, enforced by queuing and then
//!   by a clear refusal.
//! - [`session`]: sessions per account: login on first use, renewal on AG8001 or at the
//!   daily rollover, never two logins at once for one account.
//! - [`tag`]: the order tag derived from Pinnacle's order id, for idempotency at the broker.
//! - [`order_updates`]: the order-update WebSocket.
//! - [`ticks`]: decoding one SmartWebSocketV2 binary packet (LTP, QUOTE, SNAP_QUOTE, DEPTH)
//!   and scaling its raw prices.
//! - [`stream`]: the SmartWebSocketV2 market-feed client: handshake, batched subscriptions
//!   within the server's limits, heartbeat, stall watchdog, reconnect with backoff and
//!   resubscribe, credential rollover; an async handle plus an event channel.

pub mod bounds;
pub mod envelope;
pub mod error;
pub mod limits;
pub mod order_updates;
pub mod rest;
pub mod session;
pub mod stream;
pub mod tag;
pub mod ticks;
pub mod totp;
pub mod types;

pub use error::{SmartApiError, SmartApiErrorKind};
pub use rest::{AccountKey, Egress, RestClient, RestConfig};
