//! The order worker: a transport-free order engine, served over NATS as a queue-group
//! responder that places orders for authenticated users.
//!
//! # Layout
//! Two halves, and the dependency goes one way: the NATS shell and the adapters use the
//! engine; the engine uses none of them.
//!
//! - [`engine`]: **the order engine**, with no transport. [`engine::Engine`] owns the
//!   order store, the vault, the audit sink, the brokers, the paper books, the leases and
//!   the settings, and its small API (place, submit, modify, cancel, get, list, the
//!   portfolio reads, reconcile, square-off, apply a broker's update) is what everything
//!   else calls. Where an order is placed, a credential decrypted and an audit event
//!   written: see the "Where things happen" list in [`engine`].
//! - The NATS shell:
//!   - [`worker`]: [`Worker`] = the engine + the NATS connection + the API-token cache +
//!     the micro-service statistics.
//!   - [`handler`]: one request: size, subject, token ↔ subject user and scope, decode,
//!     the engine's verb, exactly one reply.
//!   - [`service`]: the subscription loop (bounded, permit before receive), graceful
//!     drain, and the side tasks (outbox relay, the announcements' sweep, the engine's
//!     reconciler and square-off).
//!   - [`inbox`]: token revocations and cache invalidations, held so that each applies
//!     before any order that arrived after it.
//!   - [`events`]: the outbox relay, publishing the engine's committed events to
//!     `events.orders.<user_id>` (JetStream).
//!   - [`history`]: the `events` verb, a page of the user's stored events read from
//!     `ORDER_EVENTS` on their behalf (traders create no consumers).
//!   - [`matcher`]: fills resting paper orders from the tick stream through the engine.
//! - Broker adapters (the `Broker` trait's implementations):
//!   - [`paper`]: the paper broker, which fills against the live simulated ticks and
//!     keeps its books in [`engine::ledger`].
//!   - [`angel`]: the Angel One broker over SmartAPI, its session store, and the
//!     order-update follower, which applies updates through the engine.
//!
//! Every request gets exactly one reply: a result or a structured error.

pub mod angel;
pub mod engine;
pub mod events;
pub mod handler;
pub mod history;
pub mod inbox;
pub mod matcher;
pub mod paper;
pub mod service;
pub mod worker;

pub use engine::Engine;
pub use service::{run, WorkerError};
pub use worker::Worker;
