//! `modify` and `cancel`: changes to a working order, through PENDING_MODIFY and
//! PENDING_CANCEL, each audited before the credentials are used.

use pinnacle_common::broker::BrokerError;
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{ModifyRequest, OrderRef, OrderReply, OrderRequest, OrderStatus};
use tracing::Instrument;

use crate::credentials;
use crate::handler::Request;
use crate::place::broker_error;
use crate::query;
use crate::risk;
use crate::service::Worker;
use crate::store::{self, Patch};

fn must_be_working(order: &orders::Model, verb: &str) -> Result<OrderStatus, ErrorBody> {
    let status = store::status_of(order);
    if status.is_working() {
        Ok(status)
    } else {
        Err(ErrorBody::new(
            ErrorCode::InvalidState,
            format!("the order is {status}; only OPEN or PARTIALLY_FILLED orders can be {verb}"),
        ))
    }
}

/// The order as placed (with its current quantity and prices).
fn as_request(current: &OrderReply) -> OrderRequest {
    OrderRequest {
        client_order_id: current.client_order_id.clone(),
        exchange: current.exchange.clone(),
        symbol: current.symbol.clone(),
        side: current.side,
        order_type: current.order_type,
        quantity: current.quantity,
        price: current.price,
        trigger_price: current.trigger_price,
        product: current.product,
        account: None,
    }
}

/// Settles a pending change from the broker's answer; a refused change restores `previous`.
async fn settle(
    worker: &Worker,
    pending: &orders::Model,
    previous: OrderStatus,
    answer: Result<pinnacle_common::broker::BrokerOutcome, BrokerError>,
    patch: Patch,
) -> Result<OrderReply, ErrorBody> {
    match answer {
        Ok(outcome) => {
            let patch = Patch {
                quantity: patch.quantity,
                price: patch.price,
                trigger_price: patch.trigger_price,
                ..Patch::from_outcome(&outcome)
            };
            let stored = worker
                .record_outcome(pending, outcome.status, patch)
                .await?;
            Ok(store::view(&stored))
        }
        Err(BrokerError::Unavailable(reason)) => {
            tracing::warn!(order_id = %pending.id, %reason, "broker outcome unknown");
            let stored = worker
                .record_outcome(pending, OrderStatus::Unknown, Patch::default())
                .await?;
            Ok(store::view(&stored))
        }
        Err(error) => {
            worker.advance(pending, previous, Patch::default()).await?;
            Err(broker_error(&error))
        }
    }
}

/// Cancels a working order.
pub async fn cancel(worker: &Worker, request: &Request<'_>) -> Result<OrderReply, ErrorBody> {
    let target: OrderRef = request.decode()?;
    let user_id = request.principal.user_id.as_str();
    let order = query::resolve(worker, user_id, &target).await?;
    let previous = must_be_working(&order, "cancelled")?;
    // Cancels are never blocked by a kill switch, but they count towards the rate.
    risk::check(&worker.db, user_id, None).await?;
    let account = credentials::account_of(&worker.db, &order)
        .await
        .map_err(|e| e.into_error_body())?;
    let broker = worker.broker_for(&account)?;
    let creds = credentials::open(
        worker,
        &request.principal,
        &account,
        "order.cancel",
        request.request_id,
    )
    .await?;
    let pending = worker
        .advance(&order, OrderStatus::PendingCancel, Patch::default())
        .await?;
    let broker_order_id = pending.broker_order_id.clone().unwrap_or_default();
    let placed = as_request(&store::view(&order));
    let answer = broker
        .cancel_placed_order(&creds, &broker_order_id, &placed)
        .instrument(tracing::info_span!(
            "broker.cancel_order",
            otel.kind = "client",
            broker = broker.name()
        ))
        .await;
    pinnacle_common::metrics::metrics().broker_request(
        broker.name(),
        "cancel_order",
        answer.is_ok(),
    );
    drop(creds);
    settle(worker, &pending, previous, answer, Patch::default()).await
}

/// Changes a working order's quantity and/or limit price.
pub async fn modify(worker: &Worker, request: &Request<'_>) -> Result<OrderReply, ErrorBody> {
    let change: ModifyRequest = request.decode()?;
    if change.quantity.is_none() && change.price.is_none() && change.trigger_price.is_none() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            "a modify needs a new quantity, price or trigger_price",
        ));
    }
    let user_id = request.principal.user_id.as_str();
    let order = query::resolve(worker, user_id, &change.order).await?;
    let previous = must_be_working(&order, "modified")?;
    let current = store::view(&order);
    let quantity = change.quantity.unwrap_or(current.quantity);
    if quantity <= current.filled_quantity {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            format!(
                "quantity must stay above the {} already filled",
                current.filled_quantity
            ),
        ));
    }
    if change.price.is_some() && !current.order_type.has_limit() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            "this order type has no limit price to modify",
        ));
    }
    if change.trigger_price.is_some() && !current.order_type.is_stop() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            "only stop-loss orders have a trigger_price",
        ));
    }
    let modified = OrderRequest {
        quantity,
        price: change.price.or(current.price),
        trigger_price: change.trigger_price.or(current.trigger_price),
        ..as_request(&current)
    };
    modified.validate(worker.settings.max_quantity)?;
    let account = credentials::account_of(&worker.db, &order)
        .await
        .map_err(|e| e.into_error_body())?;
    let broker = worker.broker_for(&account)?;
    risk::check(&worker.db, user_id, Some((&modified, broker.as_ref()))).await?;
    let creds = credentials::open(
        worker,
        &request.principal,
        &account,
        "order.modify",
        request.request_id,
    )
    .await?;
    let pending = worker
        .advance(&order, OrderStatus::PendingModify, Patch::default())
        .await?;
    let broker_order_id = pending.broker_order_id.clone().unwrap_or_default();
    let answer = broker
        .modify_order(&creds, &broker_order_id, &modified)
        .instrument(tracing::info_span!(
            "broker.modify_order",
            otel.kind = "client",
            broker = broker.name()
        ))
        .await;
    pinnacle_common::metrics::metrics().broker_request(
        broker.name(),
        "modify_order",
        answer.is_ok(),
    );
    drop(creds);
    let patch = Patch {
        quantity: Some(modified.quantity),
        price: modified.price,
        trigger_price: modified.trigger_price,
        ..Patch::default()
    };
    settle(worker, &pending, previous, answer, patch).await
}
