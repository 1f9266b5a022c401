//! A client for Angel One's SmartAPI, written to `shared/smartapi/SPEC.md`.
//!
//! # Layout
//! (Modules are listed here as they land.)
//! - [`ticks`]: decoding one SmartWebSocketV2 binary packet (LTP, QUOTE, SNAP_QUOTE, DEPTH)
//!   and scaling its raw prices.
//! - [`stream`]: the SmartWebSocketV2 market-feed client: handshake, batched subscriptions
//!   within the server's limits, heartbeat, stall watchdog, reconnect with backoff and
//!   resubscribe, credential rollover; an async handle plus an event channel.

pub mod stream;
pub mod ticks;
