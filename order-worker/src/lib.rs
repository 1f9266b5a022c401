//! The order worker: a NATS queue-group responder that places orders for authenticated users.
//!
//! # Layout
//! - [`service`]: the subscription loop, concurrency limit, graceful drain, and the
//!   [`Worker`]'s state-machine step (`advance`).
//! - [`handler`]: one request: size, subject, token ↔ subject user and scope, dispatch to
//!   the verb, exactly one reply.
//! - [`place`] (the one place pipeline, [`place::submit`], for the verb and for
//!   square-off), [`manage`] (modify, cancel), [`query`] (get, list): the verbs.
//! - [`portfolio`]: funds, positions and trades, audited like orders.
//! - [`lease`]: one owner per in-flight order; the rule that makes "not at the broker" safe.
//! - [`reconcile`]: settling orders whose broker outcome was lost, by asking the broker.
//! - [`risk`]: pre-trade checks and kill switches.
//! - [`squareoff`]: closing intraday orders and positions after the configured time.
//! - [`store`]: order persistence; the unique key makes retries idempotent, and every state
//!   change is a compare-and-set through the state machine.
//! - [`events`]: the transactional outbox of order lifecycle events and its relay to
//!   `events.orders.<user_id>` (JetStream).
//! - [`credentials`]: loading a broker account, auditing the access (waiting for the ack),
//!   then decrypting.
//! - [`paper`]: the paper broker, which fills against the live simulated ticks, and
//!   [`ledger`], its books (funds, reservations, positions and holdings, trades) kept in
//!   tables and changed in the same transaction as each fill, and [`matcher`], which fills
//!   resting paper orders from the tick stream.
//! - [`angel`]: the Angel One broker over SmartAPI, its session store and the order-update
//!   follower.
//!
//! Every request gets exactly one reply: a result or a structured error.

pub mod angel;
pub mod credentials;
pub mod events;
pub mod handler;
pub mod lease;
pub mod ledger;
pub mod manage;
pub mod matcher;
pub mod paper;
pub mod place;
pub mod portfolio;
pub mod query;
pub mod reconcile;
pub mod risk;
pub mod service;
pub mod squareoff;
pub mod store;

pub use service::{run, Worker, WorkerError};
