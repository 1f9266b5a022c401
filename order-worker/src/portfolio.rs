//! `funds`, `positions`, `holdings`, `trades`: portfolio queries. They use the broker session, so each
//! is audited before the credentials are decrypted, exactly like an order.

use std::sync::Arc;

use pinnacle_common::broker::{Broker, BrokerCredentials};
use pinnacle_common::error::ErrorBody;
use pinnacle_common::model::{Funds, Holdings, PortfolioRequest, Positions, Trades};

use crate::credentials;
use crate::handler::Request;
use crate::place::broker_error;
use crate::service::Worker;

async fn open(
    worker: &Worker,
    request: &Request<'_>,
    purpose: &str,
) -> Result<(Arc<dyn Broker>, BrokerCredentials), ErrorBody> {
    let query: PortfolioRequest = if request.payload.is_empty() {
        PortfolioRequest::default()
    } else {
        request.decode()?
    };
    let account = credentials::load_account(
        &worker.db,
        &request.principal.user_id,
        query.account.as_deref(),
    )
    .await
    .map_err(|e| e.into_error_body())?;
    let broker = worker.broker_for(&account)?.clone();
    let creds = credentials::open(
        worker,
        &request.principal,
        &account,
        purpose,
        request.request_id,
    )
    .await?;
    Ok((broker, creds))
}

/// Cash and margin.
pub async fn funds(worker: &Worker, request: &Request<'_>) -> Result<Funds, ErrorBody> {
    let (broker, creds) = open(worker, request, "portfolio.funds").await?;
    broker.funds(&creds).await.map_err(|e| broker_error(&e))
}

/// Net positions.
pub async fn positions(worker: &Worker, request: &Request<'_>) -> Result<Positions, ErrorBody> {
    let (broker, creds) = open(worker, request, "portfolio.positions").await?;
    let positions = broker
        .positions(&creds)
        .await
        .map_err(|e| broker_error(&e))?;
    Ok(Positions { positions })
}

/// Delivery holdings.
pub async fn holdings(worker: &Worker, request: &Request<'_>) -> Result<Holdings, ErrorBody> {
    let (broker, creds) = open(worker, request, "portfolio.holdings").await?;
    let holdings = broker
        .holdings(&creds)
        .await
        .map_err(|e| broker_error(&e))?;
    Ok(Holdings { holdings })
}

/// The trade book.
pub async fn trades(worker: &Worker, request: &Request<'_>) -> Result<Trades, ErrorBody> {
    let (broker, creds) = open(worker, request, "portfolio.trades").await?;
    let trades = broker.trades(&creds).await.map_err(|e| broker_error(&e))?;
    Ok(Trades { trades })
}
