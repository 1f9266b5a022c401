//! `place`: validate → replay a known client order id → risk → audit and decrypt → insert
//! as SUBMITTED (unique key; the NEW → SUBMITTED step is one commit) → broker → FILLED /
//! OPEN / REJECTED, or UNKNOWN when the broker's answer was lost (never re-sent blindly).

use pinnacle_common::broker::BrokerError;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{OrderReply, OrderRequest, OrderStatus};
use tracing::Instrument;

use crate::credentials;
use crate::handler::{internal, Request};
use crate::reconcile;
use crate::risk;
use crate::service::Worker;
use crate::store::{self, Inserted, Patch};

/// Maps a broker failure to the stable code stored with a rejected order.
pub fn broker_error(error: &BrokerError) -> ErrorBody {
    let code = match error {
        BrokerError::UnknownSymbol { .. } => ErrorCode::UnknownSymbol,
        BrokerError::InsufficientFunds { .. } => ErrorCode::InsufficientFunds,
        BrokerError::Regulatory(_) => ErrorCode::Regulatory,
        BrokerError::RateLimited(_) => ErrorCode::RateLimited,
        BrokerError::Rejected(_) | BrokerError::Credentials(_) | BrokerError::Unavailable(_) => {
            ErrorCode::BrokerRejected
        }
    };
    ErrorBody::new(code, error.to_string())
}

/// Places a new order.
pub async fn place(worker: &Worker, request: &Request<'_>) -> Result<OrderReply, ErrorBody> {
    let order: OrderRequest = request.decode()?;
    order.validate(worker.settings.max_quantity)?;
    tracing::Span::current().record("client_order_id", order.client_order_id.as_str());
    let user_id = request.principal.user_id.as_str();

    // A retry of a known order is answered from the database, without touching credentials.
    if let Some(existing) = store::find(&worker.db, user_id, &order.client_order_id)
        .await
        .map_err(|e| internal("looking up the order", e))?
    {
        let existing = if reconcile::is_stale(worker, &existing) {
            reconcile::settle(worker, &existing).await?
        } else {
            existing
        };
        return store::reply_for(&existing);
    }

    let account = credentials::load_account(&worker.db, user_id, order.account.as_deref())
        .await
        .map_err(|e| e.into_error_body())?;
    let broker = worker.broker_for(&account)?;
    risk::check(&worker.db, user_id, Some((&order, broker.as_ref())))
        .instrument(pinnacle_common::db::span(
            &worker.db,
            "SELECT",
            "risk_limits",
        ))
        .await?;

    let creds = credentials::open(
        worker,
        &request.principal,
        &account,
        "order.place",
        request.request_id,
    )
    .await?;
    // Refused before anything is stored or sent: the order never existed.
    broker
        .preflight(&creds, &order)
        .map_err(|e| broker_error(&e))?;
    let created = match store::insert_new(&worker.db, user_id, &account.id, &order)
        .await
        .map_err(|e| internal("storing the order", e))?
    {
        Inserted::Existing(existing) => return store::reply_for(&existing),
        Inserted::Created(created) => created,
    };
    let mut new = created.clone();
    new.status = OrderStatus::New.as_str().to_string();
    worker.announce(None, &new).await;
    worker.announce(Some(OrderStatus::New), &created).await;
    let submitted = created;
    let placed = broker
        .place_order(&creds, &submitted.id, &order)
        .instrument(tracing::info_span!(
            "broker.place_order",
            otel.kind = "client",
            broker = broker.name()
        ))
        .await;
    pinnacle_common::metrics::metrics().broker_request(
        broker.name(),
        "place_order",
        placed.is_ok(),
    );
    drop(creds);
    let stored = match placed {
        Ok(outcome) => {
            worker
                .record_outcome(&submitted, outcome.status, Patch::from_outcome(&outcome))
                .await?
        }
        Err(BrokerError::Unavailable(reason)) => {
            // The broker may or may not have the order: record that we do not know, and
            // let reconciliation ask the broker. Re-sending could duplicate it.
            tracing::warn!(order_id = %submitted.id, %reason, "broker outcome unknown");
            worker
                .record_outcome(&submitted, OrderStatus::Unknown, Patch::default())
                .await?
        }
        Err(error) => {
            let rejection = broker_error(&error);
            let patch = Patch {
                rejection: Some(rejection),
                ..Patch::default()
            };
            worker
                .record_outcome(&submitted, OrderStatus::Rejected, patch)
                .await?
        }
    };
    tracing::info!(order_id = %stored.id, status = %stored.status, "order handled");
    store::reply_for(&stored)
}
