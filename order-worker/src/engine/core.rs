//! The [`Engine`] value: what it owns, and the steps every pipeline shares (choosing the
//! broker, moving an order through the state machine, calling a broker under a lease,
//! reading an order back).
//!
//! Its fields are visible inside [`crate::engine`] only: nothing outside the engine
//! reaches the order store, the vault or the audit sink except through the API in
//! [`crate::engine`]'s `impl Engine`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::broker::{Broker, BrokerError, BrokerOutcome};
use pinnacle_common::config::WorkerSettings;

use pinnacle_common::entities::{broker_accounts, orders};
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::OrderStatus;
use sea_orm::{DatabaseConnection, EntityTrait};

use super::audit::AuditSink;
use super::cache::Cache;
use super::errors::{broker_error, internal};
use super::generations::Generations;
use super::lease;
use super::ledger;
use super::outbox::Nudge;
use super::store::{self, Ownership, Patch, TransitionError};
use super::vault::CredentialVault;

/// The order engine: every order of this process is placed, changed, settled and read
/// through one of these. It knows no transport (see [`crate::engine`]).
#[derive(Debug)]
pub struct Engine {
    /// The order store: orders, accounts, limits, leases, the outbox, the paper books.
    pub(super) db: DatabaseConnection,
    /// Decrypts broker credentials (only after the audit sink acknowledged the access).
    pub(super) vault: Arc<dyn CredentialVault>,
    /// Where every credential access is recorded before it happens.
    pub(super) audit: Arc<dyn AuditSink>,
    /// Each broker account's latest credential generation, outside the database: a row
    /// older than it is refused (a rolled-back row).
    pub(super) register: Arc<dyn Generations>,
    /// This engine's name (lease tokens and outbox claims start with it).
    pub(super) instance: String,
    /// Issues leases on in-flight orders.
    pub(super) leases: lease::Issuer,
    /// Rung after every committed state change, so the outbox relay publishes at once.
    pub(super) nudge: Nudge,
    /// Brokers by the name stored in `broker_accounts.broker`.
    pub(super) brokers: HashMap<&'static str, Arc<dyn Broker>>,
    /// The paper broker's books, changed with every paper order's fills and end in the
    /// same transaction as the order (see [`super::ledger`]).
    pub(super) books: ledger::Books,
    /// Limits and timeouts.
    pub(super) settings: WorkerSettings,
    /// Users' broker account rows (sealed) and risk-limit rows, trusted for up to a
    /// second and dropped when a change is announced, so a place reads neither table
    /// while they do not change (see [`super::cache`]).
    pub(super) cache: Cache,
}

impl Engine {
    /// An engine over the order store `db`, decrypting with `vault` after recording each
    /// access to `audit`, checking generations against `register`, with `brokers`
    /// registered under their names.
    pub fn new(
        db: DatabaseConnection,
        vault: Arc<dyn CredentialVault>,
        (audit, register): (Arc<dyn AuditSink>, Arc<dyn Generations>),
        brokers: Vec<Arc<dyn Broker>>,
        settings: WorkerSettings,
    ) -> Self {
        let instance = format!("w-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let terms = lease::Terms {
            length: Duration::from_millis(settings.lease_ms.max(30)),
            grace: Duration::from_millis(settings.lease_grace_ms),
        };
        Self {
            leases: lease::Issuer::new(instance.clone(), terms),
            instance,
            nudge: Nudge::default(),
            db,
            vault,
            audit,
            register,
            brokers: brokers.into_iter().map(|b| (b.name(), b)).collect(),
            books: ledger::Books::new(settings.paper_cash),
            settings,
            cache: Cache::default(),
        }
    }

    /// The broker an account uses, if this engine has it enabled.
    pub(super) fn broker_for(
        &self,
        account: &broker_accounts::Model,
    ) -> Result<&Arc<dyn Broker>, ErrorBody> {
        self.brokers.get(account.broker.as_str()).ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::BrokerRejected,
                format!("broker {:?} is not enabled on this worker", account.broker),
            )
        })
    }

    /// Moves an order through the state machine (compare-and-set, with its event in the
    /// outbox) and nudges the relay.
    pub(super) async fn advance(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, ErrorBody> {
        self.transition(order, to, patch, ownership)
            .await
            .map_err(transition_error)
    }

    /// [`Self::advance`] with a broker's answer that another path (the order-update stream,
    /// another worker, reconciliation after this one lost its lease) may already have
    /// recorded: losing the compare-and-set returns the order as it now stands instead of
    /// an error.
    pub(super) async fn record_outcome(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, ErrorBody> {
        match self.transition(order, to, patch, ownership).await {
            Err(TransitionError::Conflict) => self.reload(order).await,
            other => other.map_err(transition_error),
        }
    }

    async fn transition(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, TransitionError> {
        let next = store::transition(&self.db, &self.books, order, to, patch, ownership).await?;
        self.nudge.ring();
        Ok(next)
    }

    /// Runs `call`, a broker call for the order `lease` is on, under the lease
    /// ([`lease::guard`]), inside a `broker.<operation>` client span, and counts it as
    /// `operation` on `broker`; `None` when the lease was lost and the call dropped.
    pub(super) async fn call_broker<F>(
        &self,
        lease: &lease::Lease,
        broker: &'static str,
        operation: &'static str,
        call: F,
    ) -> Option<Result<BrokerOutcome, BrokerError>>
    where
        F: Future<Output = Result<BrokerOutcome, BrokerError>>,
    {
        let span = tracing::info_span!(
            "broker.call",
            otel.name = %format_args!("broker.{operation}"),
            otel.kind = "client",
            pinnacle.broker = broker,
            pinnacle.broker.operation = operation,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let call = tracing::Instrument::instrument(call, span.clone());
        let answer = lease::guard(&self.db, lease, self.lease_terms(), call)
            .await
            .ok()?;
        if let Err(error) = &answer {
            let code = broker_error(error).code;
            pinnacle_common::telemetry::record_failure(&span, code.as_str());
        }
        pinnacle_common::metrics::metrics().broker_request(broker, operation, answer.is_ok());
        Some(answer)
    }

    /// The order as the database shows it now.
    pub(super) async fn reload(&self, order: &orders::Model) -> Result<orders::Model, ErrorBody> {
        orders::Entity::find_by_id(order.id.clone())
            .one(&self.db)
            .await
            .map_err(|e| internal("reloading the order", e))?
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, "the order no longer exists"))
    }

    /// The lease terms of this engine.
    pub(super) fn lease_terms(&self) -> lease::Terms {
        self.leases.terms()
    }
}

/// The reply for a transition that could not be stored.
fn transition_error(error: TransitionError) -> ErrorBody {
    match error {
        TransitionError::Db(db) => internal("updating the order", db),
        TransitionError::Corrupt(corrupt) => corrupt.into(),
        other => ErrorBody::new(ErrorCode::InvalidState, other.to_string()),
    }
}
