//! Settling orders whose broker outcome was lost: in flight (`SUBMITTED`, `PENDING_MODIFY`,
//! `PENDING_CANCEL`) with a lease that expired more than the grace period ago (its engine
//! stopped, or lost the lease and dropped its broker call), or `UNKNOWN` (the broker's
//! answer never came) and quiet for `reconcile_after_ms`.
//!
//! An order is first *taken*: its lease passes to this reconciler by compare-and-set, so of
//! several reconcilers exactly one settles it, and never while its owner could still call
//! the broker (see [`super::lease`] for the rule). The broker is then asked, never sent the
//! order again: if it has the order, its state is recorded; if it has none, nothing was
//! placed, and a placed order becomes `REJECTED` / `NOT_AT_BROKER` while a pending change
//! falls back to the working state it left. When the broker cannot say, the reconciler
//! keeps the lease until the order is to be asked again ([`retry_pause`]). A retry of the
//! same client order id and a periodic sweep both come here.

use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::broker::{BrokerError, BrokerOutcome, OrderKeys};
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::OrderStatus;
use pinnacle_common::shutdown::Shutdown;

use super::core::Engine;
use super::credentials::{self, Actor};
use super::errors::internal;
use super::lease;
use super::store::{self, OrderQuery, Ownership, Patch};

/// The audit actor for reconciliation.
pub const ACTOR: &str = "pinnacle-reconciler";

/// The longest pause between two lookups of an order the broker could not answer for.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// Whether `order`'s outcome counts as lost and may be settled now.
pub(super) fn is_stale(engine: &Engine, order: &orders::Model) -> bool {
    lease::is_abandoned(
        order,
        engine.lease_terms(),
        Duration::from_millis(engine.settings.reconcile_after_ms),
        store::now_ms(),
    )
}

/// Takes a stale order and settles it with the broker's answer; returns the order as it
/// then stands (unchanged when another reconciler took it or the broker could not say).
pub(super) async fn settle(
    engine: &Engine,
    order: &orders::Model,
) -> Result<orders::Model, ErrorBody> {
    let (lease, until_ms) = engine.leases.issue(&order.id);
    let taken = engine
        .orders
        .take(order, &lease.owner, until_ms)
        .await
        .map_err(|e| internal("taking the order for reconciliation", e))?;
    let Some(order) = taken else {
        return engine.reload(order).await;
    };
    let account = credentials::account_of(&engine.db, &order)
        .await
        .map_err(|e| e.into_error_body())?;
    let broker = engine.broker_for(&account)?;
    let actor = Actor {
        name: ACTOR,
        token_id: None,
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    let creds =
        credentials::open_as(engine, actor, &account, "order.reconcile", &request_id).await?;
    let found = lease::guard(
        &engine.orders,
        &lease,
        engine.lease_terms(),
        broker.find_order(&creds, OrderKeys::of(&order)),
    )
    .await;
    drop(creds);
    record_finding(engine, &order, &lease, found).await
}

/// Records what the broker said about a taken order (`found`: its answer, or the lease
/// lost while asking); an order the broker does not have was never placed.
async fn record_finding(
    engine: &Engine,
    order: &orders::Model,
    lease: &lease::Lease,
    found: Result<Result<Option<BrokerOutcome>, BrokerError>, lease::LeaseLost>,
) -> Result<orders::Model, ErrorBody> {
    let order = order.clone();
    let held = Ownership::Held(&lease.owner);
    let status = store::status_of(&order)?;
    match found {
        Ok(Ok(Some(outcome))) => {
            // The broker's terms too: a modify whose answer was lost may have been applied
            // (the order then stands on the new terms) or not (on the old ones).
            let terms = outcome.terms.for_type(store::view(&order)?.order_type);
            let patch = Patch::from_outcome(&outcome).with_terms(terms);
            engine
                .record_outcome(&order, outcome.status, patch, held)
                .await
        }
        Ok(Ok(None))
            if matches!(
                status,
                OrderStatus::PendingModify | OrderStatus::PendingCancel
            ) =>
        {
            // The change never reached the broker: the order works as it did before.
            let working = if order.filled_quantity > 0 {
                OrderStatus::PartiallyFilled
            } else {
                OrderStatus::Open
            };
            engine
                .record_outcome(&order, working, Patch::default(), held)
                .await
        }
        Ok(Ok(None)) => {
            let patch = Patch {
                rejection: Some(ErrorBody::new(
                    ErrorCode::NotAtBroker,
                    "the order's outcome was lost and the broker has no such order; nothing was placed",
                )),
                ..Patch::default()
            };
            engine
                .record_outcome(&order, OrderStatus::Rejected, patch, held)
                .await
        }
        Ok(Err(error)) => {
            let pause = hold_until_retry(engine, &order, lease).await;
            tracing::warn!(
                order_id = %order.id,
                %error,
                retry_in_s = pause.as_secs(),
                "reconciliation failed; will retry"
            );
            Ok(order)
        }
        Err(lost) => {
            tracing::warn!(order_id = %order.id, %lost, "reconciliation lost its lease; will retry");
            Ok(order)
        }
    }
}

/// Keeps the lease on an order the broker could not answer for until it is to be asked
/// again ([`retry_pause`]), so that an order the broker never shows (or a broker that stays
/// down) is not asked, audited and logged every sweep for good. Returns the pause; the
/// lease stands as it was when it cannot be extended.
async fn hold_until_retry(
    engine: &Engine,
    order: &orders::Model,
    lease: &lease::Lease,
) -> Duration {
    let now_ms = store::now_ms();
    let unsettled_ms = now_ms - order.updated_at.timestamp_millis();
    let pause = retry_pause(
        Duration::from_millis(u64::try_from(unsettled_ms).unwrap_or(0)),
        engine.lease_terms().length,
    );
    let until_ms = now_ms.saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX));
    match engine.orders.renew(&order.id, &lease.owner, until_ms).await {
        Ok(true) => pause,
        Ok(false) => engine.lease_terms().length,
        Err(error) => {
            tracing::debug!(order_id = %order.id, %error, "could not hold the order until its next lookup");
            engine.lease_terms().length
        }
    }
}

/// How long to wait before asking the broker again about an order unsettled for
/// `unsettled` (since its last change): a quarter of that, at least one `lease`, at most
/// [`MAX_RETRY_PAUSE`]. A broker that answers again soon after an outage is asked soon;
/// an order it cannot show is asked about once a minute after four minutes.
fn retry_pause(unsettled: Duration, lease: Duration) -> Duration {
    (unsettled / 4).clamp(lease, MAX_RETRY_PAUSE.max(lease))
}

/// Settles every stale order now.
pub(super) async fn sweep(engine: &Engine) -> Result<usize, ErrorBody> {
    let unsettled = OrderQuery::InStates {
        statuses: &[
            OrderStatus::Submitted,
            OrderStatus::PendingModify,
            OrderStatus::PendingCancel,
            OrderStatus::Unknown,
        ],
        account_id: None,
    };
    let candidates = engine
        .orders
        .list(unsettled)
        .await
        .map_err(|e| internal("listing orders to reconcile", e))?;
    let mut settled = 0;
    for order in candidates.iter().filter(|o| is_stale(engine, o)) {
        match settle(engine, order).await {
            Ok(after) if after.status != order.status => settled += 1,
            Ok(_) => {}
            Err(error) => tracing::debug!(order_id = %order.id, %error, "not settled"),
        }
    }
    Ok(settled)
}

/// Sweeps every `reconcile_interval_ms` (and once at start) until `shutdown` fires.
pub(super) async fn run(engine: Arc<Engine>, shutdown: Shutdown) {
    let period = Duration::from_millis(engine.settings.reconcile_interval_ms.max(10));
    let mut timer = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = timer.tick() => {
                if let Err(error) = super::risk::prune_rates(&engine.writer).await {
                    tracing::warn!(%error, "could not prune rate counters");
                }
                match sweep(&engine).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(settled = n, "reconciled orders with lost outcomes"),
                    Err(error) => tracing::warn!(%error, "reconciliation sweep failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_spaced_by_a_quarter_of_the_time_unsettled_between_a_lease_and_a_minute() {
        let lease = Duration::from_secs(5);
        let pause = |unsettled_s| retry_pause(Duration::from_secs(unsettled_s), lease);
        assert_eq!(pause(0), lease, "at first, once a lease as before");
        assert_eq!(pause(20), lease);
        assert_eq!(pause(40), Duration::from_secs(10));
        assert_eq!(pause(240), MAX_RETRY_PAUSE);
        assert_eq!(pause(86_400), MAX_RETRY_PAUSE, "never longer than a minute");
        let long_lease = Duration::from_secs(90);
        assert_eq!(
            retry_pause(Duration::from_secs(10), long_lease),
            long_lease,
            "a lease longer than the cap"
        );
    }
}
