//! [`OrderStore`] in the database, through SeaORM: SQLite or PostgreSQL.

use async_trait::async_trait;
use chrono::Utc;
use pinnacle_common::compose::Composer;
use pinnacle_common::db::span as db_span;
use pinnacle_common::entities::orders;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::model::{OrderStatus, Product};
use pinnacle_common::writes::{defer, defer_checked, WriteTxn, Writer};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, SqlErr, UpdateMany,
};
use tracing::Instrument as _;

use super::port::{Inserted, NewOrder, OrderQuery, OrderStore, Ownership, Patch, TransitionError};
use crate::engine::ledger;
use crate::engine::outbox;
use crate::engine::row::status_of;

/// Orders in `db`, with the paper `books` they change in the same transactions.
#[derive(Debug, Clone)]
pub struct SqlOrderStore {
    /// Reads.
    db: DatabaseConnection,
    /// Writes: every transition, and the lease statements.
    writer: Writer,
    books: ledger::Books,
}

impl SqlOrderStore {
    /// The store over `db`, changing `books` with each paper order's fills and end.
    pub fn new(db: DatabaseConnection, books: ledger::Books) -> Self {
        let writer = Writer::new(&db);
        Self { db, writer, books }
    }

    fn postgres(&self) -> bool {
        self.writer.get_database_backend() == DbBackend::Postgres
    }

    /// A transition on PostgreSQL as one statement (one round trip instead of five): the
    /// compare-and-set `update` (`changed`), the books' function call for each row it
    /// changed ([`ledger::postgres_call`]), and the outbox row, inserted only if it
    /// changed one. The call runs once the order row is updated (it reads `changed`), so
    /// locks are taken in the usual order: the order, the funds, the position. Returns
    /// whether the compare-and-set matched.
    async fn transition_at_once(
        &self,
        update: UpdateMany<orders::Entity>,
        order: &orders::Model,
        next: &orders::Model,
        fill_value: Option<i64>,
        from: OrderStatus,
    ) -> Result<bool, DbErr> {
        let mut composer = Composer::new();
        let changed = composer.take(update.build(DbBackend::Postgres))?;
        let books = ledger::postgres_call(&self.books, order, next, fill_value)?
            .map(|call| composer.take(call))
            .transpose()?;
        let event = outbox::events(&[(Some(from), next)])?.build(DbBackend::Postgres);
        let event = composer.take(event)?;
        // `INSERT INTO order_outbox (…) VALUES (…)` becomes `… SELECT * FROM (VALUES (…))
        // AS v WHERE EXISTS (SELECT 1 FROM changed)`.
        let (columns, values) = event
            .split_once(" VALUES ")
            .ok_or_else(|| DbErr::Custom(format!("an outbox insert without VALUES: {event}")))?;
        let mut sql = format!(
            "WITH changed AS ({changed} RETURNING 1), \
             event AS ({columns} SELECT * FROM (VALUES {values}) AS v \
             WHERE EXISTS (SELECT 1 FROM changed))"
        );
        match &books {
            Some(call) => sql.push_str(&format!(
                ", books AS ({call} FROM changed) SELECT (SELECT count(*) FROM changed) \
                 AS changed, (SELECT count(*) FROM books) AS books"
            )),
            None => sql
                .push_str(" SELECT (SELECT count(*) FROM changed) AS changed, 0::bigint AS books"),
        }
        let row = self
            .writer
            .query_one(composer.statement(sql))
            .await?
            .ok_or_else(|| DbErr::Custom("a transition returned no row".into()))?;
        let changed: i64 = row.try_get("", "changed")?;
        let booked: i64 = row.try_get("", "books")?;
        if books.is_some() && booked != changed {
            // Committed already, so not an error of this call; it cannot happen while the
            // books' call reads `changed`.
            tracing::error!(order_id = %order.id, booked, changed, "books and order changed apart");
        }
        Ok(changed == 1)
    }
}

#[async_trait]
impl OrderStore for SqlOrderStore {
    async fn find(
        &self,
        user_id: &str,
        client_order_id: &str,
    ) -> Result<Option<orders::Model>, DbErr> {
        orders::Entity::find()
            .filter(orders::Column::UserId.eq(user_id))
            .filter(orders::Column::ClientOrderId.eq(client_order_id))
            .one(&self.db)
            .instrument(db_span(&self.db, "SELECT", "orders"))
            .await
    }

    async fn get(&self, order_id: &str) -> Result<Option<orders::Model>, DbErr> {
        orders::Entity::find_by_id(order_id.to_string())
            .one(&self.db)
            .instrument(db_span(&self.db, "SELECT", "orders"))
            .await
    }

    async fn at_broker(
        &self,
        account_id: &str,
        broker_order_id: &str,
    ) -> Result<Option<orders::Model>, DbErr> {
        orders::Entity::find()
            .filter(orders::Column::BrokerAccountId.eq(account_id))
            .filter(orders::Column::BrokerOrderId.eq(broker_order_id))
            .one(&self.db)
            .instrument(db_span(&self.db, "SELECT", "orders"))
            .await
    }

    async fn list(&self, query: OrderQuery<'_>) -> Result<Vec<orders::Model>, DbErr> {
        let names =
            |statuses: &[OrderStatus]| statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>();
        let select = match query {
            OrderQuery::OfUser {
                user_id,
                statuses,
                limit,
            } => {
                let mut select = orders::Entity::find()
                    .filter(orders::Column::UserId.eq(user_id))
                    .order_by_desc(orders::Column::CreatedAt)
                    .order_by_desc(orders::Column::Id)
                    .limit(limit);
                if let Some(statuses) = statuses {
                    select = select.filter(orders::Column::Status.is_in(names(statuses)));
                }
                select
            }
            OrderQuery::InStates {
                statuses,
                account_id,
            } => {
                let mut select =
                    orders::Entity::find().filter(orders::Column::Status.is_in(names(statuses)));
                if let Some(account_id) = account_id {
                    select = select.filter(orders::Column::BrokerAccountId.eq(account_id));
                }
                select
            }
            OrderQuery::NotAtBrokerSince { account_id, since } => orders::Entity::find()
                .filter(orders::Column::BrokerAccountId.eq(account_id))
                .filter(settled_not_at_broker())
                .filter(orders::Column::UpdatedAt.gte(since)),
            OrderQuery::RestingPaper => orders::Entity::find()
                .filter(
                    orders::Column::Status
                        .is_in(names(&[OrderStatus::Open, OrderStatus::PartiallyFilled])),
                )
                .filter(orders::Column::BrokerOrderId.starts_with(ledger::PAPER_PREFIX)),
            OrderQuery::IntradaySince(since) => orders::Entity::find()
                .filter(orders::Column::Product.eq(Product::Intraday.as_str()))
                .filter(orders::Column::UpdatedAt.gte(since)),
        };
        select
            .all(&self.db)
            .instrument(db_span(&self.db, "SELECT", "orders"))
            .await
    }

    async fn insert_new(&self, order: NewOrder<'_>) -> Result<Inserted, DbErr> {
        let NewOrder {
            order_id,
            user_id,
            broker_account_id,
            request,
            owner,
            lease_until_ms,
        } = order;
        let now = Utc::now();
        let model = orders::Model {
            id: order_id.to_string(),
            user_id: user_id.to_string(),
            broker_account_id: broker_account_id.to_string(),
            client_order_id: request.client_order_id.clone(),
            exchange: request.exchange.clone(),
            symbol: request.symbol.clone(),
            side: request.side.as_str().to_string(),
            order_type: request.order_type.as_str().to_string(),
            quantity: request.quantity,
            price: request.price,
            trigger_price: request.trigger_price,
            product: request.product.as_str().to_string(),
            status: OrderStatus::Submitted.as_str().to_string(),
            filled_quantity: 0,
            average_price: None,
            filled_value: None,
            broker_order_id: None,
            broker_unique_id: None,
            reject_code: None,
            reject_reason: None,
            created_at: now,
            updated_at: now,
            lease_owner: Some(owner.to_string()),
            lease_until_ms: Some(lease_until_ms),
        };
        // One command on SQLite: `BEGIN`, the row, both events, `COMMIT`; one statement on
        // PostgreSQL. A second attempt at the same client order id fails on the unique key,
        // at the commit.
        let mut new = model.clone();
        new.status = OrderStatus::New.as_str().to_string();
        let states = [(None, &new), (Some(OrderStatus::New), &model)];
        let insert = orders::Entity::insert(orders::ActiveModel::from(model.clone()).reset_all());
        let inserted = async {
            if self.postgres() {
                let mut composer = Composer::new();
                let order = composer.take(insert.build(DbBackend::Postgres))?;
                let events = composer.take(outbox::events(&states)?.build(DbBackend::Postgres))?;
                let sql = format!("WITH new_order AS ({order}) {events}");
                self.writer.execute(composer.statement(sql)).await?;
            } else {
                let txn = WriteTxn::begin(&self.writer).await?;
                defer(&txn, &insert).await?;
                outbox::record_all(&txn, &states).await?;
                txn.commit().await?;
            }
            Ok::<_, DbErr>(())
        }
        .instrument(db_span(&self.db, "INSERT", "orders"))
        .await;
        match inserted {
            Ok(()) => Ok(Inserted::Created(model)),
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => self
                .find(user_id, &request.client_order_id)
                .await?
                .map(Inserted::Existing)
                .ok_or(err),
            Err(err) => Err(err),
        }
    }

    async fn transition(
        &self,
        order: &orders::Model,
        to: OrderStatus,
        patch: Patch,
        ownership: Ownership<'_>,
    ) -> Result<orders::Model, TransitionError> {
        // A compare-and-set on the current status and fill count (and, for
        // `Ownership::Held`, on the lease owner), so two workers can never both apply a
        // transition from the same state; the
        // books (`ledger::apply`: a fill moves funds and positions, an end releases the
        // order's reservation) and the outbox row commit with it.
        let from = status_of(order)?;
        if !from.can_become_with(to, patch.filled_after(order)) {
            return Err(TransitionError::Illegal { from, to });
        }
        let now = Utc::now();
        let mut update = orders::Entity::update_many()
            .col_expr(orders::Column::Status, Expr::value(to.as_str()))
            .col_expr(orders::Column::UpdatedAt, Expr::value(now));
        let mut next = order.clone();
        next.status = to.as_str().to_string();
        next.updated_at = now;
        let (lease_owner, lease_until_ms) = match ownership {
            Ownership::Acquire { owner, until_ms } if to.is_in_flight() => {
                (Some(owner.to_string()), Some(until_ms))
            }
            _ => (None, None),
        };
        update = update
            .col_expr(orders::Column::LeaseOwner, Expr::value(lease_owner.clone()))
            .col_expr(orders::Column::LeaseUntilMs, Expr::value(lease_until_ms));
        next.lease_owner = lease_owner;
        next.lease_until_ms = lease_until_ms;
        let fill_value = patch.fill_value;
        let update = with_patch(update, &mut next, patch);
        // The fill count is part of the state compared: two workers filling a partly filled
        // order from the same view (`PARTIALLY_FILLED` → `PARTIALLY_FILLED`) both pass a
        // check on the status alone, and each would book its part and write its event.
        let mut update = update
            .filter(orders::Column::Id.eq(order.id.as_str()))
            .filter(orders::Column::Status.eq(from.as_str()))
            .filter(orders::Column::FilledQuantity.eq(order.filled_quantity));
        if let Ownership::Held(owner) = ownership {
            update = update.filter(orders::Column::LeaseOwner.eq(owner));
        }
        let applied = async {
            if self.postgres() {
                return self
                    .transition_at_once(update, order, &next, fill_value, from)
                    .await;
            }
            let txn = WriteTxn::begin(&self.writer).await?;
            // On SQLite the compare-and-set goes with the books' first read, and is
            // checked before anything commits: a miss fails that command (or the commit)
            // with `RecordNotUpdated` and rolls the transaction back.
            let written = async {
                defer_checked(&txn, &update, 1).await?;
                ledger::apply(&txn, &self.books, order, &next, fill_value).await?;
                outbox::record(&txn, Some(from), &next).await
            }
            .await;
            let outcome = match written {
                Ok(()) => txn.commit().await,
                Err(e) => {
                    let _ = txn.rollback().await;
                    Err(e)
                }
            };
            match outcome {
                Ok(()) => Ok(true),
                Err(DbErr::RecordNotUpdated) => Ok(false),
                Err(e) => Err(e),
            }
        }
        .instrument(db_span(&self.db, "UPDATE", "orders"))
        .await?;
        if applied {
            Ok(next)
        } else {
            Err(TransitionError::Conflict)
        }
    }

    async fn take(
        &self,
        order: &orders::Model,
        owner: &str,
        until_ms: i64,
    ) -> Result<Option<orders::Model>, DbErr> {
        let mut update = orders::Entity::update_many()
            .col_expr(orders::Column::LeaseOwner, Expr::value(owner))
            .col_expr(orders::Column::LeaseUntilMs, Expr::value(until_ms))
            .filter(orders::Column::Id.eq(order.id.as_str()))
            .filter(orders::Column::Status.eq(order.status.as_str()));
        update = match &order.lease_owner {
            Some(previous) => update.filter(orders::Column::LeaseOwner.eq(previous.as_str())),
            None => update.filter(orders::Column::LeaseOwner.is_null()),
        };
        update = match order.lease_until_ms {
            Some(previous) => update.filter(orders::Column::LeaseUntilMs.eq(previous)),
            None => update.filter(orders::Column::LeaseUntilMs.is_null()),
        };
        let result = update
            .exec(&self.writer)
            .instrument(db_span(&self.db, "UPDATE", "orders"))
            .await?;
        Ok((result.rows_affected == 1).then(|| {
            let mut taken = order.clone();
            taken.lease_owner = Some(owner.to_string());
            taken.lease_until_ms = Some(until_ms);
            taken
        }))
    }

    async fn found_at_broker(&self, order_id: &str, broker_order_id: &str) -> Result<bool, DbErr> {
        let result = orders::Entity::update_many()
            .col_expr(orders::Column::BrokerOrderId, Expr::value(broker_order_id))
            .filter(orders::Column::Id.eq(order_id))
            .filter(settled_not_at_broker())
            .filter(orders::Column::BrokerOrderId.is_null())
            .exec(&self.writer)
            .instrument(db_span(&self.db, "UPDATE", "orders"))
            .await?;
        Ok(result.rows_affected == 1)
    }

    async fn renew(&self, order_id: &str, owner: &str, until_ms: i64) -> Result<bool, DbErr> {
        let result = orders::Entity::update_many()
            .col_expr(orders::Column::LeaseUntilMs, Expr::value(until_ms))
            .filter(orders::Column::Id.eq(order_id))
            .filter(orders::Column::LeaseOwner.eq(owner))
            .exec(&self.writer)
            .instrument(db_span(&self.db, "UPDATE", "orders"))
            .await?;
        Ok(result.rows_affected == 1)
    }
}

/// The value of `order`'s units once `filled` of them have filled, where it is known:
/// what it was (its average × its units for an order stored before values were kept) plus
/// `part`, the value of the units filled now. Unknown once units fill with no value given
/// (a broker that reports only an average); unchanged while the count is.
fn filled_value(order: &orders::Model, filled: i64, part: Option<i64>) -> Option<i64> {
    if filled == order.filled_quantity {
        return order.filled_value;
    }
    let before = order.filled_value.unwrap_or_else(|| {
        order
            .average_price
            .unwrap_or(0)
            .saturating_mul(order.filled_quantity)
    });
    part.filter(|_| filled > order.filled_quantity)
        .map(|part| before.saturating_add(part))
}

/// Orders settled as `REJECTED` / `NOT_AT_BROKER` (what [`OrderQuery::NotAtBrokerSince`]
/// lists and [`OrderStore::found_at_broker`] marks).
fn settled_not_at_broker() -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(orders::Column::Status.eq(OrderStatus::Rejected.as_str()))
        .add(orders::Column::RejectCode.eq(ErrorCode::NotAtBroker.as_str()))
}

/// Sets what `patch` changes, both in `update` and in `next` (the row as it will be).
fn with_patch(
    mut update: UpdateMany<orders::Entity>,
    next: &mut orders::Model,
    patch: Patch,
) -> UpdateMany<orders::Entity> {
    if let Some(id) = patch.broker_order_id {
        update = update.col_expr(orders::Column::BrokerOrderId, Expr::value(id.clone()));
        next.broker_order_id = Some(id);
    }
    // The broker's unique id names the order for good: the first one stored stays, and
    // one longer than its column (64) is not stored.
    match (patch.broker_unique_id, &next.broker_unique_id) {
        (Some(id), None) if id.len() <= 64 => {
            update = update.col_expr(orders::Column::BrokerUniqueId, Expr::value(id.clone()));
            next.broker_unique_id = Some(id);
        }
        (Some(id), stored) if stored.as_ref() != Some(&id) => {
            tracing::warn!(order_id = %next.id, "a broker answer named another unique id for the order, or one too long to store; the stored one stands");
        }
        _ => {}
    }
    // A fill is never undone: an answer that says fewer units filled than are recorded
    // (a broker that forgot them) leaves the fill and its price as they are.
    let undoes_a_fill = patch
        .filled_quantity
        .is_some_and(|filled| filled < next.filled_quantity);
    if undoes_a_fill {
        tracing::warn!(
            order_id = %next.id,
            recorded = next.filled_quantity,
            reported = patch.filled_quantity,
            "an outcome reported fewer units filled than recorded; the recorded fill stands"
        );
    } else {
        let mut average = patch.average_price;
        if let Some(filled) = patch.filled_quantity {
            let value = filled_value(next, filled, patch.fill_value);
            if value != next.filled_value {
                update = update.col_expr(orders::Column::FilledValue, Expr::value(value));
                next.filled_value = value;
            }
            if let Some(value) = value.filter(|_| filled > 0) {
                average = Some(value / filled);
            }
            update = update.col_expr(orders::Column::FilledQuantity, Expr::value(filled));
            next.filled_quantity = filled;
        }
        if let Some(price) = average {
            update = update.col_expr(orders::Column::AveragePrice, Expr::value(price));
            next.average_price = Some(price);
        }
    }
    if let Some(quantity) = patch.quantity {
        update = update.col_expr(orders::Column::Quantity, Expr::value(quantity));
        next.quantity = quantity;
    }
    if let Some(price) = patch.price {
        update = update.col_expr(orders::Column::Price, Expr::value(price));
        next.price = Some(price);
    }
    if let Some(trigger) = patch.trigger_price {
        update = update.col_expr(orders::Column::TriggerPrice, Expr::value(trigger));
        next.trigger_price = Some(trigger);
    }
    if let Some(error) = patch.rejection {
        update = update
            .col_expr(orders::Column::RejectCode, Expr::value(error.code.as_str()))
            .col_expr(
                orders::Column::RejectReason,
                Expr::value(error.message.clone()),
            );
        next.reject_code = Some(error.code.as_str().to_string());
        next.reject_reason = Some(error.message);
    }
    update
}

#[cfg(test)]
mod tests {
    use pinnacle_common::model::{OrderRequest, Side};

    use super::*;
    use crate::engine::fixtures::{self, database_with_account, with_account};

    /// A store on in-memory SQLite, and one on PostgreSQL where a server answers (each
    /// with user `u1` and its paper account `id-paper`); the second value keeps the
    /// PostgreSQL database until the test ends.
    async fn stores() -> Vec<(SqlOrderStore, Option<fixtures::Postgres>)> {
        let books = ledger::Books::new(1_000_000);
        let mut all = vec![(
            SqlOrderStore::new(database_with_account().await, books),
            None,
        )];
        if let Some(pg) = fixtures::postgres().await {
            with_account(&pg.db).await;
            all.push((SqlOrderStore::new(pg.db.clone(), books), Some(pg)));
        }
        all
    }

    async fn insert(store: &SqlOrderStore, id: &str, request: &OrderRequest) -> Inserted {
        let new = NewOrder {
            order_id: id,
            user_id: "u1",
            broker_account_id: "id-paper",
            request,
            owner: "w-1",
            lease_until_ms: i64::MAX,
        };
        store.insert_new(new).await.expect("insert")
    }

    /// A new order `o1` (client order id `c1`) under `w-1`'s lease.
    async fn created(store: &SqlOrderStore) -> orders::Model {
        let Inserted::Created(order) =
            insert(store, "o1", &fixtures::limit_buy("c1", Product::Delivery)).await
        else {
            panic!("a new order")
        };
        order
    }

    #[tokio::test]
    async fn the_first_insert_of_a_client_order_id_wins_and_others_read_it_back() {
        for (store, _pg) in stores().await {
            let first = fixtures::limit_buy("c1", Product::Delivery);
            let Inserted::Created(created) = insert(&store, "o1", &first).await else {
                panic!("a new order")
            };
            assert_eq!(created.status, "SUBMITTED");
            assert_eq!(created.lease_owner.as_deref(), Some("w-1"));
            let Inserted::Existing(existing) = insert(&store, "o2", &first).await else {
                panic!("the same client order id again")
            };
            assert_eq!(existing.id, "o1");
            assert!(store.get("o2").await.expect("get").is_none());
            let found = store.find("u1", "c1").await.expect("find").expect("stored");
            assert_eq!(found.id, "o1");
        }
    }

    #[tokio::test]
    async fn the_first_unique_id_a_broker_names_stays_and_an_oversized_one_is_not_stored() {
        for (store, _pg) in stores().await {
            let order = created(&store).await;
            let named = |id: &str| Patch {
                broker_order_id: Some("B1".into()),
                broker_unique_id: Some(id.into()),
                ..Patch::default()
            };
            let open = store
                .transition(
                    &order,
                    OrderStatus::Open,
                    named("u-1"),
                    Ownership::Held("w-1"),
                )
                .await
                .expect("opened");
            assert_eq!(open.broker_unique_id.as_deref(), Some("u-1"));
            let other = store
                .transition(&open, OrderStatus::Cancelled, named("u-2"), Ownership::Any)
                .await
                .expect("cancelled");
            assert_eq!(other.broker_unique_id.as_deref(), Some("u-1"));
            let stored = store.get("o1").await.expect("get").expect("stored");
            assert_eq!(stored.broker_unique_id.as_deref(), Some("u-1"));

            let Inserted::Created(second) =
                insert(&store, "o2", &fixtures::limit_buy("c2", Product::Delivery)).await
            else {
                panic!("a new order")
            };
            let long = "x".repeat(65);
            let open = store
                .transition(
                    &second,
                    OrderStatus::Open,
                    named(&long),
                    Ownership::Held("w-1"),
                )
                .await
                .expect("opened, on PostgreSQL too");
            assert_eq!(open.broker_unique_id, None);
            let stored = store.get("o2").await.expect("get").expect("stored");
            assert_eq!(stored.broker_unique_id, None);
        }
    }

    #[tokio::test]
    async fn a_stale_view_of_a_paper_fill_moves_no_books() {
        for (store, _pg) in stores().await {
            stale_fill(&store).await;
        }
    }

    async fn stale_fill(store: &SqlOrderStore) {
        use pinnacle_common::entities::{order_outbox, paper_funds, paper_trades};
        use sea_orm::PaginatorTrait as _;

        let order = created(store).await;
        let open = Patch {
            broker_order_id: Some("PAPER-1".into()),
            ..Patch::default()
        };
        let opened = store
            .transition(&order, OrderStatus::Open, open, Ownership::Held("w-1"))
            .await
            .expect("opened");
        let fill = || Patch {
            filled_quantity: Some(1),
            average_price: Some(100),
            ..Patch::default()
        };
        let db = store.writer.db().clone();
        let trades = || async {
            paper_trades::Entity::find()
                .count(&db)
                .await
                .expect("count")
        };
        // The fill's compare-and-set misses (the order is no longer SUBMITTED), so the
        // books' reads that went with it count for nothing and nothing commits.
        let mut stale = opened.clone();
        stale.status = "SUBMITTED".into();
        stale.broker_order_id = Some("PAPER-1".into());
        let events = || async {
            order_outbox::Entity::find()
                .count(&db)
                .await
                .expect("count")
        };
        let events_before = events().await;
        let missed = store
            .transition(&stale, OrderStatus::Filled, fill(), Ownership::Any)
            .await;
        assert!(
            matches!(missed, Err(TransitionError::Conflict)),
            "{missed:?}"
        );
        assert_eq!(trades().await, 0);
        assert_eq!(
            events().await,
            events_before,
            "a missed change has no event"
        );
        assert!(paper_funds::Entity::find()
            .all(&db)
            .await
            .expect("funds")
            .iter()
            .all(|f| f.used == 0));
        let filled = store
            .transition(&opened, OrderStatus::Filled, fill(), Ownership::Any)
            .await
            .expect("the current view fills");
        assert_eq!(filled.filled_quantity, 1);
        assert_eq!(trades().await, 1);
        assert_eq!(
            events().await,
            events_before + 1,
            "a change has its one event"
        );
        let again = store
            .transition(&opened, OrderStatus::Filled, fill(), Ownership::Any)
            .await;
        assert!(matches!(again, Err(TransitionError::Conflict)), "{again:?}");
        assert_eq!(trades().await, 1, "a fill is booked once");
    }

    #[tokio::test]
    async fn two_fills_of_a_partly_filled_order_from_one_view_book_once() {
        for (store, _pg) in stores().await {
            same_view_fills(&store).await;
        }
    }

    async fn same_view_fills(store: &SqlOrderStore) {
        use pinnacle_common::entities::{order_outbox, paper_positions, paper_trades};
        use sea_orm::PaginatorTrait as _;

        let three = OrderRequest {
            quantity: 3,
            ..fixtures::limit_buy("c3", Product::Intraday)
        };
        let Inserted::Created(order) = insert(store, "o3", &three).await else {
            panic!("a new order")
        };
        let open = Patch {
            broker_order_id: Some("PAPER-o3".into()),
            ..Patch::default()
        };
        let opened = store
            .transition(&order, OrderStatus::Open, open, Ownership::Held("w-1"))
            .await
            .expect("opened");
        let part = |filled: i64| Patch {
            filled_quantity: Some(filled),
            average_price: Some(100),
            fill_value: Some(100),
            ..Patch::default()
        };
        let partly = store
            .transition(
                &opened,
                OrderStatus::PartiallyFilled,
                part(1),
                Ownership::Any,
            )
            .await
            .expect("the first part");
        let db = store.writer.db().clone();
        let events_before = order_outbox::Entity::find()
            .count(&db)
            .await
            .expect("count");
        // Two workers' matchers cross the same tick with the same view of the order.
        let first = store
            .transition(
                &partly,
                OrderStatus::PartiallyFilled,
                part(2),
                Ownership::Any,
            )
            .await
            .expect("the first worker's part");
        assert_eq!(first.filled_quantity, 2);
        let second = store
            .transition(
                &partly,
                OrderStatus::PartiallyFilled,
                part(2),
                Ownership::Any,
            )
            .await;
        assert!(
            matches!(second, Err(TransitionError::Conflict)),
            "{second:?}"
        );
        let trades = paper_trades::Entity::find()
            .count(&db)
            .await
            .expect("count");
        assert_eq!(trades, 2, "each part is booked once");
        let events = order_outbox::Entity::find()
            .count(&db)
            .await
            .expect("count");
        assert_eq!(events, events_before + 1, "each part has one event");
        let position = paper_positions::Entity::find()
            .one(&db)
            .await
            .expect("position")
            .expect("one position");
        assert_eq!(position.net_quantity, 2);
        let stored = store.get("o3").await.expect("get").expect("stored");
        assert_eq!(stored.filled_quantity, 2);
    }

    /// A paper BUY of one share at ₹1 for the order `order_id`.
    fn one_share(order_id: &str) -> ledger::Claim<'_> {
        ledger::Claim {
            account_id: "id-paper",
            order_id,
            exchange: "NSE",
            symbol: "SBIN-EQ",
            product: Product::Delivery,
            side: Side::Buy,
            units: 1,
            unit_price: 100,
        }
    }

    /// The cash reserved across every account, and the reservation rows.
    async fn reserved(db: &sea_orm::DatabaseConnection) -> (i64, usize) {
        use pinnacle_common::entities::{paper_funds, paper_reservations};
        let funds = paper_funds::Entity::find().all(db).await.expect("funds");
        let rows = paper_reservations::Entity::find()
            .all(db)
            .await
            .expect("reservations");
        (funds.iter().map(|f| f.reserved).sum::<i64>(), rows.len())
    }

    #[tokio::test]
    async fn an_end_gives_back_the_reservation_with_the_change() {
        for (store, _pg) in stores().await {
            use pinnacle_common::writes::Writer;

            let order = created(&store).await;
            let db = store.writer.db().clone();
            ledger::reserve(&Writer::new(&db), &store.books, &one_share("o1"))
                .await
                .expect("reserved");
            let reserved = || reserved(&db);
            assert_eq!(reserved().await, (100, 1));
            let open = Patch {
                broker_order_id: Some("PAPER-o1".into()),
                ..Patch::default()
            };
            let opened = store
                .transition(&order, OrderStatus::Open, open, Ownership::Held("w-1"))
                .await
                .expect("opened");
            assert_eq!(reserved().await, (100, 1), "an open order keeps it");
            store
                .transition(
                    &opened,
                    OrderStatus::Cancelled,
                    Patch::default(),
                    Ownership::Any,
                )
                .await
                .expect("cancelled");
            assert_eq!(reserved().await, (0, 0), "its end gives it back");
        }
    }

    #[tokio::test]
    async fn a_reservation_that_comes_after_the_order_ended_is_refused_and_holds_nothing() {
        for (store, _pg) in stores().await {
            use pinnacle_common::writes::Writer;

            let db = store.writer.db().clone();
            let writer = Writer::new(&db);
            let claim = one_share;
            let reserved = || reserved(&db);
            // Reconciliation ended the order (nothing was reserved) while its placer's
            // reservation waited for the database.
            let order = created(&store).await;
            let rejected = Patch {
                rejection: Some(pinnacle_common::error::ErrorBody::new(
                    pinnacle_common::error::ErrorCode::NotAtBroker,
                    "the broker has no such order",
                )),
                ..Patch::default()
            };
            store
                .transition(&order, OrderStatus::Rejected, rejected, Ownership::Any)
                .await
                .expect("rejected");
            let late = ledger::reserve(&writer, &store.books, &claim("o1")).await;
            assert!(matches!(late, Err(ledger::Refusal::Settled)), "{late:?}");
            assert_eq!(reserved().await.1, 0, "nothing reserved for an ended order");
            assert_eq!(reserved().await.0, 0);
            let unknown = ledger::reserve(&writer, &store.books, &claim("nobody")).await;
            assert!(
                matches!(unknown, Err(ledger::Refusal::Settled)),
                "{unknown:?}"
            );

            // A submitted order reserves as before.
            let Inserted::Created(live) =
                insert(&store, "o2", &fixtures::limit_buy("c2", Product::Delivery)).await
            else {
                panic!("a new order")
            };
            ledger::reserve(&writer, &store.books, &claim(&live.id))
                .await
                .expect("reserved");
            assert_eq!(reserved().await, (100, 1));
        }
    }

    #[tokio::test]
    async fn the_average_price_is_the_parts_exact_value_over_the_units_rounded_once() {
        for (store, _pg) in stores().await {
            let mut order = created(&store).await;
            // Parts of one unit at 100, 101, 103, 103, 103 paise: 510 / 5 = 102. A running
            // average rounded down at each part would say 101.
            for (n, price) in [100, 101, 103, 103, 103].into_iter().enumerate() {
                let filled = i64::try_from(n).expect("small") + 1;
                let part = Patch {
                    broker_order_id: Some("b1".into()),
                    filled_quantity: Some(filled),
                    average_price: Some(1),
                    fill_value: Some(price),
                    ..Patch::default()
                };
                order = store
                    .transition(&order, OrderStatus::PartiallyFilled, part, Ownership::Any)
                    .await
                    .expect("a part filled");
            }
            let stored = store.get("o1").await.expect("get").expect("stored");
            for row in [&order, &stored] {
                assert_eq!(
                    (row.filled_quantity, row.filled_value, row.average_price),
                    (5, Some(510), Some(102)),
                    "the broker's rounded average is not taken over the exact one"
                );
            }
            // A broker that reports only an average: its figure stands, the value is unknown.
            let reported = Patch {
                filled_quantity: Some(6),
                average_price: Some(104),
                ..Patch::default()
            };
            let row = store
                .transition(
                    &order,
                    OrderStatus::PartiallyFilled,
                    reported,
                    Ownership::Any,
                )
                .await
                .expect("reported");
            assert_eq!((row.filled_value, row.average_price), (None, Some(104)));
        }
    }

    #[tokio::test]
    async fn an_answer_with_fewer_units_filled_leaves_the_recorded_fill() {
        for (store, _pg) in stores().await {
            let order = created(&store).await;
            let part = Patch {
                broker_order_id: Some("b1".into()),
                filled_quantity: Some(1),
                average_price: Some(100),
                ..Patch::default()
            };
            let partly = store
                .transition(
                    &order,
                    OrderStatus::PartiallyFilled,
                    part,
                    Ownership::Held("w-1"),
                )
                .await
                .expect("a part filled");
            // A cancel answered "nothing filled": the order ends, its fill stands.
            let forgot = Patch {
                filled_quantity: Some(0),
                average_price: Some(7),
                ..Patch::default()
            };
            let cancelled = store
                .transition(&partly, OrderStatus::Cancelled, forgot, Ownership::Any)
                .await
                .expect("cancelled");
            let stored = store.get("o1").await.expect("get").expect("stored");
            for row in [&cancelled, &stored] {
                assert_eq!(
                    (row.status.as_str(), row.filled_quantity, row.average_price),
                    ("CANCELLED", 1, Some(100))
                );
            }
        }
    }

    #[tokio::test]
    async fn only_the_lease_holder_settles_and_a_stale_view_loses() {
        for (store, _pg) in stores().await {
            let order = created(&store).await;
            let open = |id: &str| Patch {
                broker_order_id: Some(id.into()),
                ..Patch::default()
            };
            let stranger = store
                .transition(
                    &order,
                    OrderStatus::Open,
                    open("b1"),
                    Ownership::Held("w-2"),
                )
                .await;
            assert!(
                matches!(stranger, Err(TransitionError::Conflict)),
                "{stranger:?}"
            );
            let opened = store
                .transition(
                    &order,
                    OrderStatus::Open,
                    open("b1"),
                    Ownership::Held("w-1"),
                )
                .await
                .expect("the holder");
            assert_eq!(
                opened.lease_owner, None,
                "leaving flight releases the lease"
            );
            let again = store
                .transition(
                    &order,
                    OrderStatus::Rejected,
                    Patch::default(),
                    Ownership::Any,
                )
                .await;
            assert!(matches!(again, Err(TransitionError::Conflict)), "{again:?}");
            let found = store.at_broker("id-paper", "b1").await.expect("read");
            assert_eq!(found.map(|o| o.status), Some("OPEN".to_string()));
            let illegal = store
                .transition(
                    &opened,
                    OrderStatus::Submitted,
                    Patch::default(),
                    Ownership::Any,
                )
                .await;
            assert!(
                matches!(illegal, Err(TransitionError::Illegal { .. })),
                "{illegal:?}"
            );
        }
    }

    #[tokio::test]
    async fn of_two_reconcilers_with_the_same_view_one_takes_the_order() {
        for (store, _pg) in stores().await {
            let order = created(&store).await;
            let taken = store.take(&order, "w-2", 5).await.expect("take");
            assert_eq!(taken.and_then(|o| o.lease_owner).as_deref(), Some("w-2"));
            assert!(store.take(&order, "w-3", 5).await.expect("take").is_none());
            assert!(
                !store.renew("o1", "w-1", 10).await.expect("renew"),
                "w-1 lost it"
            );
            assert!(store.renew("o1", "w-2", 10).await.expect("renew"));
        }
    }

    #[tokio::test]
    async fn an_order_settled_as_not_at_broker_is_found_once_by_its_account() {
        for (store, _pg) in stores().await {
            let order = created(&store).await;
            let rejection = Patch {
                rejection: Some(pinnacle_common::error::ErrorBody::new(
                    ErrorCode::NotAtBroker,
                    "nothing was placed",
                )),
                ..Patch::default()
            };
            store
                .transition(
                    &order,
                    OrderStatus::Rejected,
                    rejection,
                    Ownership::Held("w-1"),
                )
                .await
                .expect("settled");
            let hour_ago = Utc::now() - chrono::Duration::hours(1);
            let settled = |account_id| OrderQuery::NotAtBrokerSince {
                account_id,
                since: hour_ago,
            };
            let found = store.list(settled("id-paper")).await.expect("list");
            assert_eq!(found.len(), 1);
            assert!(store
                .list(settled("id-other"))
                .await
                .expect("list")
                .is_empty());
            let later = OrderQuery::NotAtBrokerSince {
                account_id: "id-paper",
                since: Utc::now() + chrono::Duration::hours(1),
            };
            assert!(store.list(later).await.expect("list").is_empty());
            assert!(store.found_at_broker("o1", "b-1").await.expect("mark"));
            assert!(
                !store.found_at_broker("o1", "b-1").await.expect("mark"),
                "only the first finding counts"
            );
            let stored = store.get("o1").await.expect("get").expect("stored");
            assert_eq!(
                (stored.status.as_str(), stored.broker_order_id.as_deref()),
                ("REJECTED", Some("b-1"))
            );
        }
    }

    #[tokio::test]
    async fn each_query_selects_what_it_names() {
        for (store, _pg) in stores().await {
            for (id, product) in [
                ("o1", Product::Delivery),
                ("o2", Product::Intraday),
                ("o3", Product::Intraday),
            ] {
                insert(
                    &store,
                    id,
                    &fixtures::limit_buy(&format!("c-{id}"), product),
                )
                .await;
            }
            let o3 = store.get("o3").await.expect("get").expect("o3");
            let paper = Patch {
                broker_order_id: Some(format!("{}o3", ledger::PAPER_PREFIX)),
                ..Patch::default()
            };
            store
                .transition(&o3, OrderStatus::Open, paper, Ownership::Held("w-1"))
                .await
                .expect("open");
            let ids = |rows: Vec<orders::Model>| {
                let mut ids: Vec<String> = rows.into_iter().map(|o| o.id).collect();
                ids.sort();
                ids
            };
            let all = store
                .list(OrderQuery::OfUser {
                    user_id: "u1",
                    statuses: None,
                    limit: 2,
                })
                .await
                .expect("list");
            assert_eq!(all.len(), 2, "the limit");
            let open = store
                .list(OrderQuery::OfUser {
                    user_id: "u1",
                    statuses: Some(&[OrderStatus::Open]),
                    limit: 10,
                })
                .await
                .expect("list");
            assert_eq!(ids(open), ["o3"]);
            let unsettled = OrderQuery::InStates {
                statuses: &[OrderStatus::Submitted],
                account_id: Some("id-paper"),
            };
            assert_eq!(
                ids(store.list(unsettled).await.expect("list")),
                ["o1", "o2"]
            );
            let elsewhere = OrderQuery::InStates {
                statuses: &[OrderStatus::Submitted],
                account_id: Some("id-other"),
            };
            assert!(store.list(elsewhere).await.expect("list").is_empty());
            let resting = store.list(OrderQuery::RestingPaper).await.expect("list");
            assert_eq!(ids(resting), ["o3"]);
            let hour_ago = Utc::now() - chrono::Duration::hours(1);
            let intraday = store
                .list(OrderQuery::IntradaySince(hour_ago))
                .await
                .expect("list");
            assert_eq!(ids(intraday), ["o2", "o3"]);
            let later = Utc::now() + chrono::Duration::hours(1);
            let none = store
                .list(OrderQuery::IntradaySince(later))
                .await
                .expect("list");
            assert!(none.is_empty());
        }
    }
}
