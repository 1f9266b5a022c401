//! `funds`, `positions`, `holdings`, `trades`: portfolio queries. They use the broker session, so each
//! is audited before the credentials are decrypted, exactly like an order.

use std::sync::Arc;

use pinnacle_common::auth::Principal;
use pinnacle_common::broker::{Broker, BrokerCredentials};
use pinnacle_common::error::ErrorBody;
use pinnacle_common::model::{Funds, Holdings, PortfolioRequest, Positions, Trades};

use super::core::Engine;
use super::credentials;
use super::errors::broker_error;

async fn open(
    engine: &Engine,
    principal: &Principal,
    request_id: &str,
    query: &PortfolioRequest,
    purpose: &str,
) -> Result<(Arc<dyn Broker>, BrokerCredentials), ErrorBody> {
    let account = engine
        .account_for(&principal.user_id, query.account.as_deref())
        .await?;
    let broker = engine.broker_for(&account)?.clone();
    let creds = credentials::open(engine, principal, &account, purpose, request_id).await?;
    Ok((broker, creds))
}

/// Cash and margin.
pub(super) async fn funds(
    engine: &Engine,
    principal: &Principal,
    request_id: &str,
    query: &PortfolioRequest,
) -> Result<Funds, ErrorBody> {
    let (broker, creds) = open(engine, principal, request_id, query, "portfolio.funds").await?;
    broker.funds(&creds).await.map_err(|e| broker_error(&e))
}

/// Net positions.
pub(super) async fn positions(
    engine: &Engine,
    principal: &Principal,
    request_id: &str,
    query: &PortfolioRequest,
) -> Result<Positions, ErrorBody> {
    let (broker, creds) = open(engine, principal, request_id, query, "portfolio.positions").await?;
    let positions = broker
        .positions(&creds)
        .await
        .map_err(|e| broker_error(&e))?;
    Ok(Positions { positions })
}

/// Delivery holdings.
pub(super) async fn holdings(
    engine: &Engine,
    principal: &Principal,
    request_id: &str,
    query: &PortfolioRequest,
) -> Result<Holdings, ErrorBody> {
    let (broker, creds) = open(engine, principal, request_id, query, "portfolio.holdings").await?;
    let holdings = broker
        .holdings(&creds)
        .await
        .map_err(|e| broker_error(&e))?;
    Ok(Holdings { holdings })
}

/// The trade book.
pub(super) async fn trades(
    engine: &Engine,
    principal: &Principal,
    request_id: &str,
    query: &PortfolioRequest,
) -> Result<Trades, ErrorBody> {
    let (broker, creds) = open(engine, principal, request_id, query, "portfolio.trades").await?;
    let trades = broker.trades(&creds).await.map_err(|e| broker_error(&e))?;
    Ok(Trades { trades })
}
