//! The transactional outbox's write side: every state change of an order writes its
//! lifecycle event into `order_outbox` in the same transaction as the order row
//! ([`record`], called by [`super::store`]), so a committed change always has its event,
//! whatever fails afterwards. Publishing those rows (the relay, [`crate::events`]) is the
//! transport's business; the engine only rings the [`Nudge`] after a commit. The table's
//! side of the relay's protocol is here too, since it is only SQL: [`claim`] (one order's
//! rows to one relay at a time, oldest first), [`remove`] and [`release`].
//!
//! # No deadlock between relays (PostgreSQL)
//! Several workers' relays change the same table at once, and a multi-row `UPDATE` or
//! `DELETE` locks its rows in whatever order its plan visits them: two of them could each
//! hold a row the other waits for, and PostgreSQL would abort one ("deadlock detected"),
//! leaving events unpublished until the claim expired. So every multi-row write takes its
//! row locks first, in a sub-select: claiming heads skips rows another relay has locked
//! (`FOR UPDATE SKIP LOCKED`: a head someone else is taking is theirs), and every other
//! write locks its rows in id order (`ORDER BY id FOR UPDATE`), so waits never form a
//! cycle. SQLite has one writer at a time and no row locks; the clauses are left out there.
//! On PostgreSQL the relay's statements are functions (`pinnacle_outbox_claim`, `…_remove`,
//! `…_release`, migration `m20261215_000001_outbox_functions`) that take the locks the same
//! way with plans that stay linear in the backlog whatever the table's statistics say.

use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::codec::Encoding;
use pinnacle_common::entities::{order_outbox, orders};
use pinnacle_common::model::{OrderEvent, OrderStatus};
use pinnacle_common::subjects;
use pinnacle_common::telemetry;
use pinnacle_common::writes::{defer, Deferred, WriteTxn, Writer};
use sea_orm::sea_query::{Expr, LockBehavior, LockType, Query, SelectStatement, UpdateStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, Set,
    Statement,
};
use tokio::sync::Notify;

use super::row;

/// Tells whoever publishes the outbox (the relay) that this process committed events, so
/// it need not wait for its next poll. Cheap to clone; every clone rings the same bell.
#[derive(Debug, Clone, Default)]
pub struct Nudge(Arc<Notify>);

impl Nudge {
    /// Events were committed.
    pub fn ring(&self) {
        self.0.notify_one();
    }

    /// Waits for the next [`Nudge::ring`] (or one that came while nobody waited).
    pub async fn rung(&self) {
        self.0.notified().await;
    }
}

/// Writes the event for `order`'s current state (`previous` is the state it left) into the
/// outbox, inside the caller's transaction.
pub async fn record(
    txn: &impl Deferred,
    previous: Option<OrderStatus>,
    order: &orders::Model,
) -> Result<(), DbErr> {
    record_all(txn, &[(previous, order)]).await
}

/// [`record`] for several states of one or more orders, oldest first, in one statement.
pub async fn record_all(
    txn: &impl Deferred,
    states: &[(Option<OrderStatus>, &orders::Model)],
) -> Result<(), DbErr> {
    defer(txn, &events(states)?).await
}

/// The `INSERT` of the outbox rows [`record_all`] writes, for a caller that sends it in a
/// statement of its own making (a composed one on PostgreSQL: `crate::engine::store`).
pub(crate) fn events(
    states: &[(Option<OrderStatus>, &orders::Model)],
) -> Result<sea_orm::Insert<order_outbox::ActiveModel>, DbErr> {
    let traceparent = telemetry::current_traceparent();
    let now_ms = row::now_ms();
    let mut rows = Vec::with_capacity(states.len());
    for &(previous, order) in states {
        let event = OrderEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            ts_ms: order.updated_at.timestamp_millis(),
            previous_status: previous,
            order: row::view(order)?,
        };
        let payload = Encoding::MsgPack
            .encode(&event)
            .map_err(|e| DbErr::Custom(format!("encoding an order event: {e}")))?;
        rows.push(order_outbox::ActiveModel {
            event_id: Set(event.event_id),
            order_id: Set(order.id.clone()),
            subject: Set(subjects::order_events(&order.user_id)),
            payload: Set(payload.to_vec()),
            claimed_by: Set(None),
            claimed_until_ms: Set(None),
            created_at_ms: Set(now_ms),
            traceparent: Set(traceparent.clone()),
            ..Default::default()
        });
    }
    Ok(order_outbox::Entity::insert_many(rows))
}

/// Outbox rows one relay claims and publishes at a time.
pub const BATCH: u64 = 512;

/// How long a relay's claim on outbox rows holds; another relay may publish them after it.
pub const CLAIM: Duration = Duration::from_secs(15);

/// Claims up to [`BATCH`] orders' events for this relay: first each order's head (its
/// oldest row) that nobody else holds ([`heads_claim`]), then every other free row of the
/// orders whose head it now holds. No other relay can take those: they are not heads, and
/// their head is held. Returns the claimed rows, oldest first, and how many orders they
/// belong to; fewer than [`BATCH`] orders means no free head was left behind, except
/// those another relay was locking at that moment (skipped, and theirs or the next poll's).
///
/// One transaction either way: on SQLite the two statements sent as one command with its
/// commit ([`claim_at_once`]); on PostgreSQL one call of `pinnacle_outbox_claim`, which
/// does the same with plans that stay linear in the backlog whatever the table's
/// statistics say (see the migration `m20261215_000001_outbox_functions`).
pub(crate) async fn claim(db: &Writer, instance: &str) -> Result<Claimed, DbErr> {
    let token = format!("{instance}/{}", uuid::Uuid::now_v7().simple());
    let rows = if !on_postgres(db) {
        claim_at_once(db, &token).await?
    } else {
        let now = row::now_ms();
        let call = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT * FROM pinnacle_outbox_claim($1, $2, $3, $4)",
            [
                token.into(),
                now.into(),
                (now + CLAIM.as_millis() as i64).into(),
                (BATCH as i32).into(),
            ],
        );
        order_outbox::Model::find_by_statement(call).all(db).await?
    };
    Ok(Claimed::of(rows))
}

/// [`claim`] in one transaction, sent as one command with its commit (SQLite, which has
/// one writer at a time, so nothing changes between the two statements either way).
async fn claim_at_once(db: &Writer, token: &str) -> Result<Vec<order_outbox::Model>, DbErr> {
    let backend = db.get_database_backend();
    let now = row::now_ms();
    let txn = WriteTxn::begin(db).await?;
    txn.defer(backend.build(&heads_claim(token, now))).await?;
    let rows = txn
        .commit_with(backend.build(&followers_claim(token, now)))
        .await?;
    rows.iter()
        .map(|row| order_outbox::Model::from_query_result(row, ""))
        .collect()
}

/// Claims, under `token`, every free row of the orders whose head `token` holds, and
/// returns every row under the claim (the heads too).
fn followers_claim(token: &str, now: i64) -> UpdateStatement {
    use order_outbox::Column as C;
    let ours = || Expr::col(C::ClaimedBy).eq(token);
    let held = Query::select()
        .column(C::OrderId)
        .from(order_outbox::Entity)
        .and_where(ours())
        .to_owned();
    let rows = in_id_order(
        Query::select()
            .column(C::Id)
            .from(order_outbox::Entity)
            .and_where(Expr::col(C::OrderId).in_subquery(held))
            .and_where(ours().or(unclaimed(now)))
            .to_owned(),
    );
    Query::update()
        .table(order_outbox::Entity)
        .value(C::ClaimedBy, token)
        .value(C::ClaimedUntilMs, now + CLAIM.as_millis() as i64)
        .and_where(Expr::col(C::Id).in_subquery(rows))
        .and_where(ours().or(unclaimed(now)))
        .returning_all()
        .to_owned()
}

/// `select` (of outbox ids) ordered by id and locking its rows as it goes: the sub-select
/// of a multi-row write, so that its locks are taken in one order (see the module docs).
fn in_id_order(mut select: SelectStatement) -> SelectStatement {
    select
        .order_by(order_outbox::Column::Id, sea_orm::Order::Asc)
        .lock(LockType::Update);
    select
}

/// The rows of `ids`, locked in id order.
fn locked(ids: impl IntoIterator<Item = i64>) -> SelectStatement {
    use order_outbox::Column as C;
    in_id_order(
        Query::select()
            .column(C::Id)
            .from(order_outbox::Entity)
            .and_where(Expr::col(C::Id).is_in(ids))
            .to_owned(),
    )
}

/// What [`claim`] took.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    /// The claimed rows, oldest first.
    pub rows: Vec<order_outbox::Model>,
    /// How many orders' heads were claimed (at most [`BATCH`]).
    pub heads: u64,
}

impl Claimed {
    /// The claimed `rows`, put oldest first; the heads are counted from them, one per order.
    fn of(mut rows: Vec<order_outbox::Model>) -> Self {
        rows.sort_unstable_by_key(|row| row.id);
        let orders: std::collections::HashSet<&str> =
            rows.iter().map(|row| row.order_id.as_str()).collect();
        let heads = orders.len() as u64;
        Self { rows, heads }
    }
}

/// Claims, under `token`, up to [`BATCH`] heads (the oldest row of each order) that nobody
/// else holds.
fn heads_claim(token: &str, now: i64) -> UpdateStatement {
    use order_outbox::Column as C;
    let free = || unclaimed(now);
    let older = Query::select()
        .expr(Expr::val(1))
        .from_as(
            order_outbox::Entity,
            sea_orm::sea_query::Alias::new("older"),
        )
        .and_where(
            Expr::col((sea_orm::sea_query::Alias::new("older"), C::OrderId))
                .equals((order_outbox::Entity, C::OrderId)),
        )
        .and_where(
            Expr::col((sea_orm::sea_query::Alias::new("older"), C::Id))
                .lt(Expr::col((order_outbox::Entity, C::Id))),
        )
        .to_owned();
    let heads = Query::select()
        .column((order_outbox::Entity, C::Id))
        .from(order_outbox::Entity)
        .and_where(free())
        .and_where(Expr::exists(older).not())
        .order_by((order_outbox::Entity, C::Id), sea_orm::Order::Asc)
        .limit(BATCH)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    // The claim condition is repeated on the outer UPDATE so that PostgreSQL re-checks it
    // on a row another relay claimed concurrently.
    Query::update()
        .table(order_outbox::Entity)
        .value(C::ClaimedBy, token)
        .value(C::ClaimedUntilMs, now + CLAIM.as_millis() as i64)
        .and_where(Expr::col(C::Id).in_subquery(heads))
        .and_where(free())
        .to_owned()
}

/// Rows nobody holds at `now_ms`: never claimed, released, or their claim has expired.
fn unclaimed(now_ms: i64) -> sea_orm::sea_query::SimpleExpr {
    use order_outbox::Column as C;
    Expr::col(C::ClaimedUntilMs)
        .is_null()
        .or(Expr::col(C::ClaimedUntilMs).lt(now_ms))
}

/// Deletes published rows (JetStream acknowledged them).
pub(crate) async fn remove(db: &Writer, ids: impl IntoIterator<Item = i64>) -> Result<(), DbErr> {
    if !on_postgres(db) {
        order_outbox::Entity::delete_many()
            .filter(order_outbox::Column::Id.in_subquery(locked(ids)))
            .exec(db)
            .await?;
    } else {
        db.execute(by_ids("SELECT pinnacle_outbox_remove($1)", ids))
            .await?;
    }
    Ok(())
}

/// Gives claimed rows back after a failed publish, so the next attempt (by any relay) may
/// take them at once; a failure leaves them to expire.
pub(crate) async fn release(db: &Writer, ids: &[i64]) {
    let released = if !on_postgres(db) {
        order_outbox::Entity::update_many()
            .col_expr(
                order_outbox::Column::ClaimedBy,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                order_outbox::Column::ClaimedUntilMs,
                Expr::value(Option::<i64>::None),
            )
            .filter(order_outbox::Column::Id.in_subquery(locked(ids.iter().copied())))
            .exec(db)
            .await
            .map(drop)
    } else {
        let call = by_ids("SELECT pinnacle_outbox_release($1)", ids.iter().copied());
        db.execute(call).await.map(drop)
    };
    if let Err(error) = released {
        tracing::debug!(%error, "could not release outbox claims; they expire");
    }
}

/// Whether the relay's statements are the PostgreSQL functions (elsewhere, SQLite, they
/// are the statements built here).
fn on_postgres(db: &Writer) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// A call of one of the PostgreSQL functions that take the outbox ids `ids` as an array.
fn by_ids(sql: &str, ids: impl IntoIterator<Item = i64>) -> Statement {
    let ids: Vec<i64> = ids.into_iter().collect();
    Statement::from_sql_and_values(DbBackend::Postgres, sql, [ids.into()])
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use sea_orm::{ActiveModelTrait as _, DatabaseConnection};

    use super::*;
    use crate::engine::fixtures::{self, databases};

    async fn event(db: &impl ConnectionTrait, order_id: &str, n: u32) {
        order_outbox::ActiveModel {
            event_id: Set(format!("{order_id}-{n}")),
            order_id: Set(order_id.into()),
            subject: Set(format!("events.orders.u1.{order_id}")),
            payload: Set(vec![1, 2, 3]),
            claimed_by: Set(None),
            claimed_until_ms: Set(None),
            created_at_ms: Set(row::now_ms()),
            traceparent: Set(None),
            ..Default::default()
        }
        .insert(db)
        .await
        .expect("event");
    }

    fn events(claimed: &Claimed) -> Vec<&str> {
        claimed.rows.iter().map(|r| r.event_id.as_str()).collect()
    }

    #[tokio::test]
    async fn a_relay_claims_whole_orders_once_and_released_rows_go_to_the_next() {
        for (db, _pg) in databases().await {
            claims_whole_orders(&db).await;
        }
    }

    async fn claims_whole_orders(db: &DatabaseConnection) {
        let writer = Writer::new(db);
        for (order, n) in [("a", 1), ("b", 1), ("a", 2)] {
            event(db, order, n).await;
        }
        let first = claim(&writer, "w1").await.expect("claim");
        assert_eq!(events(&first), ["a-1", "b-1", "a-2"], "oldest first");
        assert_eq!(first.heads, 2, "one head per order");
        assert!(first.rows.iter().all(|r| r
            .claimed_by
            .as_deref()
            .is_some_and(|by| by.starts_with("w1/"))));
        // Held rows are nobody else's, and an event committed behind a held head waits for
        // that head's relay.
        event(db, "a", 3).await;
        let second = claim(&writer, "w2").await.expect("claim");
        assert_eq!((events(&second), second.heads), (vec![], 0));
        // Published and deleted, or given back: the next relay takes what is left.
        remove(&writer, [first.rows[1].id]).await.expect("remove");
        release(&writer, &[first.rows[0].id, first.rows[2].id]).await;
        let third = claim(&writer, "w2").await.expect("claim");
        assert_eq!(events(&third), ["a-1", "a-2", "a-3"]);
        assert_eq!(third.heads, 1);
    }

    /// The outbox is empty nearly all the time, so PostgreSQL's statistics say so, and the
    /// plans a connection caches then are the ones a backlog meets (after a JetStream
    /// outage, say). Each claim must still visit each row once: the backlog below took the
    /// old statements minutes (15 s for 9,000 rows, growing with the square; and claimed
    /// more than a batch), and takes these under a second, so the bound leaves a wide
    /// margin.
    #[tokio::test]
    async fn a_backlog_drains_in_linear_time_whatever_plans_were_cached_on_an_empty_table() {
        let Some(pg) = fixtures::postgres().await else {
            return;
        };
        // One connection, so that every statement meets the plans cached on it.
        let mut options = sea_orm::ConnectOptions::new(pg.url().to_string());
        options.max_connections(1).min_connections(1);
        let db = sea_orm::Database::connect(options).await.expect("connect");
        db.execute_unprepared("VACUUM ANALYZE order_outbox")
            .await
            .expect("statistics of an empty table");
        let writer = Writer::new(&db);
        for _ in 0..8 {
            assert!(claim(&writer, "w0").await.expect("claim").rows.is_empty());
            remove(&writer, [1, 2]).await.expect("remove");
            release(&writer, &[1, 2]).await;
        }
        const ROWS: usize = 20_000;
        db.execute_unprepared(&format!(
            "INSERT INTO order_outbox (event_id, order_id, subject, payload, created_at_ms) \
             SELECT 'e' || g, 'o' || (g / 2), 's', '\\x00'::bytea, 0 \
             FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .expect("a backlog");
        let started = Instant::now();
        let mut drained = 0;
        loop {
            let claimed = claim(&writer, "w1").await.expect("claim");
            if claimed.rows.is_empty() {
                break;
            }
            assert!(claimed.heads <= BATCH);
            drained += claimed.rows.len();
            remove(&writer, claimed.rows.iter().map(|r| r.id))
                .await
                .expect("remove");
        }
        let took = started.elapsed();
        assert_eq!(drained, ROWS, "every row once");
        assert!(
            took < Duration::from_secs(30),
            "{ROWS} rows drained in {took:?}"
        );
        eprintln!("{ROWS} outbox rows claimed and removed in {took:?}");
    }
}
