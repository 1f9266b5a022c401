//! The order engine: every order is placed, changed, settled and read here, whoever asks.
//!
//! # Boundary
//! The engine knows no transport. It does not import `async_nats`, and it knows nothing
//! of subjects, request messages, headers or replies: its verbs take typed values (the
//! authenticated [`Principal`], an [`OrderRequest`], an [`OrderRef`], …) and return
//! `Result<_, ErrorBody>`. The NATS shell ([`crate::worker`], [`crate::handler`],
//! [`crate::service`]) decodes, authenticates, calls one verb and encodes one reply; the
//! outbox relay ([`crate::events`]), the paper matcher ([`crate::matcher`]) and the Angel
//! One order-update follower ([`crate::angel::updates`]) call the engine too. No file in
//! it imports a module of this crate outside it (`tests/engine_boundary.rs` fails if one
//! names the NATS client or the shell); the paper broker ([`crate::paper`]) keeps its
//! books in [`ledger`], inside the engine, because they change in the order's own
//! transaction.
//!
//! The [`Engine`] owns, in fields visible only inside this module: the order store, the
//! database (accounts, risk limits, the rate counter), the vault, the audit sink, the
//! credential generation register, the brokers, the settings and the account and limits
//! cache. Its ports are [`store::OrderStore`] (implemented by [`store::SqlOrderStore`]:
//! orders, their leases, their events in the outbox and the paper books they move, in one
//! transaction per change), the [`Broker`](pinnacle_common::broker::Broker) trait,
//! [`AuditSink`] (implemented by `pinnacle_common::audit::AuditLog`), [`CredentialVault`]
//! (implemented by the master-key ring, `pinnacle_common::crypto::Vault`) and
//! [`Generations`] (implemented by the generation register,
//! `pinnacle_common::keystore::Register`). Everything outside uses the methods of the one
//! `impl Engine` below and the few types re-exported here.
//!
//! # Where things happen (one hop each)
//! - **An order is placed** in [`place`]: [`Engine::submit`] is the one pipeline, for a
//!   trader's order ([`Engine::place`]) and for square-off alike.
//! - **A credential is decrypted** in [`credentials`] (`open_with`), only after the audit
//!   event is acknowledged.
//! - **An audit event is written** through [`AuditSink::record`] ([`audit`]), for every
//!   credential access, from [`credentials`] only. (Outside the engine, the Angel One
//!   session store, `crate::angel::store`, audits its own session writes.)
//! - **A state change and its event** are one transaction in [`store`]
//!   ([`store::OrderStore::transition`], [`store::OrderStore::insert_new`]; in SQL,
//!   `store/sql.rs`), writing the outbox row through [`outbox`].
//!
//! # Layout (lower layers first; no file imports a higher one)
//! - [`errors`], [`row`]: error replies; reading a stored order row.
//! - [`outbox`], [`ledger`], [`store`]: the event rows, the paper books, the order store
//!   port and its SQL implementation.
//! - [`lease`]: one owner per in-flight order; the rule that makes "not at the broker" safe.
//! - [`audit`], [`vault`], [`generations`], [`risk`]: the audit, vault and register ports;
//!   pre-trade checks and kill switches.
//! - [`cache`]: accounts and risk limits kept for up to a second, dropped when a change
//!   is announced.
//! - `core`: the [`Engine`] value and the steps every pipeline shares.
//! - `lookup`: the account and the limits an order uses, read through the cache.
//! - [`credentials`]: loading an account, auditing the access, then decrypting.
//! - [`deadline`]: how far a request's deadline reaches (up to its first credential
//!   access).
//! - [`query`], [`reconcile`], [`place`], [`manage`], [`portfolio`], [`squareoff`]: the
//!   pipelines.
//! - this file: the public API, every verb in one `impl Engine`.

pub(crate) mod audit;
pub(crate) mod cache;
mod core;
pub(crate) mod credentials;
pub mod deadline;
pub(crate) mod errors;
#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod generations;
pub(crate) mod lease;
pub(crate) mod ledger;
mod lookup;
mod manage;
pub(crate) mod outbox;
mod place;
mod portfolio;
mod query;
pub(crate) mod reconcile;
pub(crate) mod risk;
pub(crate) mod row;
pub(crate) mod squareoff;
pub(crate) mod store;
pub(crate) mod vault;

use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::auth::Principal;
use pinnacle_common::broker::BrokerCredentials;
use pinnacle_common::config::WorkerSettings;
use pinnacle_common::entities::{broker_accounts, orders};
use pinnacle_common::error::ErrorBody;
use pinnacle_common::invalidate::Invalidation;
use pinnacle_common::model::{
    Funds, Holdings, ListRequest, ModifyRequest, OrderList, OrderRef, OrderReply, OrderRequest,
    OrderStatus, PortfolioRequest, Positions, SquareOffReply, SquareOffRequest, Trades,
};
use pinnacle_common::shutdown::Shutdown;
use sea_orm::DbErr;

use self::store::OrderQuery;

pub use self::audit::AuditSink;
pub use self::cache::{Announcements, CACHE_ENTRIES, CACHE_TTL};
pub use self::core::Engine;
pub use self::credentials::Actor;
pub use self::generations::Generations;
pub use self::outbox::Nudge;
pub use self::place::{Caller, RiskChecks};
pub use self::query::{DEFAULT_LIST, MAX_LIST};
pub use self::row::CorruptOrder;
pub use self::store::{Ownership, Patch};
pub use self::vault::CredentialVault;

/// The public API: what the NATS shell, the followers, the tools and the tests call.
impl Engine {
    /// The settings it runs with.
    pub fn settings(&self) -> &WorkerSettings {
        &self.settings
    }

    /// This engine's instance name (its lease tokens start with it; the relay claims
    /// outbox rows under it).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Drops what `change` names from the account and limits cache at once.
    pub fn invalidate(&self, change: &Invalidation) {
        self.cache.invalidate(change);
    }

    /// Takes the changes waiting in `announcements` (the NATS shell's subscription to
    /// `pinnacle.cache.invalidate`) before every cache read, so a change announced before
    /// an order arrived applies to that order.
    pub fn listen(&self, announcements: Arc<dyn Announcements>) {
        self.cache.listen(announcements);
    }

    /// Rung after every committed state change: give it to the outbox relay.
    pub fn outbox_nudge(&self) -> Nudge {
        self.nudge.clone()
    }

    /// Waits until every broker can serve (the paper broker: a first tick), for up to the
    /// configured time; a worker that took orders earlier would refuse them.
    pub async fn wait_ready(&self) {
        let timeout = Duration::from_millis(self.settings.ready_timeout_ms);
        for broker in self.brokers.values() {
            if !broker.wait_ready(timeout).await {
                tracing::warn!(
                    broker = broker.name(),
                    waited_ms = self.settings.ready_timeout_ms,
                    "broker not ready; serving anyway (its orders get PRICE_UNAVAILABLE until it is)"
                );
            }
        }
    }

    /// Places `principal`'s new order (the `place` verb): without the fields its type
    /// ignores ([`OrderRequest::without_ignored_fields`]), validated, then [`Self::submit`]
    /// with every check; a stored rejection is returned as its error.
    pub async fn place(
        &self,
        principal: &Principal,
        request_id: &str,
        order: OrderRequest,
    ) -> Result<OrderReply, ErrorBody> {
        let order = order.without_ignored_fields();
        place::place(self, principal, request_id, &order).await
    }

    /// The one place pipeline, for every caller (a trader, square-off): replay a known
    /// client order id → risk → broker readiness → audit and decrypt → preflight → insert
    /// under a lease → broker, under the lease → record the answer. A stored rejection is
    /// returned as the order. An `Err` from any step before the insert means nothing was
    /// stored; after it, only `INTERNAL` (the database failed while recording), which
    /// leaves the order under its lease for reconciliation to settle.
    pub async fn submit(
        &self,
        caller: &Caller<'_>,
        order: &OrderRequest,
    ) -> Result<orders::Model, ErrorBody> {
        place::submit(self, caller, order).await
    }

    /// Changes `principal`'s working order (quantity, limit or trigger price).
    pub async fn modify(
        &self,
        principal: &Principal,
        request_id: &str,
        change: &ModifyRequest,
    ) -> Result<OrderReply, ErrorBody> {
        manage::modify(self, principal, request_id, change).await
    }

    /// Cancels `principal`'s working order.
    pub async fn cancel(
        &self,
        principal: &Principal,
        request_id: &str,
        target: &OrderRef,
    ) -> Result<OrderReply, ErrorBody> {
        manage::cancel(self, principal, request_id, target).await
    }

    /// One of `user_id`'s orders. No credential is touched.
    pub async fn get(&self, user_id: &str, target: &OrderRef) -> Result<OrderReply, ErrorBody> {
        query::get(self, user_id, target).await
    }

    /// `user_id`'s orders, newest first. No credential is touched.
    pub async fn list(&self, user_id: &str, filter: &ListRequest) -> Result<OrderList, ErrorBody> {
        query::list(self, user_id, filter).await
    }

    /// Cash and margin at the broker (audited like an order).
    pub async fn funds(
        &self,
        principal: &Principal,
        request_id: &str,
        query: &PortfolioRequest,
    ) -> Result<Funds, ErrorBody> {
        portfolio::funds(self, principal, request_id, query).await
    }

    /// Net positions at the broker (audited like an order).
    pub async fn positions(
        &self,
        principal: &Principal,
        request_id: &str,
        query: &PortfolioRequest,
    ) -> Result<Positions, ErrorBody> {
        portfolio::positions(self, principal, request_id, query).await
    }

    /// Delivery holdings at the broker (audited like an order).
    pub async fn holdings(
        &self,
        principal: &Principal,
        request_id: &str,
        query: &PortfolioRequest,
    ) -> Result<Holdings, ErrorBody> {
        portfolio::holdings(self, principal, request_id, query).await
    }

    /// The broker's trade book (audited like an order).
    pub async fn trades(
        &self,
        principal: &Principal,
        request_id: &str,
        query: &PortfolioRequest,
    ) -> Result<Trades, ErrorBody> {
        portfolio::trades(self, principal, request_id, query).await
    }

    /// Settles every order whose outcome was lost (see [`reconcile`]); how many changed.
    pub async fn reconcile(&self) -> Result<usize, ErrorBody> {
        reconcile::sweep(self).await
    }

    /// Reconciles every `reconcile_interval_ms` (and once at start) until `shutdown`.
    pub async fn run_reconciler(self: Arc<Self>, shutdown: Shutdown) {
        reconcile::run(self, shutdown).await;
    }

    /// Squares off intraday orders and positions now (see [`squareoff`]); how many orders
    /// it cancelled or placed.
    pub async fn square_off(&self) -> Result<usize, ErrorBody> {
        squareoff::square_off(self, &mut squareoff::Settled::default()).await
    }

    /// Squares off `principal`'s account now (the `squareoff` verb): cancels its working
    /// `INTRADAY` orders and closes each open `INTRADAY` position with the same marketable
    /// LIMIT order the daily sweep would place (see [`squareoff`]).
    pub async fn square_off_account(
        &self,
        principal: &Principal,
        request_id: &str,
        request: &SquareOffRequest,
    ) -> Result<SquareOffReply, ErrorBody> {
        squareoff::square_off_on_demand(self, principal, request_id, request).await
    }

    /// Squares off after the configured time each day, until `shutdown`.
    pub async fn run_square_off(self: Arc<Self>, shutdown: Shutdown) {
        squareoff::run(self, shutdown).await;
    }

    /// Records an order's new state reported by its broker (a fill from the paper
    /// matcher, a record from Angel One's order-update stream): a compare-and-set on the
    /// status and fill count (no lease), with its event in the outbox. Losing the race is an error (the order
    /// changed under the caller).
    pub async fn apply_update(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
    ) -> Result<orders::Model, ErrorBody> {
        self.advance(order, to, patch, Ownership::Any).await
    }

    /// The order with this id, as stored.
    pub async fn order(&self, order_id: &str) -> Result<Option<orders::Model>, DbErr> {
        self.orders.get(order_id).await
    }

    /// The order `account_id`'s broker knows as `broker_order_id`.
    pub async fn order_at_broker(
        &self,
        account_id: &str,
        broker_order_id: &str,
    ) -> Result<Option<orders::Model>, DbErr> {
        self.orders.at_broker(account_id, broker_order_id).await
    }

    /// `account_id`'s orders sent or being sent, with no broker answer yet (`SUBMITTED`,
    /// `UNKNOWN`): an order update can beat the place reply.
    pub async fn awaiting_broker(&self, account_id: &str) -> Result<Vec<orders::Model>, DbErr> {
        let query = OrderQuery::InStates {
            statuses: &[OrderStatus::Submitted, OrderStatus::Unknown],
            account_id: Some(account_id),
        };
        self.orders.list(query).await
    }

    /// Whether `account_id` has orders working at the broker (`OPEN`, `PARTIALLY_FILLED`).
    pub async fn working_at(&self, account_id: &str) -> Result<bool, DbErr> {
        let query = OrderQuery::InStates {
            statuses: &[OrderStatus::Open, OrderStatus::PartiallyFilled],
            account_id: Some(account_id),
        };
        Ok(!self.orders.list(query).await?.is_empty())
    }

    /// `account_id`'s orders settled as `REJECTED` / `NOT_AT_BROKER` in the last day.
    pub async fn not_at_broker_lately(
        &self,
        account_id: &str,
    ) -> Result<Vec<orders::Model>, DbErr> {
        let since = chrono::Utc::now() - chrono::Duration::days(1);
        let query = OrderQuery::NotAtBrokerSince { account_id, since };
        self.orders.list(query).await
    }

    /// Records that the broker has order `order_id` (settled as `NOT_AT_BROKER`) as
    /// `broker_order_id`; `true` the first time (see [`store::OrderStore::found_at_broker`]).
    pub async fn found_at_broker(
        &self,
        order_id: &str,
        broker_order_id: &str,
    ) -> Result<bool, DbErr> {
        self.orders.found_at_broker(order_id, broker_order_id).await
    }

    /// Working (`OPEN`, `PARTIALLY_FILLED`) paper orders, for the matcher's book.
    pub async fn resting_paper_orders(&self) -> Result<Vec<orders::Model>, DbErr> {
        self.orders.list(OrderQuery::RestingPaper).await
    }

    /// Opens `account`'s credentials for a background task outside any request (the
    /// SmartAPI session prewarm, the watch on unfollowed accounts): audited as `purpose` by
    /// the service `actor` (no token) under a request id of its own, acknowledged, then
    /// decrypted.
    pub async fn open_credentials(
        &self,
        actor: &str,
        account: &broker_accounts::Model,
        purpose: &str,
    ) -> Result<BrokerCredentials, ErrorBody> {
        let actor = Actor {
            name: actor,
            token_id: None,
        };
        let request_id = uuid::Uuid::now_v7().to_string();
        credentials::open_as(self, actor, account, purpose, &request_id).await
    }
}
