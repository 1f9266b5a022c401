//! Intraday square-off: after `PINNACLE_WORKER_SQUARE_OFF_AT` (IST) each day, working
//! `INTRADAY` orders are cancelled and open `INTRADAY` positions are closed at market.
//!
//! Every worker runs it; it is idempotent across them. A closing order's client order id
//! is derived from the day, the account and the instrument, so the database's unique key
//! lets exactly one worker place it; cancels are compare-and-set transitions. Each
//! credential use is audited first, as `order.squareoff` by `pinnacle-squareoff`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveTime, TimeZone, Utc};
use pinnacle_common::broker::BrokerError;
use pinnacle_common::clock::ist;
use pinnacle_common::entities::orders;
use pinnacle_common::error::ErrorBody;
use pinnacle_common::model::{OrderRequest, OrderStatus, OrderType, Position, Product, Side};
use pinnacle_common::shutdown::Shutdown;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use sha2::{Digest, Sha256};

use crate::credentials::{self, Actor};
use crate::handler::internal;
use crate::place::broker_error;
use crate::service::Worker;
use crate::store::{self, Inserted, Patch};

/// The audit actor.
pub const ACTOR: &str = "pinnacle-squareoff";

/// Parses `HH:MM`; empty means "off".
pub fn parse_time(text: &str) -> Result<Option<NaiveTime>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    NaiveTime::parse_from_str(text, "%H:%M")
        .map(Some)
        .map_err(|_| format!("PINNACLE_WORKER_SQUARE_OFF_AT must be HH:MM (IST), got {text:?}"))
}

/// The closing order's client order id. It is derived from the day, the account, the
/// instrument and the position's bought and sold quantities: every worker computes the same
/// id for the same position (so only one closing order is placed), and a position reopened
/// later in the day gets a new one.
fn closing_id(day: &str, account_id: &str, position: &Position) -> String {
    let key = format!(
        "{account_id}|{}|{}|{}|{}",
        position.exchange, position.symbol, position.buy_quantity, position.sell_quantity
    );
    let digest = Sha256::digest(key.as_bytes());
    format!("sqoff-{day}-{}", &hex::encode(digest)[..16])
}

/// Squares off every account with intraday activity today; returns how many orders it
/// cancelled or placed.
pub async fn square_off(worker: &Worker) -> Result<usize, ErrorBody> {
    let now = Utc::now().with_timezone(&ist());
    let day = now.format("%Y%m%d").to_string();
    let Some(midnight) = now.date_naive().and_hms_opt(0, 0, 0) else {
        return Ok(0);
    };
    let since = ist()
        .from_local_datetime(&midnight)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    let intraday = orders::Entity::find()
        .filter(orders::Column::Product.eq(Product::Intraday.as_str()))
        .filter(orders::Column::UpdatedAt.gte(since))
        .all(&worker.db)
        .await
        .map_err(|e| internal("listing intraday orders", e))?;
    let mut done = 0;
    // 1. Cancel what is still working.
    for order in intraday.iter().filter(|o| store::status_of(o).is_working()) {
        if cancel(worker, order).await.is_ok() {
            done += 1;
        }
    }
    // 2. Close what is open, per account.
    let mut accounts: Vec<&str> = intraday
        .iter()
        .map(|o| o.broker_account_id.as_str())
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    for account_id in accounts {
        done += close_positions(worker, account_id, &day).await?;
    }
    Ok(done)
}

async fn cancel(worker: &Worker, order: &orders::Model) -> Result<(), ErrorBody> {
    let account = credentials::account_of(&worker.db, order)
        .await
        .map_err(|e| e.into_error_body())?;
    let broker = worker.broker_for(&account)?;
    let creds = open(worker, &account).await?;
    let previous = store::status_of(order);
    let pending = worker
        .advance(order, OrderStatus::PendingCancel, Patch::default())
        .await?;
    let answer = broker
        .cancel_order(
            &creds,
            pending.broker_order_id.as_deref().unwrap_or_default(),
        )
        .await;
    match answer {
        Ok(outcome) => worker
            .advance(&pending, outcome.status, Patch::from_outcome(&outcome))
            .await
            .map(|_| ()),
        Err(error) => {
            worker.advance(&pending, previous, Patch::default()).await?;
            Err(broker_error(&error))
        }
    }
}

async fn open(
    worker: &Worker,
    account: &pinnacle_common::entities::broker_accounts::Model,
) -> Result<pinnacle_common::broker::BrokerCredentials, ErrorBody> {
    let actor = Actor {
        name: ACTOR,
        token_id: None,
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    credentials::open_as(worker, actor, account, "order.squareoff", &request_id).await
}

async fn close_positions(worker: &Worker, account_id: &str, day: &str) -> Result<usize, ErrorBody> {
    let account =
        pinnacle_common::entities::broker_accounts::Entity::find_by_id(account_id.to_string())
            .limit(1)
            .one(&worker.db)
            .await
            .map_err(|e| internal("loading the account", e))?;
    let Some(account) = account else { return Ok(0) };
    let broker = worker.broker_for(&account)?;
    let creds = open(worker, &account).await?;
    let positions = broker
        .positions(&creds)
        .await
        .map_err(|e| broker_error(&e))?;
    let mut placed = 0;
    for position in positions
        .iter()
        .filter(|p| p.product == Product::Intraday && p.net_quantity != 0)
    {
        let order = OrderRequest {
            client_order_id: closing_id(day, &account.id, position),
            exchange: position.exchange.clone(),
            symbol: position.symbol.clone(),
            side: if position.net_quantity > 0 {
                Side::Sell
            } else {
                Side::Buy
            },
            order_type: OrderType::Market,
            quantity: position.net_quantity.abs(),
            price: None,
            trigger_price: None,
            product: Product::Intraday,
            account: None,
        };
        let created = match store::insert_new(&worker.db, &account.user_id, &account.id, &order)
            .await
            .map_err(|e| internal("storing the square-off order", e))?
        {
            // Another worker (or an earlier sweep today) already closed this one.
            Inserted::Existing(_) => continue,
            Inserted::Created(created) => created,
        };
        worker.announce(Some(OrderStatus::New), &created).await;
        let stored = match broker.place_order(&creds, &created.id, &order).await {
            Ok(outcome) => {
                worker
                    .advance(&created, outcome.status, Patch::from_outcome(&outcome))
                    .await?
            }
            Err(BrokerError::Unavailable(_)) => {
                worker
                    .advance(&created, OrderStatus::Unknown, Patch::default())
                    .await?
            }
            Err(error) => {
                let patch = Patch {
                    rejection: Some(broker_error(&error)),
                    ..Patch::default()
                };
                worker
                    .advance(&created, OrderStatus::Rejected, patch)
                    .await?
            }
        };
        tracing::info!(order_id = %stored.id, status = %stored.status, "intraday position squared off");
        placed += 1;
    }
    Ok(placed)
}

/// Checks once a minute (and at start) whether it is time, until `shutdown` fires.
pub async fn run(worker: Arc<Worker>, shutdown: Shutdown) {
    let at = match parse_time(&worker.settings.square_off_at) {
        Ok(Some(at)) => at,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(%error, "intraday square-off is off");
            return;
        }
    };
    let period = Duration::from_millis(worker.settings.reconcile_interval_ms.clamp(10, 60_000));
    let mut timer = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = timer.tick() => {
                if Utc::now().with_timezone(&ist()).time() < at {
                    continue;
                }
                match square_off(&worker).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(orders = n, "intraday square-off"),
                    Err(error) => tracing::warn!(%error, "intraday square-off failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_closing_ids_are_stable_valid_client_order_ids() {
        assert_eq!(parse_time(""), Ok(None));
        assert_eq!(parse_time("15:15"), Ok(NaiveTime::from_hms_opt(15, 15, 0)));
        assert!(parse_time("3pm").is_err());
        let position = Position {
            exchange: "NSE".into(),
            symbol: "NIFTY 50".into(),
            product: Product::Intraday,
            net_quantity: 5,
            average_price: Some(100),
            buy_quantity: 5,
            sell_quantity: 0,
            realized_pnl: 0,
        };
        let id = closing_id("20261125", "acct", &position);
        assert_eq!(
            id,
            closing_id("20261125", "acct", &position),
            "every worker agrees"
        );
        assert_ne!(id, closing_id("20261126", "acct", &position), "a new day");
        let reopened = Position {
            buy_quantity: 10,
            sell_quantity: 5,
            ..position
        };
        assert_ne!(
            id,
            closing_id("20261125", "acct", &reopened),
            "a reopened position"
        );
        let request = OrderRequest {
            client_order_id: id,
            exchange: "NSE".into(),
            symbol: "NIFTY 50".into(),
            side: Side::Sell,
            order_type: OrderType::Market,
            quantity: 1,
            price: None,
            trigger_price: None,
            product: Product::Intraday,
            account: None,
        };
        assert!(request.validate(10).is_ok());
    }
}
