//! Intraday square-off: after `PINNACLE_WORKER_SQUARE_OFF_AT` (IST) each day, working
//! `INTRADAY` orders are cancelled and open `INTRADAY` positions are closed with marketable
//! LIMIT orders priced from the broker's last price
//! ([`pinnacle_common::broker::Broker::last_price`]: the paper broker's last tick, Angel
//! One's LTP) within `PINNACLE_WORKER_SQUARE_OFF_BAND_BPS`
//! (Angel One refuses MARKET orders from the API), through the same pipeline as every
//! order ([`super::place::submit`], [`super::manage::cancel_as`]).
//!
//! Every engine runs it; it is idempotent across them. A closing order's client order id
//! is derived from the day, the account and the instrument, so the database's unique key
//! lets exactly one engine place it; a refused one is retried on the next sweep under the
//! next attempt's id. Cancels are compare-and-set transitions under a lease. Each
//! credential use is audited first, as `order.squareoff` by `pinnacle-squareoff`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use pinnacle_common::clock::ist;
use pinnacle_common::entities::orders;
use pinnacle_common::error::ErrorBody;
use pinnacle_common::model::{OrderRequest, OrderStatus, OrderType, Position, Product, Side};
use pinnacle_common::shutdown::Shutdown;
use sea_orm::{EntityTrait, QuerySelect};
use sha2::{Digest, Sha256};

use super::core::Engine;
use super::credentials::{self, Actor};
use super::errors::broker_error;
use super::errors::internal;
use super::manage;
use super::place::{self, Caller, RiskChecks};
use super::store::{self, OrderQuery};

/// The audit actor.
pub const ACTOR: &str = "pinnacle-squareoff";

/// The audit purpose of every credential use.
pub const PURPOSE: &str = "order.squareoff";

/// How every closing order's client order id begins.
const PREFIX: &str = "sqoff-";

/// The closing order's client order id. It is derived from the day, the account, the
/// instrument and the position's bought and sold quantities: every engine computes the same
/// id for the same position (so only one closing order is placed), and a position reopened
/// later in the day gets a new one.
fn closing_id(day: &str, account_id: &str, position: &Position, attempt: u32) -> String {
    let key = format!(
        "{account_id}|{}|{}|{}|{}",
        position.exchange, position.symbol, position.buy_quantity, position.sell_quantity
    );
    let digest = Sha256::digest(key.as_bytes());
    format!("{PREFIX}{day}-{}-{attempt}", &hex::encode(digest)[..16])
}

/// Squares off every account with intraday activity today; returns how many orders it
/// cancelled or placed.
pub(super) async fn square_off(engine: &Engine) -> Result<usize, ErrorBody> {
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
    let intraday = engine
        .orders
        .list(OrderQuery::IntradaySince(since))
        .await
        .map_err(|e| internal("listing intraday orders", e))?;
    let mut done = 0;
    // 1. Cancel what is still working, except the square-off's own closing orders (a
    //    broker that reports fills on its order-update stream leaves them OPEN for a while).
    for order in intraday
        .iter()
        .filter(|o| !o.client_order_id.starts_with(PREFIX))
    {
        match store::status_of(order) {
            Ok(status) if status.is_working() => {}
            Ok(_) => continue,
            Err(error) => {
                tracing::error!(%error, "square-off skips a corrupt order");
                continue;
            }
        }
        if cancel(engine, order).await.is_ok() {
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
        done += close_positions(engine, account_id, &day).await?;
    }
    Ok(done)
}

async fn cancel(engine: &Engine, order: &orders::Model) -> Result<(), ErrorBody> {
    let request_id = uuid::Uuid::now_v7().to_string();
    manage::cancel_as(engine, order, actor(), PURPOSE, &request_id)
        .await
        .map(|_| ())
}

fn actor() -> Actor<'static> {
    Actor {
        name: ACTOR,
        token_id: None,
    }
}

/// The most closing orders tried for one position in a day (each refusal is retried on
/// the next sweep under the next attempt's client order id).
pub const MAX_ATTEMPTS: u32 = 5;

async fn close_positions(engine: &Engine, account_id: &str, day: &str) -> Result<usize, ErrorBody> {
    let account =
        pinnacle_common::entities::broker_accounts::Entity::find_by_id(account_id.to_string())
            .limit(1)
            .one(&engine.db)
            .await
            .map_err(|e| internal("loading the account", e))?;
    let Some(account) = account else { return Ok(0) };
    let broker = engine.broker_for(&account)?;
    let request_id = uuid::Uuid::now_v7().to_string();
    let creds = credentials::open_as(engine, actor(), &account, PURPOSE, &request_id).await?;
    let positions = broker
        .positions(&creds)
        .await
        .map_err(|e| broker_error(&e))?;
    let mut placed = 0;
    for position in positions
        .iter()
        .filter(|p| p.product == Product::Intraday && p.net_quantity != 0)
    {
        let Some(client_order_id) = next_attempt(engine, day, &account, position).await? else {
            continue;
        };
        // The broker's last price (Angel One keeps none in the engine: it is asked).
        let ltp = broker
            .last_price(&creds, &position.exchange, &position.symbol)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, symbol = %position.symbol, "no last price from the broker");
                None
            });
        let Some(ltp) = ltp else {
            tracing::warn!(symbol = %position.symbol, "no price to square off at; retrying next sweep");
            continue;
        };
        let band_bps = engine.settings.square_off_band_bps;
        let order = closing_order(position, client_order_id, ltp, band_bps);
        let caller = Caller {
            user_id: &account.user_id,
            actor: actor(),
            purpose: PURPOSE,
            request_id: &request_id,
            risk: RiskChecks::Closing,
            account: Some(&account),
        };
        match place::submit(engine, &caller, &order).await {
            Ok(stored) => {
                tracing::info!(order_id = %stored.id, status = %stored.status, "intraday position squared off");
                placed += 1;
            }
            Err(error) => {
                tracing::warn!(code = %error.code, message = %error.message, "square-off order refused; retrying next sweep");
            }
        }
    }
    drop(creds);
    Ok(placed)
}

/// The marketable LIMIT order that closes `position`, priced from `ltp` within
/// `band_bps` (see [`protected_price`]).
fn closing_order(
    position: &Position,
    client_order_id: String,
    ltp: i64,
    band_bps: u32,
) -> OrderRequest {
    let side = if position.net_quantity > 0 {
        Side::Sell
    } else {
        Side::Buy
    };
    OrderRequest {
        client_order_id,
        exchange: position.exchange.clone(),
        symbol: position.symbol.clone(),
        side,
        order_type: OrderType::Limit,
        quantity: position.net_quantity.abs(),
        price: Some(protected_price(side, ltp, band_bps)),
        trigger_price: None,
        product: Product::Intraday,
        account: None,
    }
}

/// The client order id of the next closing order for `position`, or `None` when one is
/// already working or filled (or the attempts are used up). A refused or cancelled attempt
/// is retried under the next id, so a transient refusal does not leave the position open.
async fn next_attempt(
    engine: &Engine,
    day: &str,
    account: &pinnacle_common::entities::broker_accounts::Model,
    position: &Position,
) -> Result<Option<String>, ErrorBody> {
    for attempt in 1..=MAX_ATTEMPTS {
        let id = closing_id(day, &account.id, position, attempt);
        let existing = engine
            .orders
            .find(&account.user_id, &id)
            .await
            .map_err(|e| internal("looking up the square-off order", e))?;
        match existing {
            None => return Ok(Some(id)),
            Some(order)
                if matches!(
                    store::status_of(&order)?,
                    OrderStatus::Rejected | OrderStatus::Cancelled
                ) =>
            {
                continue
            }
            Some(_) => return Ok(None),
        }
    }
    tracing::error!(symbol = %position.symbol, "square-off attempts used up; close the position by hand");
    Ok(None)
}

/// A marketable limit price for a closing order: `ltp` moved against the order by
/// `band_bps` basis points (Angel One refuses MARKET orders from the API), rounded to the
/// 5-paise tick toward the last price, so it stays inside the band.
pub fn protected_price(side: Side, ltp: i64, band_bps: u32) -> i64 {
    const TICK: i64 = 5;
    let band = ltp.saturating_mul(i64::from(band_bps)) / 10_000;
    match side {
        Side::Buy => (ltp + band) / TICK * TICK,
        Side::Sell => (ltp - band + TICK - 1) / TICK * TICK,
    }
}

/// Checks once a minute (and at start) whether it is time, until `shutdown` fires.
pub(super) async fn run(engine: Arc<Engine>, shutdown: Shutdown) {
    // Parsed when the settings loaded: a malformed time never gets this far.
    let Some(at) = engine.settings.square_off_at.time() else {
        return;
    };
    let period = Duration::from_millis(engine.settings.reconcile_interval_ms.clamp(10, 60_000));
    let mut timer = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = timer.tick() => {
                if Utc::now().with_timezone(&ist()).time() < at {
                    continue;
                }
                match square_off(&engine).await {
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
        let id = closing_id("20261125", "acct", &position, 1);
        assert_eq!(
            id,
            closing_id("20261125", "acct", &position, 1),
            "every engine agrees"
        );
        assert_ne!(
            id,
            closing_id("20261126", "acct", &position, 1),
            "a new day"
        );
        assert_ne!(id, closing_id("20261125", "acct", &position, 2), "a retry");
        let reopened = Position {
            buy_quantity: 10,
            sell_quantity: 5,
            ..position
        };
        assert_ne!(
            id,
            closing_id("20261125", "acct", &reopened, 1),
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

    #[test]
    fn closing_prices_are_marketable_inside_the_band_on_the_tick() {
        // 1% band around ₹820.00.
        assert_eq!(protected_price(Side::Sell, 82_000, 100), 81_180);
        assert_eq!(protected_price(Side::Buy, 82_000, 100), 82_820);
        // Off-tick results round toward the last price, staying inside the band.
        assert_eq!(protected_price(Side::Sell, 82_003, 100), 81_185);
        assert_eq!(protected_price(Side::Buy, 82_003, 100), 82_820);
        for ltp in [5, 995, 82_003, 123_457] {
            let sell = protected_price(Side::Sell, ltp, 100);
            let buy = protected_price(Side::Buy, ltp, 100);
            assert_eq!(sell % 5, 0);
            assert_eq!(buy % 5, 0);
            assert!(sell <= ltp && buy >= ltp - 4, "{ltp}: {sell} {buy}");
        }
    }
}
