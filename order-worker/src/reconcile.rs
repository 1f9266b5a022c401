//! Settling orders whose broker outcome was lost: still `SUBMITTED` (a worker stopped
//! between storing the order and recording the broker's answer) or `UNKNOWN` (the broker's
//! answer never came), and quiet for `reconcile_after_ms`.
//!
//! The broker is asked, never sent the order again: if it has the order, its state is
//! recorded; if it has none, the order is `REJECTED` with `NOT_AT_BROKER` and nothing was
//! placed. A retry of the same client order id and a periodic sweep both come here; the
//! status compare-and-set makes concurrent attempts harmless.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::OrderStatus;
use pinnacle_common::shutdown::Shutdown;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::credentials::{self, Actor};
use crate::handler::internal;
use crate::service::Worker;
use crate::store::{self, Patch};

/// The audit actor for reconciliation.
pub const ACTOR: &str = "pinnacle-reconciler";

/// Whether `order` has waited long enough for its outcome to count as lost.
pub fn is_stale(worker: &Worker, order: &orders::Model) -> bool {
    let status = store::status_of(order);
    let quiet = Utc::now() - order.updated_at;
    matches!(status, OrderStatus::Submitted | OrderStatus::Unknown)
        && quiet.num_milliseconds() >= worker.settings.reconcile_after_ms as i64
}

/// Asks the broker about a stale order and records the answer.
pub async fn settle(worker: &Worker, order: &orders::Model) -> Result<orders::Model, ErrorBody> {
    let account = credentials::account_of(&worker.db, order)
        .await
        .map_err(|e| e.into_error_body())?;
    let broker = worker.broker_for(&account)?;
    let actor = Actor {
        name: ACTOR,
        token_id: None,
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    let creds =
        credentials::open_as(worker, actor, &account, "order.reconcile", &request_id).await?;
    let found = broker.find_order(&creds, &order.id).await;
    drop(creds);
    match found {
        Ok(Some(outcome)) => {
            let patch = Patch::from_outcome(&outcome);
            worker.advance(order, outcome.status, patch).await
        }
        Ok(None) => {
            let patch = Patch {
                rejection: Some(ErrorBody::new(
                    ErrorCode::NotAtBroker,
                    "the order's outcome was lost and the broker has no such order; nothing was placed",
                )),
                ..Patch::default()
            };
            worker.advance(order, OrderStatus::Rejected, patch).await
        }
        Err(error) => {
            tracing::warn!(order_id = %order.id, %error, "reconciliation failed; will retry");
            Ok(order.clone())
        }
    }
}

/// Settles every stale order now.
pub async fn sweep(worker: &Worker) -> Result<usize, ErrorBody> {
    let candidates = orders::Entity::find()
        .filter(orders::Column::Status.is_in([
            OrderStatus::Submitted.as_str(),
            OrderStatus::Unknown.as_str(),
        ]))
        .all(&worker.db)
        .await
        .map_err(|e| internal("listing orders to reconcile", e))?;
    let mut settled = 0;
    for order in candidates.iter().filter(|o| is_stale(worker, o)) {
        match settle(worker, order).await {
            Ok(after) if after.status != order.status => settled += 1,
            Ok(_) => {}
            Err(error) => tracing::debug!(order_id = %order.id, %error, "not settled"),
        }
    }
    Ok(settled)
}

/// Sweeps every `reconcile_interval_ms` (and once at start) until `shutdown` fires.
pub async fn run(worker: Arc<Worker>, shutdown: Shutdown) {
    let period = Duration::from_millis(worker.settings.reconcile_interval_ms.max(10));
    let mut timer = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = timer.tick() => {
                if let Err(error) = crate::risk::prune_rates(&worker.db).await {
                    tracing::warn!(%error, "could not prune rate counters");
                }
                match sweep(&worker).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(settled = n, "reconciled orders with lost outcomes"),
                    Err(error) => tracing::warn!(%error, "reconciliation sweep failed"),
                }
            }
        }
    }
}
