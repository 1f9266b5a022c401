//! `place`: validate → replay a known client order id → risk → broker readiness (a price
//! for the symbol) → audit and decrypt → insert as SUBMITTED under this engine's lease
//! (unique key; the NEW → SUBMITTED step and both events are one commit) → broker, under
//! the lease → FILLED / OPEN / REJECTED, or UNKNOWN when the broker's answer was lost
//! (never re-sent blindly). A caller that loses its lease drops the broker call and
//! answers with the order as reconciliation leaves it.

use std::sync::Arc;

use pinnacle_common::auth::Principal;
use pinnacle_common::broker::{Broker, BrokerError, NOTHING_PLACED};
use pinnacle_common::entities::{broker_accounts, orders};
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{OrderReply, OrderRequest, OrderStatus};
use tracing::Instrument;

use super::core::Engine;
use super::credentials::{self, Actor};
use super::errors::{broker_error, internal};
use super::reconcile;
use super::risk;
use super::store::{self, Inserted, NewOrder, Ownership, Patch};

/// Places a trader's new order (the `place` verb): `principal`'s, with every check.
pub(super) async fn place(
    engine: &Engine,
    principal: &Principal,
    request_id: &str,
    order: &OrderRequest,
) -> Result<OrderReply, ErrorBody> {
    order.validate(engine.settings.max_quantity)?;
    tracing::Span::current().record("pinnacle.client_order_id", order.client_order_id.as_str());
    let caller = Caller {
        user_id: &principal.user_id,
        actor: Actor {
            name: &principal.user_id,
            token_id: Some(&principal.token_id),
        },
        purpose: "order.place",
        request_id,
        risk: RiskChecks::Opening,
        account: None,
    };
    store::reply_for(&submit(engine, &caller, order).await?)
}

/// Who places an order through [`submit`], for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The user the order belongs to.
    pub user_id: &'a str,
    /// Who is acting: the user with their token, or a service (square-off).
    pub actor: Actor<'a>,
    /// The audit purpose, e.g. `order.place` or `order.squareoff`.
    pub purpose: &'static str,
    /// The request id the audit event carries.
    pub request_id: &'a str,
    /// Which pre-trade checks apply.
    pub risk: RiskChecks,
    /// The account to use; `None` picks it from the order's `account` label.
    pub account: Option<&'a broker_accounts::Model>,
}

/// Which pre-trade checks an order goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskChecks {
    /// A trader's order: every limit, the kill switches and the rate.
    Opening,
    /// An order that only closes a position (square-off): the rate only, like a cancel; a
    /// kill switch must not keep a position open.
    Closing,
}

/// The one place pipeline, for every caller: replay a known client order id (settling it
/// first if its outcome was lost) → risk → broker readiness → audit and decrypt →
/// regulatory preflight → insert under a lease → broker, under the lease → record the
/// answer. Returns the order as stored; a rejected one is returned, not an error, so a
/// caller can tell a stored rejection ([`store::reply_for`] turns it into the error) from a
/// refusal before anything was stored (`Err`).
pub(super) async fn submit(
    engine: &Engine,
    caller: &Caller<'_>,
    order: &OrderRequest,
) -> Result<orders::Model, ErrorBody> {
    let user_id = caller.user_id;
    // A retry of a known order is answered from the database, without touching credentials.
    if let Some(existing) = replay_warming(engine, caller, order).await? {
        return Ok(existing);
    }
    let (account, broker) = checked(engine, caller, order).await?;
    let creds = credentials::open_as(
        engine,
        caller.actor,
        &account,
        caller.purpose,
        caller.request_id,
    )
    .await?;
    // Refused before anything is stored or sent: the order never existed, and a resend of
    // the same client order id is attempted again.
    broker
        .preflight(&creds, order)
        .map_err(|e| broker_error(&e))?;
    let admission = broker
        .admit(&creds, order)
        .await
        .map_err(|e| broker_error(&e))?;
    let order_id = uuid::Uuid::now_v7().to_string();
    let (lease, lease_until_ms) = engine.leases.issue(&order_id);
    let new = NewOrder {
        order_id: &order_id,
        user_id,
        broker_account_id: &account.id,
        request: order,
        owner: &lease.owner,
        lease_until_ms,
    };
    let submitted = match engine
        .orders
        .insert_new(new)
        .await
        .map_err(|e| internal("storing the order", e))?
    {
        Inserted::Existing(existing) => return Ok(existing),
        Inserted::Created(created) => created,
    };
    // The insert's events are announced by the broker call (see `Engine::call_broker`).
    let call = broker.place_order(&creds, &submitted.id, order, admission);
    let placed = engine
        .call_broker(&lease, broker.name(), "place_order", call)
        .await;
    drop(creds);
    let Some(placed) = placed else {
        // Nothing more is sent; reconciliation settles the order from the broker's books.
        return engine.reload(&submitted).await;
    };
    let (to, patch) = settled_by(&submitted, placed);
    let stored = engine
        .record_outcome(&submitted, to, patch, Ownership::Held(&lease.owner))
        .await?;
    tracing::info!(order_id = %stored.id, status = %stored.status, "order handled");
    Ok(stored)
}

/// [`replay`], with what the checks will read (account, limits) loaded into the cache
/// beside it when they are not there yet and the database serves reads concurrently.
/// The checks themselves still run after the replay lookup, reading the cache, so an
/// invalidation that arrived meanwhile is honoured.
async fn replay_warming(
    engine: &Engine,
    caller: &Caller<'_>,
    order: &OrderRequest,
) -> Result<Option<orders::Model>, ErrorBody> {
    let accounts = caller.account.is_none();
    if !engine.concurrent_reads() || engine.is_warm(caller.user_id, accounts) {
        return replay(engine, caller.user_id, order).await;
    }
    let warm = engine.warm(caller.user_id, accounts);
    let (replayed, ()) = futures::join!(replay(engine, caller.user_id, order), warm);
    replayed
}

/// The stored order for a known client order id (settled first if its outcome was lost),
/// or `None` for a new one.
async fn replay(
    engine: &Engine,
    user_id: &str,
    order: &OrderRequest,
) -> Result<Option<orders::Model>, ErrorBody> {
    let Some(existing) = engine
        .orders
        .find(user_id, &order.client_order_id)
        .await
        .map_err(|e| internal("looking up the order", e))?
    else {
        return Ok(None);
    };
    if reconcile::is_stale(engine, &existing) {
        reconcile::settle(engine, &existing).await.map(Some)
    } else {
        Ok(Some(existing))
    }
}

/// The account and its broker, once the risk checks passed and the broker can price the
/// symbol: nothing is stored and no credential touched before.
async fn checked<'e>(
    engine: &'e Engine,
    caller: &Caller<'_>,
    order: &OrderRequest,
) -> Result<(broker_accounts::Model, &'e Arc<dyn Broker>), ErrorBody> {
    let account = match caller.account {
        Some(account) => account.clone(),
        None => {
            engine
                .account_for(caller.user_id, order.account.as_deref())
                .await?
        }
    };
    let broker = engine.broker_for(&account)?;
    let limits = engine.limits(caller.user_id).await?;
    let checked = match caller.risk {
        RiskChecks::Opening => Some((order, broker.as_ref())),
        RiskChecks::Closing => None,
    };
    risk::check(&engine.writer, caller.user_id, &limits, checked)
        .instrument(pinnacle_common::db::span(
            &engine.db,
            "INSERT",
            "order_rate",
        ))
        .await?;
    broker
        .ready_for(order)
        .await
        .map_err(|e| broker_error(&e))?;
    Ok((account, broker))
}

/// The state a broker's answer to a place puts the order in.
fn settled_by(
    order: &orders::Model,
    placed: Result<pinnacle_common::broker::BrokerOutcome, BrokerError>,
) -> (OrderStatus, Patch) {
    match placed {
        Ok(outcome) => (outcome.status, Patch::from_outcome(&outcome)),
        Err(BrokerError::Unavailable(reason)) => {
            // The broker may or may not have the order: record that we do not know, and
            // let reconciliation ask the broker. Re-sending could duplicate it.
            tracing::warn!(order_id = %order.id, %reason, "broker outcome unknown");
            (OrderStatus::Unknown, Patch::default())
        }
        Err(error) => {
            let patch = Patch {
                rejection: Some(stored_rejection(&error)),
                ..Patch::default()
            };
            (OrderStatus::Rejected, patch)
        }
    }
}

/// The rejection stored for an order the broker refused after it was stored. A stored
/// order is a verdict that a retry of its client order id replays, so it never carries a
/// retryable code (which tells the caller to resend the same request): a passing refusal
/// that still came after the insert (the broker's own rate limit, answered after
/// [`Broker::admit`] took the order's turn) is stored as `BROKER_REJECTED`, saying that
/// nothing was placed.
fn stored_rejection(error: &BrokerError) -> ErrorBody {
    let rejection = broker_error(error);
    if !rejection.code.is_retryable() {
        return rejection;
    }
    ErrorBody::new(
        ErrorCode::BrokerRejected,
        format!(
            "{} (refused after the order was stored: {NOTHING_PLACED})",
            rejection.message
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_rejection_never_tells_the_caller_to_resend_the_same_order() {
        let limited = stored_rejection(&BrokerError::RateLimited(
            "SmartAPI rate limit for Orders".into(),
        ));
        assert_eq!(limited.code, ErrorCode::BrokerRejected);
        assert!(
            limited.message.contains("rate limit")
                && limited.message.contains("nothing was placed"),
            "{}",
            limited.message
        );
        let refused = stored_rejection(&BrokerError::Rejected("AB1012".into()));
        assert_eq!(
            refused,
            broker_error(&BrokerError::Rejected("AB1012".into()))
        );
        let passing = [
            BrokerError::RateLimited("403".into()),
            BrokerError::Unavailable("timed out".into()),
            BrokerError::PriceUnavailable {
                exchange: "NSE".into(),
                symbol: "SBIN-EQ".into(),
            },
        ];
        for error in passing {
            assert!(broker_error(&error).code.is_retryable(), "{error}");
            assert!(!stored_rejection(&error).code.is_retryable(), "{error}");
        }
    }
}
