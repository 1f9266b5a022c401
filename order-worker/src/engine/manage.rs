//! `modify` and `cancel`: changes to a working order, through PENDING_MODIFY and
//! PENDING_CANCEL (which take a lease on the order, see [`super::lease`]), each audited
//! before the credentials are used.

use pinnacle_common::auth::Principal;
use pinnacle_common::broker::{
    Broker, BrokerCredentials, BrokerError, BrokerOutcome, Filled, OrderKeys,
};
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{ModifyRequest, OrderRef, OrderReply, OrderRequest, OrderStatus};

use super::core::Engine;
use super::credentials::{self, Actor};
use super::errors::broker_error;
use super::lease::{self, Lease, LeaseLost};
use super::query;
use super::risk;
use super::store::{self, Ownership, Patch};

fn must_be_working(order: &orders::Model, verb: &str) -> Result<OrderStatus, ErrorBody> {
    let status = store::status_of(order)?;
    if status.is_working() {
        Ok(status)
    } else {
        Err(ErrorBody::new(
            ErrorCode::InvalidState,
            format!("the order is {status}; only OPEN or PARTIALLY_FILLED orders can be {verb}"),
        ))
    }
}

/// Moves a working order into `pending` under a new lease held by this caller.
async fn begin(
    engine: &Engine,
    order: &orders::Model,
    pending: OrderStatus,
) -> Result<(orders::Model, Lease), ErrorBody> {
    let (lease, until_ms) = engine.leases.issue(&order.id);
    let ownership = Ownership::Acquire {
        owner: &lease.owner,
        until_ms,
    };
    let order = engine
        .advance_before_call(order, pending, ownership)
        .await?;
    Ok((order, lease))
}

/// What of `order` has filled.
fn filled(order: &orders::Model) -> Filled {
    Filled {
        quantity: order.filled_quantity,
        average_price: order.average_price,
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

/// The broker a change was sent to, with the credentials it was sent with.
#[derive(Clone, Copy)]
struct AtBroker<'a> {
    broker: &'a dyn Broker,
    creds: &'a BrokerCredentials,
}

/// Settles a pending change from the broker's answer (`None`: the lease was lost and the
/// call dropped, so reconciliation settles it); a refused change restores `previous`,
/// unless the broker refused it because the order had already ended there (filled,
/// cancelled or rejected), or the order's state could not be read after the refusal, which
/// leaves it `UNKNOWN` for reconciliation ([`after_refusal`]).
async fn settle(
    engine: &Engine,
    (pending, lease): (&orders::Model, &Lease),
    previous: OrderStatus,
    answer: Option<Result<BrokerOutcome, BrokerError>>,
    patch: Patch,
    at: AtBroker<'_>,
) -> Result<orders::Model, ErrorBody> {
    let held = Ownership::Held(&lease.owner);
    let Some(answer) = answer else {
        return engine.reload(pending).await;
    };
    match answer {
        Ok(outcome) => {
            // The terms the broker states are the truth (an accepted modify it then
            // rejected never took effect); where it states none (paper), the change's own.
            let stated = outcome.terms.for_type(store::view(pending)?.order_type);
            let patch = Patch {
                quantity: stated.quantity.or(patch.quantity),
                price: stated.price.or(patch.price),
                trigger_price: stated.trigger_price.or(patch.trigger_price),
                ..Patch::from_outcome(&outcome)
            };
            engine
                .record_outcome(pending, outcome.status, patch, held)
                .await
        }
        Err(BrokerError::Unavailable(reason)) => {
            tracing::warn!(order_id = %pending.id, %reason, "broker outcome unknown");
            engine
                .record_outcome(pending, OrderStatus::Unknown, Patch::default(), held)
                .await
        }
        Err(error) => {
            // The lookup runs under the lease, renewed while it waits (the order book may
            // take seconds); a lease lost meanwhile leaves the order to whoever took it.
            let lookup = after_refusal(at, pending, &error);
            let stored =
                match lease::guard(&engine.orders, lease, engine.lease_terms(), lookup).await {
                    Ok(after) => {
                        let (to, patch) = match after {
                            AfterRefusal::Ended(now) => (now.status, Patch::from_outcome(&now)),
                            // Restoring the working state could show an order the broker has
                            // ended as working, for good: reconciliation reads the broker's
                            // state instead.
                            AfterRefusal::Unread => (OrderStatus::Unknown, Patch::default()),
                            AfterRefusal::AsItWas => (previous, Patch::default()),
                        };
                        engine.record_outcome(pending, to, patch, held).await?
                    }
                    Err(LeaseLost) => engine.reload(pending).await?,
                };
            Err(refused_change(&stored, &error)?)
        }
    }
}

/// The answer to a change the broker refused, by the state `stored` is left in: ended (as
/// the broker said, or as its order-update stream recorded meanwhile) is `INVALID_STATE`;
/// working, the broker's refusal as it is; otherwise (`UNKNOWN`, or still pending because
/// the lease ran out while the broker was asked) the refusal, saying that reconciliation
/// will read the order's state.
fn refused_change(stored: &orders::Model, error: &BrokerError) -> Result<ErrorBody, ErrorBody> {
    let now = store::status_of(stored)?;
    if now.is_terminal() {
        return Ok(ErrorBody::new(
            ErrorCode::InvalidState,
            format!(
                "the order is already {now} at the broker, which refused the change ({error}); \
                 nothing was changed"
            ),
        ));
    }
    let refused = broker_error(error);
    if now.is_working() {
        return Ok(refused);
    }
    Ok(ErrorBody::new(
        refused.code,
        format!(
            "{}; the order's state at the broker could not be read afterwards, so it is {now} \
             until reconciliation reads it: get it before changing it again",
            refused.message
        ),
    ))
}

/// What a broker's refusal of a change says about the order.
enum AfterRefusal {
    /// The order had already ended at the broker (filled, cancelled, rejected) before the
    /// change reached it: as the broker has it.
    Ended(BrokerOutcome),
    /// The order is as it was: the refusal concerned the change (or said nothing about the
    /// order, like an outage or a rate limit), or the broker has it still working.
    AsItWas,
    /// The broker refused the change, and its state of the order could not be read.
    Unread,
}

/// What the broker's refusal of a change to `pending` says about the order: a refusal of
/// the change itself (not an outage or a rate limit, which say nothing about the order)
/// may mean that the order had already ended at the broker (before its order-update stream
/// said so, or while it was down), so the order is looked up there by Pinnacle's id.
async fn after_refusal(
    at: AtBroker<'_>,
    pending: &orders::Model,
    refusal: &BrokerError,
) -> AfterRefusal {
    if !matches!(refusal, BrokerError::Rejected(_)) {
        return AfterRefusal::AsItWas;
    }
    // (A rejection of an order with fills is recorded as its end, `CANCELLED`.)
    match at.broker.find_order(at.creds, OrderKeys::of(pending)).await {
        Ok(Some(now)) if now.status.is_terminal() => {
            tracing::info!(order_id = %pending.id, status = %now.status, "a refused change came after the order finished at the broker");
            AfterRefusal::Ended(now)
        }
        Ok(_) => AfterRefusal::AsItWas,
        Err(error) => {
            tracing::warn!(order_id = %pending.id, %error, "the order's state after a refused change could not be read; it is UNKNOWN until reconciled");
            AfterRefusal::Unread
        }
    }
}

/// Cancels a working order (the `cancel` verb).
pub(super) async fn cancel(
    engine: &Engine,
    principal: &Principal,
    request_id: &str,
    target: &OrderRef,
) -> Result<OrderReply, ErrorBody> {
    let user_id = principal.user_id.as_str();
    let order = query::resolve(engine, user_id, target).await?;
    must_be_working(&order, "cancelled")?;
    // Cancels are never blocked by a kill switch, but they count towards the rate.
    let limits = engine.limits(user_id).await?;
    risk::check(&engine.writer, user_id, &limits, None).await?;
    let actor = Actor {
        name: user_id,
        token_id: Some(&principal.token_id),
    };
    let cancelled = cancel_as(engine, &order, actor, "order.cancel", request_id).await?;
    Ok(store::view(&cancelled)?)
}

/// Cancels a working order on behalf of `actor` (a user, or square-off): PENDING_CANCEL
/// under a lease, the broker's answer recorded; a refused cancel is an error and leaves
/// the order working.
pub(super) async fn cancel_as(
    engine: &Engine,
    order: &orders::Model,
    actor: Actor<'_>,
    purpose: &str,
    request_id: &str,
) -> Result<orders::Model, ErrorBody> {
    let previous = must_be_working(order, "cancelled")?;
    let account = credentials::account_of(&engine.db, order)
        .await
        .map_err(|e| e.into_error_body())?;
    let broker = engine.broker_for(&account)?;
    let creds = credentials::open_as(engine, actor, &account, purpose, request_id).await?;
    let (pending, lease) = begin(engine, order, OrderStatus::PendingCancel).await?;
    let broker_order_id = pending.broker_order_id.clone().unwrap_or_default();
    let placed = as_request(&store::view(order)?);
    let call = broker.cancel_order(&creds, &broker_order_id, &placed, filled(&pending));
    let answer = engine
        .call_broker(&lease, broker.name(), "cancel_order", call)
        .await;
    let at = AtBroker {
        broker: broker.as_ref(),
        creds: &creds,
    };
    let settled = settle(
        engine,
        (&pending, &lease),
        previous,
        answer,
        Patch::default(),
        at,
    )
    .await;
    drop(creds);
    settled
}

/// `current` with `change` applied, if the change fits the order: the quantity stays
/// above what is filled, only prices the order type has are changed, and something is.
fn changed(current: &OrderReply, change: &ModifyRequest) -> Result<OrderRequest, ErrorBody> {
    if let Some(order_type) = change.order_type.filter(|t| *t != current.order_type) {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            format!(
                "the order type cannot be modified ({} to {}): cancel the order and place a new one",
                current.order_type.as_str(),
                order_type.as_str()
            ),
        ));
    }
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
        ..as_request(current)
    };
    if (modified.quantity, modified.price, modified.trigger_price)
        == (current.quantity, current.price, current.trigger_price)
    {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            "the modify changes nothing: quantity, price and trigger_price are the order's own",
        ));
    }
    Ok(modified)
}

/// Changes a working order's quantity and/or limit price.
pub(super) async fn modify(
    engine: &Engine,
    principal: &Principal,
    request_id: &str,
    change: &ModifyRequest,
) -> Result<OrderReply, ErrorBody> {
    change.validate(engine.settings.max_quantity)?;
    let user_id = principal.user_id.as_str();
    let order = query::resolve(engine, user_id, &change.order).await?;
    let previous = must_be_working(&order, "modified")?;
    let modified = changed(&store::view(&order)?, change)?;
    modified.validate(engine.settings.max_quantity)?;
    let account = credentials::account_of(&engine.db, &order)
        .await
        .map_err(|e| e.into_error_body())?;
    let broker = engine.broker_for(&account)?;
    let limits = engine.limits(user_id).await?;
    risk::check(
        &engine.writer,
        user_id,
        &limits,
        Some((&modified, broker.as_ref())),
    )
    .await?;
    // As for a place: the broker knows the symbol's price and tick before the new price is
    // judged, and nothing is stored or touched when it cannot.
    broker
        .ready_for(&modified)
        .await
        .map_err(|e| broker_error(&e))?;
    let creds = credentials::open(engine, principal, &account, "order.modify", request_id).await?;
    // Refused before the order leaves its state: an off-tick price changes nothing.
    broker
        .preflight(&creds, &modified)
        .map_err(|e| broker_error(&e))?;
    let (pending, lease) = begin(engine, &order, OrderStatus::PendingModify).await?;
    let broker_order_id = pending.broker_order_id.clone().unwrap_or_default();
    let call = broker.modify_order(&creds, &broker_order_id, &modified, filled(&pending));
    let answer = engine
        .call_broker(&lease, broker.name(), "modify_order", call)
        .await;
    let patch = Patch {
        quantity: Some(modified.quantity),
        price: modified.price,
        trigger_price: modified.trigger_price,
        ..Patch::default()
    };
    let at = AtBroker {
        broker: broker.as_ref(),
        creds: &creds,
    };
    let modified = settle(engine, (&pending, &lease), previous, answer, patch, at).await;
    drop(creds);
    Ok(store::view(&modified?)?)
}
