//! Pre-trade risk checks: kill switches, quantity, order value, exchanges, symbols and the
//! per-user order rate.
//!
//! Limits come from `risk_limits`: the `global` row applies to everyone, a user's row
//! tightens it (the stricter of the two wins), and either kill switch stops new orders.
//! The engine reads the rows through its cache ([`super::cache`]): a change announced on
//! `pinnacle.cache.invalidate` applies to the next order, any other within one second.
//!
//! # The rate counter
//! The rate limit is a per-user, per-second counter bumped atomically in the database, so
//! it holds across every worker in the queue group and under concurrent requests. It is
//! one statement per order ([`count_rate`]): an upsert that counts the request only if this
//! second's count and the previous second's, weighted by how much of it is still inside
//! the last 1,000 ms, leave room (the window slides); a refused request is not counted.
//! It stays in the database because no cheaper design is correct across workers: a
//! per-worker counter would let N workers admit N times the limit, and a quota handed out
//! to workers needs a shared write per hand-out anyway. On PostgreSQL `order_rate` is an
//! `UNLOGGED` table, so its autocommit writes no WAL and waits for no disk flush (a crash
//! empties it, letting at most one more second's worth of orders through), and no
//! transaction is needed.

use chrono::Utc;
use pinnacle_common::broker::Broker;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{OrderRequest, OrderType};
use pinnacle_common::writes::Writer;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, DeriveIden, Statement};

pub use pinnacle_common::entities::risk_limits::Limits;

fn refuse(code: ErrorCode, message: String) -> Result<(), ErrorBody> {
    Err(ErrorBody::new(code, message))
}

/// Every pre-trade check for a new or changed order (`Some`), or only the rate for a cancel
/// (`None`), against `limits` (the limits in force for `user_id`): the limits, with the
/// broker's reference price for market orders, then the rate.
pub async fn check(
    db: &Writer,
    user_id: &str,
    limits: &Limits,
    order: Option<(&OrderRequest, &dyn Broker)>,
) -> Result<(), ErrorBody> {
    if let Some((order, broker)) = order {
        check_priced(limits, order, broker).await?;
    }
    count_rate(db, user_id, limits).await
}

/// [`check_order`] with the broker's reference price. When the only refusal is that a
/// market order has no price to be valued by (a worker just started, a symbol not traded
/// here yet), the broker is asked to get ready for the order ([`Broker::ready_for`]) and
/// the order judged again: a paper broker loads the last price, and one that cannot is the
/// retryable `PRICE_UNAVAILABLE` (nothing counted or stored), never a `RISK_MAX_VALUE`
/// verdict it could not judge. A broker that keeps no prices (Angel One) still has none,
/// and the refusal stands.
async fn check_priced(
    limits: &Limits,
    order: &OrderRequest,
    broker: &dyn Broker,
) -> Result<(), ErrorBody> {
    let reference = broker.reference_price(&order.exchange, &order.symbol).await;
    let unpriced = reference.is_none() && price_of(order, None).is_none();
    match check_order(limits, order, reference) {
        Err(refused) if unpriced && refused.code == ErrorCode::RiskMaxValue => {
            broker
                .ready_for(order)
                .await
                .map_err(|e| super::errors::broker_error(&e))?;
            let reference = broker.reference_price(&order.exchange, &order.symbol).await;
            check_order(limits, order, reference)
        }
        judged => judged,
    }
}

/// The price `order` is valued at, given the broker's `reference_price`.
fn price_of(order: &OrderRequest, reference_price: Option<i64>) -> Option<i64> {
    match order.order_type {
        OrderType::Limit | OrderType::StoplossLimit => order.price,
        // A stop-market order fills around its trigger; value it at the higher of the two.
        OrderType::StoplossMarket => order.trigger_price.max(reference_price),
        OrderType::Market => reference_price,
    }
}

/// Checks a new order against `limits`; `reference_price` prices market orders.
pub fn check_order(
    limits: &Limits,
    order: &OrderRequest,
    reference_price: Option<i64>,
) -> Result<(), ErrorBody> {
    if limits.kill_switch {
        return refuse(
            ErrorCode::KillSwitch,
            "the kill switch is on: no new orders".into(),
        );
    }
    if let Some(allowed) = &limits.allowed_exchanges {
        if !allowed.iter().any(|e| e == &order.exchange) {
            return refuse(
                ErrorCode::RiskExchange,
                format!("exchange {} is not allowed", order.exchange),
            );
        }
    }
    if let Some(allowed) = &limits.allowed_symbols {
        let key = format!("{}:{}", order.exchange, order.symbol);
        if !allowed.iter().any(|s| s == &key) {
            return refuse(
                ErrorCode::RiskSymbol,
                format!("symbol {key} is not allowed"),
            );
        }
    }
    if let Some(max) = limits.max_quantity {
        if order.quantity > max {
            return refuse(
                ErrorCode::RiskMaxQuantity,
                format!("quantity {} exceeds the limit of {max}", order.quantity),
            );
        }
    }
    if let Some(max) = limits.max_order_value {
        let Some(price) = price_of(order, reference_price) else {
            return refuse(
                ErrorCode::RiskMaxValue,
                "no price to value the order against its limit".into(),
            );
        };
        let value = price.checked_mul(order.quantity).unwrap_or(i64::MAX);
        if value > max {
            return refuse(
                ErrorCode::RiskMaxValue,
                format!("order value {value} paise exceeds the limit of {max} paise"),
            );
        }
    }
    Ok(())
}

#[derive(DeriveIden)]
enum OrderRate {
    Table,
    Second,
}

fn rate_check_failed(error: DbErr) -> ErrorBody {
    tracing::error!(%error, "rate check failed");
    ErrorBody::new(
        ErrorCode::Internal,
        "internal error while checking the order rate",
    )
}

/// Counts a request against the user's current second **if the window has room**, in one
/// statement: the insert (the second's first request) and the update (any later one) each
/// carry the admission test, this second's count plus the previous second's weighted by
/// the part of it still inside the last 1,000 ms, so a refused request changes nothing and
/// the statement returns no row. The same text on SQLite and PostgreSQL but for the
/// placeholders, which are numbered in the order they appear (SQLite takes them as
/// positional `?`). The `SELECT … WHERE` form of the insert is what SQLite needs to parse
/// an upsert after a `SELECT`.
const COUNT_RATE_SQL: &str = r#"INSERT INTO "order_rate" ("user_id", "second", "count")
SELECT $1, $2, 1 WHERE 1000 + $3 * COALESCE((SELECT "p"."count" FROM "order_rate" AS "p" WHERE "p"."user_id" = $4 AND "p"."second" = $5), 0) <= $6
ON CONFLICT ("user_id", "second") DO UPDATE SET "count" = "order_rate"."count" + 1
WHERE ("order_rate"."count" + 1) * 1000 + $7 * COALESCE((SELECT "p"."count" FROM "order_rate" AS "p" WHERE "p"."user_id" = $8 AND "p"."second" = $9), 0) <= $10
RETURNING "count""#;

/// [`COUNT_RATE_SQL`] for SQLite, built once.
static COUNT_RATE_SQLITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| positional(COUNT_RATE_SQL));

/// `sql` with every numbered placeholder (`$1`, `$12`) made a positional `?`, which binds
/// the same values when, as here, the numbers appear in order.
fn positional(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.next_if(char::is_ascii_digit).is_some() {}
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// Counts this request against the user's current second, or refuses it past the limit
/// without counting it.
///
/// One atomic statement ([`COUNT_RATE_SQL`]), so concurrent requests, on any worker, can
/// never all slip under the cap. The window slides: the previous second's count weighs in
/// by the part of it still inside the last 1,000 ms, so a burst straddling a second
/// boundary is capped too. A refusal is not counted: a client that retries a refused
/// request at once is refused while the window is full and admitted as soon as it has
/// room, instead of keeping it full with its own retries.
pub async fn count_rate(
    db: &impl ConnectionTrait,
    user_id: &str,
    limits: &Limits,
) -> Result<(), ErrorBody> {
    count_rate_at(db, user_id, limits, Utc::now()).await
}

/// [`count_rate`] at `now`.
async fn count_rate_at(
    db: &impl ConnectionTrait,
    user_id: &str,
    limits: &Limits,
    now: chrono::DateTime<Utc>,
) -> Result<(), ErrorBody> {
    let second = now.timestamp();
    let remaining_ms = 1_000 - i64::from(now.timestamp_subsec_millis().min(999));
    let allowed = i64::from(limits.max_orders_per_second.max(0)) * 1_000;
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => COUNT_RATE_SQLITE.clone(),
        _ => COUNT_RATE_SQL.to_string(),
    };
    let statement = Statement::from_sql_and_values(
        backend,
        sql,
        [
            user_id.into(),
            second.into(),
            remaining_ms.into(),
            user_id.into(),
            (second - 1).into(),
            allowed.into(),
            remaining_ms.into(),
            user_id.into(),
            (second - 1).into(),
            allowed.into(),
        ],
    );
    match db.query_one(statement).await.map_err(rate_check_failed)? {
        Some(_) => Ok(()),
        None => refuse(
            ErrorCode::RateLimited,
            format!(
                "more than {} orders in one second; slow down",
                limits.max_orders_per_second
            ),
        ),
    }
}

/// Forgets counters older than a minute.
pub async fn prune_rates(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let delete = Query::delete()
        .from_table(OrderRate::Table)
        .and_where(Expr::col(OrderRate::Second).lt(Utc::now().timestamp() - 60))
        .to_owned();
    db.execute(db.get_database_backend().build(&delete))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_common::model::Side;

    #[test]
    fn numbered_placeholders_become_positional_whatever_their_width() {
        assert_eq!(
            positional("VALUES ($1, $2) WHERE a = $10 AND b = '$' AND c = $"),
            "VALUES (?, ?) WHERE a = ? AND b = '$' AND c = $"
        );
        assert!(!COUNT_RATE_SQLITE.contains('$'));
        assert_eq!(COUNT_RATE_SQLITE.matches('?').count(), 10);
    }

    /// Whether the rate check admits a request of `u1` at `at` (seconds since the epoch,
    /// with milliseconds).
    async fn admitted(db: &sea_orm::DatabaseConnection, limits: &Limits, at: f64) -> bool {
        let now =
            chrono::DateTime::from_timestamp_millis((at * 1_000.0).round() as i64).expect("a time");
        match count_rate_at(db, "u1", limits, now).await {
            Ok(()) => true,
            Err(e) if e.code == ErrorCode::RateLimited => false,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[tokio::test]
    async fn a_refused_request_is_not_counted_and_the_window_slides() {
        let db = crate::engine::fixtures::database().await;
        let limits = Limits {
            max_orders_per_second: 3,
            ..Limits::default()
        };
        let count = |second: i64| {
            let db = db.clone();
            async move {
                let row = db
                    .query_one(Statement::from_sql_and_values(
                        DbBackend::Sqlite,
                        r#"SELECT "count" FROM "order_rate" WHERE "user_id" = ? AND "second" = ?"#,
                        ["u1".into(), second.into()],
                    ))
                    .await
                    .expect("reads");
                row.map(|r| r.try_get_by_index::<i32>(0).expect("a count"))
            }
        };
        for _ in 0..3 {
            assert!(admitted(&db, &limits, 1_000.100).await);
        }
        // Retried at once, again and again: refused, and never counted.
        for _ in 0..6 {
            assert!(!admitted(&db, &limits, 1_000.200).await);
        }
        assert_eq!(count(1_000).await, Some(3));
        // 600 ms into the next second, 400 ms of the last one are still in the window:
        // 3 × 0.4 = 1.2 of it weighs in, so one more fits (2.2 ≤ 3) and a second does not
        // (3.2). Had the refusals counted, 9 × 0.4 = 3.6 would leave no room at all.
        assert!(admitted(&db, &limits, 1_001.600).await);
        assert!(!admitted(&db, &limits, 1_001.600).await);
        assert_eq!(count(1_001).await, Some(1));
        // Late in that second only 10 ms of the last one weigh in (0.03): a second request
        // fits (2.03), a third does not (5 ms later: 3.015).
        assert!(admitted(&db, &limits, 1_001.990).await);
        assert!(!admitted(&db, &limits, 1_001.995).await);
        assert_eq!(count(1_001).await, Some(2));
        // As the next second starts, that whole second weighs in: one more fits exactly.
        assert!(admitted(&db, &limits, 1_002.000).await);
        assert!(!admitted(&db, &limits, 1_002.000).await);
        assert_eq!(count(1_002).await, Some(1));
        // A second's first request is refused, and leaves no row, while the last second
        // still fills the window (1 + 3 × 0.9 = 3.7), and admitted once it has room
        // (1 + 3 × 0.6 = 2.8).
        for _ in 0..3 {
            assert!(admitted(&db, &limits, 1_010.000).await);
        }
        assert!(!admitted(&db, &limits, 1_011.100).await);
        assert_eq!(count(1_011).await, None);
        assert!(admitted(&db, &limits, 1_011.400).await);
        assert_eq!(count(1_011).await, Some(1));
        // A limit of zero admits nothing, and counts nothing.
        let closed = Limits {
            max_orders_per_second: 0,
            ..Limits::default()
        };
        assert!(!admitted(&db, &closed, 1_005.000).await);
        assert_eq!(count(1_005).await, None);
    }

    fn order(quantity: i64, price: Option<i64>) -> OrderRequest {
        OrderRequest {
            client_order_id: "c".into(),
            exchange: "NSE".into(),
            symbol: "SBIN-EQ".into(),
            side: Side::Buy,
            order_type: if price.is_some() {
                OrderType::Limit
            } else {
                OrderType::Market
            },
            quantity,
            price,
            trigger_price: None,
            product: Default::default(),
            account: None,
        }
    }

    #[test]
    fn each_limit_has_its_own_code() {
        let code =
            |limits: &Limits, o: &OrderRequest, p| check_order(limits, o, p).err().map(|e| e.code);
        let none = Limits::default();
        assert_eq!(code(&none, &order(10, None), None), None);
        let kill = Limits {
            kill_switch: true,
            ..Limits::default()
        };
        assert_eq!(
            code(&kill, &order(1, None), None),
            Some(ErrorCode::KillSwitch)
        );
        let qty = Limits {
            max_quantity: Some(5),
            ..Limits::default()
        };
        assert_eq!(
            code(&qty, &order(6, None), None),
            Some(ErrorCode::RiskMaxQuantity)
        );
        let value = Limits {
            max_order_value: Some(100_000),
            ..Limits::default()
        };
        assert_eq!(
            code(&value, &order(10, Some(10_001)), None),
            Some(ErrorCode::RiskMaxValue)
        );
        assert_eq!(
            code(&value, &order(10, None), Some(10_001)),
            Some(ErrorCode::RiskMaxValue)
        );
        assert_eq!(code(&value, &order(10, None), Some(9_999)), None);
        assert_eq!(
            code(&value, &order(10, None), None),
            Some(ErrorCode::RiskMaxValue)
        );
        let exch = Limits {
            allowed_exchanges: Some(vec!["BSE".into()]),
            ..Limits::default()
        };
        assert_eq!(
            code(&exch, &order(1, None), None),
            Some(ErrorCode::RiskExchange)
        );
        let sym = Limits {
            allowed_symbols: Some(vec!["NSE:TCS-EQ".into()]),
            ..Limits::default()
        };
        assert_eq!(
            code(&sym, &order(1, None), None),
            Some(ErrorCode::RiskSymbol)
        );
    }
}
