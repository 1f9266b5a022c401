//! Intraday square-off: after `PINNACLE_WORKER_SQUARE_OFF_AT` (IST) each day, working
//! `INTRADAY` orders are cancelled and open `INTRADAY` positions are closed with marketable
//! LIMIT orders priced from the broker's last price
//! ([`pinnacle_common::broker::Broker::last_price`]: the paper broker's last tick, Angel
//! One's LTP) within `PINNACLE_WORKER_SQUARE_OFF_BAND_BPS`
//! (Angel One refuses MARKET orders from the API), through the same pipeline as every
//! order ([`super::place::submit`], [`super::manage::cancel_as`]). A trader can square an
//! account off at any time with the `squareoff` verb ([`square_off_on_demand`]), which
//! places the same closing orders.
//!
//! Every engine runs the sweep; it is idempotent across them. A closing order's client order id
//! is derived from the day, the account and the instrument, so the database's unique key
//! lets exactly one engine place it; a refused one is retried on the next sweep under the
//! next attempt's id. Cancels are compare-and-set transitions under a lease. Each
//! credential use is audited first, as `order.squareoff`: by `pinnacle-squareoff` for the
//! sweep, by the trader (and their token) for the verb.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use pinnacle_common::auth::Principal;
use pinnacle_common::clock::ist;
use pinnacle_common::entities::{broker_accounts, orders};
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{
    OrderRequest, OrderStatus, OrderType, Position, Product, Side, SquareOffFailure,
    SquareOffReply, SquareOffRequest,
};
use pinnacle_common::shutdown::Shutdown;
use sea_orm::EntityTrait;
use sha2::{Digest, Sha256};

use super::core::Engine;
use super::credentials::{self, Actor};
use super::errors::broker_error;
use super::errors::internal;
use super::manage;
use super::place::{self, Caller, RiskChecks};
use super::risk;
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

/// What squaring off one account did ([`SquareOffReply`] before it is put on the wire).
#[derive(Debug, Default)]
pub struct Report {
    /// The working orders it cancelled, as they now stand.
    pub cancelled: Vec<orders::Model>,
    /// One closing order per open position, as it now stands.
    pub closing: Vec<orders::Model>,
    /// How many of `closing` this square-off placed (the others were placed before).
    pub placed: usize,
    /// What it could not do.
    pub failed: Vec<SquareOffFailure>,
}

impl Report {
    /// The reply to the `squareoff` verb.
    pub fn reply(&self) -> Result<SquareOffReply, ErrorBody> {
        let views = |orders: &[orders::Model]| {
            orders
                .iter()
                .map(store::view)
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(SquareOffReply {
            cancelled: views(&self.cancelled)?,
            closing: views(&self.closing)?,
            failed: self.failed.clone(),
        })
    }

    fn fail(&mut self, exchange: &str, symbol: &str, order_id: Option<&str>, error: ErrorBody) {
        self.failed.push(SquareOffFailure {
            exchange: exchange.to_string(),
            symbol: symbol.to_string(),
            order_id: order_id.map(str::to_string),
            error,
        });
    }
}

/// Who squares off, for the audit trail: the daily sweep ([`ACTOR`]) or a trader.
#[derive(Debug, Clone, Copy)]
pub struct Squarer<'a> {
    /// The audit actor.
    pub actor: Actor<'a>,
    /// The request id its audit events carry.
    pub request_id: &'a str,
}

/// What the sweep found settled today: accounts it left with nothing to do, each with the
/// state of its intraday orders then ([`Mark`]). The sweep runs every few seconds until
/// midnight; an account is looked at again (its credentials opened, its positions read:
/// Angel One allows one positions read a second per client code) only once one of its
/// intraday orders has changed.
#[derive(Debug, Default)]
pub struct Settled {
    day: String,
    accounts: HashMap<String, Mark>,
}

/// How many intraday orders an account has today, and when the latest changed.
type Mark = (usize, i64);

fn mark(orders: &[orders::Model]) -> Mark {
    let latest = orders
        .iter()
        .map(|o| o.updated_at.timestamp_millis())
        .max()
        .unwrap_or(0);
    (orders.len(), latest)
}

/// The daily sweep: squares off every account with intraday activity today, except those
/// `settled` says are done; returns how many orders it cancelled or placed.
pub(super) async fn square_off(engine: &Engine, settled: &mut Settled) -> Result<usize, ErrorBody> {
    let now = Utc::now().with_timezone(&ist());
    let day = day_of(now);
    if settled.day != day {
        *settled = Settled {
            day: day.clone(),
            accounts: HashMap::new(),
        };
    }
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
    let mut accounts: Vec<&str> = intraday
        .iter()
        .map(|o| o.broker_account_id.as_str())
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mut done = 0;
    for account_id in accounts {
        let account = broker_accounts::Entity::find_by_id(account_id.to_string())
            .one(&engine.db)
            .await
            .map_err(|e| internal("loading the account", e))?;
        let Some(account) = account else { continue };
        let working: Vec<orders::Model> = intraday
            .iter()
            .filter(|o| o.broker_account_id == account.id)
            .cloned()
            .collect();
        let now = mark(&working);
        if settled.accounts.get(&account.id) == Some(&now) {
            continue;
        }
        let request_id = uuid::Uuid::now_v7().to_string();
        let squarer = Squarer {
            actor: sweeper(),
            request_id: &request_id,
        };
        // One account's failure (its broker unreachable, its credentials unreadable) does
        // not keep the others open.
        let report = match square_off_account(engine, &account, &working, squarer, &day).await {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!(account_id = %account.id, code = %error.code, message = %error.message, "square-off of an account failed; retrying next sweep");
                continue;
            }
        };
        for failure in &report.failed {
            tracing::warn!(
                symbol = %failure.symbol,
                code = %failure.error.code,
                message = %failure.error.message,
                "square-off left this open; retrying next sweep"
            );
        }
        let changed = report.cancelled.len() + report.placed;
        if changed == 0 && report.failed.is_empty() {
            settled.accounts.insert(account.id.clone(), now);
        }
        done += changed;
    }
    Ok(done)
}

/// The `squareoff` verb: squares off `principal`'s account named in `request` (or their
/// only or default one) now, whatever the time; the same closing orders as the daily
/// sweep's, so the two never close a position twice.
pub(super) async fn square_off_on_demand(
    engine: &Engine,
    principal: &Principal,
    request_id: &str,
    request: &SquareOffRequest,
) -> Result<SquareOffReply, ErrorBody> {
    let user_id = principal.user_id.as_str();
    let account = engine
        .account_for(user_id, request.account.as_deref())
        .await?;
    // Like a cancel: never blocked by a kill switch, but counted towards the rate.
    let limits = engine.limits(user_id).await?;
    risk::check(&engine.writer, user_id, &limits, None).await?;
    let query = OrderQuery::InStates {
        statuses: &UNFINISHED,
        account_id: Some(&account.id),
    };
    let orders = engine
        .orders
        .list(query)
        .await
        .map_err(|e| internal("listing the account's orders", e))?;
    let intraday: Vec<orders::Model> = orders
        .into_iter()
        .filter(|o| o.product.parse() == Ok(Product::Intraday))
        .collect();
    let squarer = Squarer {
        actor: Actor {
            name: user_id,
            token_id: Some(&principal.token_id),
        },
        request_id,
    };
    let day = day_of(Utc::now().with_timezone(&ist()));
    square_off_account(engine, &account, &intraday, squarer, &day)
        .await?
        .reply()
}

/// Every state but the final ones: what a square-off may still have to cancel.
const UNFINISHED: [OrderStatus; 7] = [
    OrderStatus::New,
    OrderStatus::Submitted,
    OrderStatus::Open,
    OrderStatus::PartiallyFilled,
    OrderStatus::PendingModify,
    OrderStatus::PendingCancel,
    OrderStatus::Unknown,
];

/// The IST day of `now`, as closing orders' client order ids spell it.
fn day_of(now: chrono::DateTime<chrono::FixedOffset>) -> String {
    now.format("%Y%m%d").to_string()
}

/// Squares off `account`: cancels the working orders among `intraday` (its `INTRADAY`
/// orders, except square-off's own closing orders, which a broker that reports fills on
/// its order-update stream leaves `OPEN` for a while), then closes each open `INTRADAY`
/// position its broker reports. An order still in flight (being placed, modified or
/// cancelled by a worker) is reported, not touched.
///
/// A position is closed only once no order of it can still move it: while an intraday
/// order of the same instrument is not final (its cancel was refused, its outcome was
/// lost, a worker still holds it), a closing order could close the position a second time
/// when that order fills. That position is left open and reported; the next square-off
/// closes it once the order has settled.
async fn square_off_account(
    engine: &Engine,
    account: &broker_accounts::Model,
    intraday: &[orders::Model],
    squarer: Squarer<'_>,
    day: &str,
) -> Result<Report, ErrorBody> {
    let mut report = Report::default();
    // The instruments with an intraday order that is not final after the cancels.
    let mut unsettled = HashSet::new();
    for order in intraday
        .iter()
        .filter(|o| !o.client_order_id.starts_with(PREFIX))
    {
        let status = match store::status_of(order) {
            Ok(status) => status,
            Err(error) => {
                tracing::error!(%error, "square-off skips a corrupt order");
                continue;
            }
        };
        let refused = if status.is_working() {
            match manage::cancel_as(engine, order, squarer.actor, PURPOSE, squarer.request_id).await
            {
                Ok(cancelled) if store::status_of(&cancelled).is_ok_and(|s| s.is_terminal()) => {
                    report.cancelled.push(cancelled);
                    continue;
                }
                Ok(left) => ErrorBody::new(
                    ErrorCode::InvalidState,
                    format!(
                        "its cancel left it {}: the broker may still fill it; square off \
                         again once it settles",
                        left.status
                    ),
                ),
                Err(error) => error,
            }
        } else if !status.is_terminal() {
            ErrorBody::new(
                ErrorCode::InvalidState,
                format!(
                    "the order is {status}: a worker is still talking to the broker about it; \
                     square off again once it settles"
                ),
            )
        } else {
            continue;
        };
        unsettled.insert((order.exchange.as_str(), order.symbol.as_str()));
        report.fail(&order.exchange, &order.symbol, Some(&order.id), refused);
    }
    close_positions(engine, account, squarer, day, &unsettled, &mut report).await?;
    Ok(report)
}

fn sweeper() -> Actor<'static> {
    Actor {
        name: ACTOR,
        token_id: None,
    }
}

/// The most closing orders tried for one position in a day (each refusal is retried on
/// the next sweep under the next attempt's client order id).
pub const MAX_ATTEMPTS: u32 = 5;

/// Closes each open `INTRADAY` position of `account` into `report`, but those of the
/// `unsettled` instruments (exchange, symbol): an order of theirs may still fill.
async fn close_positions(
    engine: &Engine,
    account: &broker_accounts::Model,
    squarer: Squarer<'_>,
    day: &str,
    unsettled: &HashSet<(&str, &str)>,
    report: &mut Report,
) -> Result<(), ErrorBody> {
    let broker = engine.broker_for(account)?;
    let creds =
        credentials::open_as(engine, squarer.actor, account, PURPOSE, squarer.request_id).await?;
    let positions = broker
        .positions(&creds)
        .await
        .map_err(|e| broker_error(&e))?;
    for position in positions
        .iter()
        .filter(|p| p.product == Product::Intraday && p.net_quantity != 0)
    {
        let (exchange, symbol) = (&position.exchange, &position.symbol);
        let client_order_id = match next_attempt(engine, day, account, position).await? {
            Attempt::Next(_) if unsettled.contains(&(exchange.as_str(), symbol.as_str())) => {
                let error = ErrorBody::new(
                    ErrorCode::InvalidState,
                    format!(
                        "an intraday order of {exchange}:{symbol} is not final (see its own \
                         entry), and closing the position now would close it twice if that \
                         order fills; square off again once it settles"
                    ),
                );
                report.fail(exchange, symbol, None, error);
                continue;
            }
            Attempt::Next(id) => id,
            Attempt::Placed(order) => {
                report.closing.push(order);
                continue;
            }
            Attempt::UsedUp(last) => {
                let error = ErrorBody::new(
                    ErrorCode::BrokerRejected,
                    format!(
                        "the broker refused {MAX_ATTEMPTS} closing orders today; close the \
                         position by hand"
                    ),
                );
                report.fail(exchange, symbol, Some(&last.id), error);
                report.closing.push(last);
                continue;
            }
        };
        // The broker's last price (Angel One keeps none in the engine: it is asked).
        let ltp = broker
            .last_price(&creds, exchange, symbol)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, %symbol, "no last price from the broker");
                None
            });
        let Some(ltp) = ltp else {
            let error = ErrorBody::new(
                ErrorCode::PriceUnavailable,
                format!("no last price for {exchange}:{symbol} to close the position at"),
            );
            report.fail(exchange, symbol, None, error);
            continue;
        };
        let band_bps = engine.settings.square_off_band_bps;
        let order = closing_order(position, client_order_id, ltp, band_bps);
        let caller = Caller {
            user_id: &account.user_id,
            actor: squarer.actor,
            purpose: PURPOSE,
            request_id: squarer.request_id,
            risk: RiskChecks::Closing,
            account: Some(account),
        };
        match place::submit(engine, &caller, &order).await {
            Ok(stored) => {
                tracing::info!(order_id = %stored.id, status = %stored.status, "intraday position squared off");
                if let Err(refused) = store::reply_for(&stored) {
                    report.fail(exchange, symbol, Some(&stored.id), refused);
                }
                report.placed += 1;
                report.closing.push(stored);
            }
            Err(refused) => report.fail(exchange, symbol, None, refused),
        }
    }
    drop(creds);
    Ok(())
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

/// Where a position's closing orders stand today.
enum Attempt {
    /// None is working or filled: place one under this client order id.
    Next(String),
    /// One is working or filled (or still being placed).
    Placed(orders::Model),
    /// [`MAX_ATTEMPTS`] were refused or cancelled; this is the last.
    UsedUp(orders::Model),
}

/// The next closing order for `position`, or the one already working or filled. A refused
/// or cancelled attempt is retried under the next id, so a passing refusal does not leave
/// the position open.
async fn next_attempt(
    engine: &Engine,
    day: &str,
    account: &broker_accounts::Model,
    position: &Position,
) -> Result<Attempt, ErrorBody> {
    let mut last = None;
    for attempt in 1..=MAX_ATTEMPTS {
        let id = closing_id(day, &account.id, position, attempt);
        let existing = engine
            .orders
            .find(&account.user_id, &id)
            .await
            .map_err(|e| internal("looking up the square-off order", e))?;
        match existing {
            None => return Ok(Attempt::Next(id)),
            Some(order)
                if matches!(
                    store::status_of(&order)?,
                    OrderStatus::Rejected | OrderStatus::Cancelled
                ) =>
            {
                last = Some(order);
            }
            Some(order) => return Ok(Attempt::Placed(order)),
        }
    }
    tracing::error!(symbol = %position.symbol, "square-off attempts used up; close the position by hand");
    last.map(Attempt::UsedUp)
        .ok_or_else(|| internal("square-off attempts", "none was found"))
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
    let mut settled = Settled::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = timer.tick() => {
                if Utc::now().with_timezone(&ist()).time() < at {
                    continue;
                }
                match square_off(&engine, &mut settled).await {
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
