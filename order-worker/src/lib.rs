//! The order worker: a NATS queue-group responder that places orders for authenticated users.
//!
//! # Layout
//! - [`service`]: the subscription loop, concurrency limit and graceful drain.
//! - [`handler`]: one request, end to end: authenticate → validate → audit → decrypt →
//!   broker → persist → reply.
//! - [`store`]: order persistence; the database's unique key makes retries idempotent.
//! - [`credentials`]: loading a broker account and decrypting it, after the audit ack.
//! - [`paper`]: the paper broker, which fills against the live simulated ticks.
//!
//! Every request gets exactly one reply: a result or a structured error.

pub mod credentials;
pub mod handler;
pub mod paper;
pub mod service;
pub mod store;

pub use service::{run, Worker, WorkerError};
