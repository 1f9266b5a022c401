//! The order store port ([`OrderStore`]): where orders live, and the promises every
//! implementation keeps. [`SqlOrderStore`] keeps them in the database through SeaORM.
//!
//! - **Idempotency.** The `(user_id, client_order_id)` unique key is the guard: whichever
//!   worker inserts first owns the order; every other attempt reads it back
//!   ([`Inserted::Existing`]).
//! - **Compare-and-set.** Every state change goes through the state machine
//!   ([`OrderStore::transition`]) and applies only if nobody moved the order first.
//! - **No change without its event.** The order row and its lifecycle event (the outbox
//!   row, [`super::outbox`]) are written in one transaction, with the change's effect on
//!   the paper books ([`super::ledger`]); the outbox relay publishes the events.
//! - **One owner per in-flight order.** In-flight orders (`SUBMITTED`, `PENDING_MODIFY`,
//!   `PENDING_CANCEL`) carry a lease ([`Ownership`]): only its holder may settle them, and
//!   reconciliation [takes](OrderStore::take) one only once the lease has expired (see
//!   [`super::lease`]).

mod port;
mod sql;

pub use super::row::{now_ms, reply_for, status_of, view};
pub use port::{Inserted, NewOrder, OrderQuery, OrderStore, Ownership, Patch, TransitionError};
pub use sql::SqlOrderStore;
