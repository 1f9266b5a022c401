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
use pinnacle_common::writes::Writer;
use sea_orm::DatabaseConnection;

use super::audit::AuditSink;
use super::cache::Cache;
use super::errors::{broker_error, internal};
use super::generations::Generations;
use super::lease;
use super::ledger;
use super::outbox::Nudge;
use super::store::{self, OrderStore, Ownership, Patch, SqlOrderStore, TransitionError};
use super::vault::CredentialVault;

/// How long a broker call runs before the events committed ahead of it are announced to
/// the relay ([`Engine::call_broker`]). A paper answer comes well within it, so an order's
/// `NEW`, `SUBMITTED` and `FILLED` go out in one relay round; a trader watching a slow
/// broker sees `SUBMITTED` this much later at most.
pub const ANNOUNCE_AFTER: Duration = Duration::from_millis(20);

/// The order engine: every order of this process is placed, changed, settled and read
/// through one of these. It knows no transport (see [`crate::engine`]).
#[derive(Debug)]
pub struct Engine {
    /// The database: accounts and risk limits, read here.
    pub(super) db: DatabaseConnection,
    /// Its writes made here (the rate counter).
    pub(super) writer: Writer,
    /// Where orders live, with their leases, events (the outbox) and the paper books they
    /// move ([`super::store`]).
    pub(super) orders: Arc<dyn OrderStore>,
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
            // The paper broker's books change with every paper order's fills and end, in
            // the order's own transaction (see [`super::ledger`]).
            orders: Arc::new(SqlOrderStore::new(
                db.clone(),
                ledger::Books::new(settings.paper_cash),
            )),
            writer: Writer::new(&db),
            db,
            vault,
            audit,
            register,
            brokers: brokers.into_iter().map(|b| (b.name(), b)).collect(),
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

    /// [`Self::advance`] for the step just before a broker call (`PENDING_MODIFY`,
    /// `PENDING_CANCEL`), without ringing the relay: [`Self::call_broker`] announces the
    /// event, so that a quick broker's answer goes out with it in one relay round.
    pub(super) async fn advance_before_call(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, ErrorBody> {
        self.orders
            .transition(order, to, Patch::default(), ownership)
            .await
            .map_err(transition_error)
    }

    /// [`Self::advance`] with a broker's answer that another path (the order-update stream,
    /// another worker, reconciliation after this one lost its lease) may already have
    /// recorded: losing the compare-and-set returns the order as it now stands instead of
    /// an error.
    ///
    /// An answer that ends the order (`REJECTED`, `FILLED`, `CANCELLED`) is not dropped for
    /// an intermediate state recorded meanwhile: the order-update stream may have recorded
    /// the broker's earlier `OPEN` between the broker's answer and this write. The final
    /// state is then applied over the order as it now stands, with the same status
    /// compare-and-set as any broker update, so the caller is never told `OPEN` about an
    /// order this worker knows the broker rejected or filled. A final state already stored
    /// is never changed, nor a fill count lowered.
    pub(super) async fn record_outcome(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, ErrorBody> {
        match self.transition(order, to, patch.clone(), ownership).await {
            Err(TransitionError::Conflict) => {
                let now = self.reload(order).await?;
                let current =
                    store::status_of(&now).map_err(|e| internal("reading the order", e))?;
                let behind = patch
                    .filled_quantity
                    .is_some_and(|filled| filled < now.filled_quantity);
                if !to.is_terminal() || current.is_terminal() || current == to || behind {
                    return Ok(now);
                }
                match self.transition(&now, to, patch, Ownership::Any).await {
                    Ok(next) => Ok(next),
                    // Changed again, or no path from where it stands: as it now stands.
                    Err(_) => self.reload(order).await,
                }
            }
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
        let (to, patch) = ended_with_fills(order, to, patch);
        let next = self.orders.transition(order, to, patch, ownership).await?;
        self.nudge.ring();
        Ok(next)
    }

    /// Runs `call`, a broker call for the order `lease` is on, under the lease
    /// ([`lease::guard`]), inside a `broker.<operation>` client span, and counts it as
    /// `operation` on `broker`; `None` when the lease was lost and the call dropped.
    ///
    /// The events committed just before the call (the insert's `NEW` and `SUBMITTED`, or a
    /// `PENDING_*` step) are announced to the relay here: when the call has run for
    /// [`ANNOUNCE_AFTER`], or when it ends without an answer to record. A quicker answer is
    /// recorded by the caller, whose commit rings the relay once for all of them. Were they
    /// never announced (that record failed, or the process died), the relays' poll
    /// publishes them.
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
        let guarded = lease::guard(&self.orders, lease, self.lease_terms(), call);
        tokio::pin!(guarded);
        let answer = match tokio::time::timeout(ANNOUNCE_AFTER, &mut guarded).await {
            Ok(answer) => answer,
            Err(_) => {
                self.nudge.ring();
                guarded.await
            }
        };
        let Ok(answer) = answer else {
            self.nudge.ring();
            self.log_lost_lease(lease).await;
            return None;
        };
        if let Err(error) = &answer {
            let code = broker_error(error).code;
            pinnacle_common::telemetry::record_failure(&span, code.as_str());
        }
        pinnacle_common::metrics::metrics().broker_request(broker, operation, answer.is_ok());
        Some(answer)
    }

    /// Says why a broker call was dropped: another path already settled the order (the
    /// broker's order-update stream, faster than the broker's reply, which is normal; or
    /// reconciliation, after this engine stalled past its lease), or the lease was lost and
    /// reconciliation will settle it.
    async fn log_lost_lease(&self, lease: &lease::Lease) {
        let order_id = lease.order_id.as_str();
        let status = match self.orders.get(order_id).await {
            Ok(Some(order)) => store::status_of(&order).ok(),
            _ => None,
        };
        match status {
            Some(status) if !status.is_in_flight() => tracing::info!(
                order_id,
                %status,
                "the order was settled while its broker call ran (by the broker's order-update \
                 stream, or by reconciliation after a stall); the call is dropped"
            ),
            _ => tracing::warn!(order_id, "lease lost; the broker call is dropped"),
        }
    }

    /// The order as the database shows it now.
    pub(super) async fn reload(&self, order: &orders::Model) -> Result<orders::Model, ErrorBody> {
        self.orders
            .get(&order.id)
            .await
            .map_err(|e| internal("reloading the order", e))?
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, "the order no longer exists"))
    }

    /// The lease terms of this engine.
    pub(super) fn lease_terms(&self) -> lease::Terms {
        self.leases.terms()
    }
}

/// A broker's `REJECTED` for an order with fills (recorded, or in the answer itself): no
/// exchange rejects what it has filled, so the order has ended with its fills standing,
/// which is `CANCELLED` ([`OrderStatus::recorded_as`]; `REJECTED` says nothing filled:
/// [`OrderStatus::can_become_with`]). Anything else is left as it is.
fn ended_with_fills(order: &orders::Model, to: OrderStatus, patch: Patch) -> (OrderStatus, Patch) {
    let filled = patch.filled_after(order);
    let recorded = to.recorded_as(filled);
    if recorded == to {
        return (to, patch);
    }
    let reason = patch.rejection.as_ref().map(|r| r.message.as_str());
    tracing::warn!(
        order_id = %order.id,
        filled,
        reason = reason.unwrap_or(""),
        "the broker calls an order with fills rejected; it is recorded CANCELLED, its fills standing"
    );
    let patch = Patch {
        rejection: None,
        ..patch
    };
    (recorded, patch)
}

/// The reply for a transition that could not be stored.
fn transition_error(error: TransitionError) -> ErrorBody {
    match error {
        TransitionError::Db(db) => internal("updating the order", db),
        TransitionError::Corrupt(corrupt) => corrupt.into(),
        other => ErrorBody::new(ErrorCode::InvalidState, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use pinnacle_common::audit::AuditError;
    use pinnacle_common::broker::BrokerCredentials;
    use pinnacle_common::crypto::DecryptError;
    use pinnacle_common::keystore::generations::{CheckError, RegisterError, Standing};
    use pinnacle_common::model::AuditEvent;

    use super::*;
    use crate::engine::fixtures::database_with_account;
    use crate::engine::store::{Inserted, NewOrder};

    /// Ports no test here reaches: recording an outcome touches no credential.
    #[derive(Debug)]
    struct Unused;

    #[async_trait]
    impl AuditSink for Unused {
        async fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
            unreachable!("no credential is opened")
        }
    }

    impl CredentialVault for Unused {
        fn open(&self, _: &broker_accounts::Model) -> Result<BrokerCredentials, DecryptError> {
            unreachable!("no credential is opened")
        }
    }

    #[async_trait]
    impl Generations for Unused {
        async fn latest(&self, _: &str) -> Result<Option<i64>, RegisterError> {
            unreachable!("no credential is opened")
        }
        async fn check(&self, _: &str, _: i64) -> Result<Standing, CheckError> {
            unreachable!("no credential is opened")
        }
        async fn advance_after_commit(&self, _: &str, _: i64) {}
    }

    /// An engine over a fresh database holding user `u1` and its account `id-paper`.
    async fn engine() -> Engine {
        let db = database_with_account().await;
        Engine::new(
            db,
            Arc::new(Unused),
            (Arc::new(Unused), Arc::new(Unused)),
            Vec::new(),
            WorkerSettings::default(),
        )
    }

    /// A LIMIT buy placed under a lease, as the place pipeline stores it, and the lease.
    async fn submitted(engine: &Engine) -> (orders::Model, lease::Lease) {
        let request = crate::engine::fixtures::limit_buy("c1", Default::default());
        let (lease, until_ms) = engine.leases.issue("o1");
        let inserted = engine
            .orders
            .insert_new(NewOrder {
                order_id: "o1",
                user_id: "u1",
                broker_account_id: "id-paper",
                request: &request,
                owner: &lease.owner,
                lease_until_ms: until_ms,
            })
            .await
            .expect("insert");
        let Inserted::Created(order) = inserted else {
            panic!("a new order")
        };
        (order, lease)
    }

    #[tokio::test]
    async fn a_rejection_of_an_order_with_fills_is_recorded_as_its_end_and_nothing_else_changes() {
        let engine = engine().await;
        let (order, _) = submitted(&engine).await;
        let (to, patch) = ended_with_fills(&order, OrderStatus::Rejected, rejection());
        assert_eq!(to, OrderStatus::Rejected, "nothing filled: a rejection");
        assert!(patch.rejection.is_some());
        let partly = orders::Model {
            filled_quantity: 1,
            ..order.clone()
        };
        let (to, patch) = ended_with_fills(&partly, OrderStatus::Rejected, rejection());
        assert_eq!(to, OrderStatus::Cancelled, "what filled stands");
        assert!(patch.rejection.is_none());
        let reported = Patch {
            filled_quantity: Some(2),
            ..rejection()
        };
        let (to, patch) = ended_with_fills(&order, OrderStatus::Rejected, reported);
        assert_eq!(
            (to, patch.filled_quantity),
            (OrderStatus::Cancelled, Some(2)),
            "fills in the answer itself count"
        );
        let (to, _) = ended_with_fills(&partly, OrderStatus::Filled, Patch::default());
        assert_eq!(to, OrderStatus::Filled);
    }

    #[test]
    fn a_rejected_outcome_carries_the_brokers_reason() {
        let outcome = |status, reason: Option<&str>| BrokerOutcome {
            broker_order_id: "B1".into(),
            broker_unique_id: None,
            status,
            filled_quantity: 0,
            average_price: None,
            terms: Default::default(),
            fill_value: None,
            reason: reason.map(str::to_string),
        };
        let with = Patch::from_outcome(&outcome(OrderStatus::Rejected, Some("RMS: margin")))
            .rejection
            .expect("a rejection");
        assert_eq!(
            (with.code, with.message.as_str()),
            (
                ErrorCode::BrokerRejected,
                "the broker rejected the order: RMS: margin"
            )
        );
        let without = Patch::from_outcome(&outcome(OrderStatus::Rejected, None))
            .rejection
            .expect("a rejection");
        assert_eq!(without.message, "the broker rejected the order");
        assert!(
            Patch::from_outcome(&outcome(OrderStatus::Open, Some("ignored")))
                .rejection
                .is_none(),
            "only a rejection carries one"
        );
    }

    fn rejection() -> Patch {
        Patch {
            rejection: Some(ErrorBody::new(
                ErrorCode::BrokerRejected,
                "Quantity should be a multiple of lot size 75",
            )),
            ..Patch::default()
        }
    }

    #[tokio::test]
    async fn a_final_answer_lands_over_an_open_the_update_stream_recorded_first() {
        let engine = engine().await;
        let (order, lease) = submitted(&engine).await;
        // The order-update stream records the broker's OPEN between its answer and the
        // handler's write.
        let open = engine
            .apply_update(
                &order,
                OrderStatus::Open,
                Patch {
                    broker_order_id: Some("B1".into()),
                    ..Patch::default()
                },
            )
            .await
            .expect("open");
        assert_eq!(open.status, "OPEN");
        // The handler read REJECTED: that is what it records and answers.
        let held = Ownership::Held(&lease.owner);
        let recorded = engine
            .record_outcome(&order, OrderStatus::Rejected, rejection(), held)
            .await
            .expect("recorded");
        assert_eq!(recorded.status, "REJECTED");
        assert!(recorded
            .reject_reason
            .as_deref()
            .is_some_and(|r| r.contains("lot size")));
        // A final state is never changed by a later answer.
        let filled = Patch {
            filled_quantity: Some(1),
            average_price: Some(100),
            ..Patch::default()
        };
        let again = engine
            .record_outcome(&order, OrderStatus::Filled, filled, held)
            .await
            .expect("as it stands");
        assert_eq!(again.status, "REJECTED");
    }

    #[tokio::test]
    async fn an_intermediate_answer_or_a_lower_fill_is_not_applied_over_a_newer_state() {
        let engine = engine().await;
        let (order, lease) = submitted(&engine).await;
        let held = Ownership::Held(&lease.owner);
        let partly = engine
            .apply_update(
                &order,
                OrderStatus::PartiallyFilled,
                Patch {
                    broker_order_id: Some("B1".into()),
                    filled_quantity: Some(1),
                    average_price: Some(100),
                    ..Patch::default()
                },
            )
            .await
            .expect("partly filled");
        // The handler's OPEN is older than what the stream recorded.
        let open = engine
            .record_outcome(&order, OrderStatus::Open, Patch::default(), held)
            .await
            .expect("as it stands");
        assert_eq!(open.status, partly.status);
        // A final answer with fewer units filled than recorded is not applied either.
        let cancelled = Patch {
            filled_quantity: Some(0),
            ..Patch::default()
        };
        let stands = engine
            .record_outcome(&order, OrderStatus::Cancelled, cancelled, held)
            .await
            .expect("as it stands");
        assert_eq!(
            (stands.status.as_str(), stands.filled_quantity),
            (partly.status.as_str(), 1)
        );
    }
}
