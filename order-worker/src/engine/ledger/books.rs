//! The books' value ([`Books`]: the opening cash) and the funds row every change starts
//! from; shared by [`super::reserve()`] and [`super::fills`].

use pinnacle_common::entities::{orders, paper_funds};
use pinnacle_common::model::{Funds, Side};
use pinnacle_common::writes::{defer, Deferred};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, Insert, QueryFilter, QueryTrait, Set,
    UpdateMany,
};

/// Broker order ids the paper broker issues start with this: the books act only on those
/// orders.
pub const PAPER_PREFIX: &str = "PAPER-";

/// The books' one setting: the cash a new account starts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Books {
    /// `PINNACLE_WORKER_PAPER_CASH`, paise.
    pub opening_cash: i64,
}

impl Books {
    /// Books whose accounts start with `opening_cash` paise.
    pub fn new(opening_cash: i64) -> Self {
        Self { opening_cash }
    }

    /// `INSERT … ON CONFLICT DO NOTHING` of the account's funds row at the opening cash.
    pub(super) fn new_funds(&self, account_id: &str) -> Insert<paper_funds::ActiveModel> {
        let row = paper_funds::ActiveModel {
            account_id: Set(account_id.to_string()),
            cash: Set(self.opening_cash),
            used: Set(0),
            reserved: Set(0),
            short_value: Set(0),
        };
        paper_funds::Entity::insert(row).on_conflict(
            OnConflict::column(paper_funds::Column::AccountId)
                .do_nothing()
                .to_owned(),
        )
    }

    /// Applies `update` (an `UPDATE paper_funds … WHERE account_id = ?` whose answer is not
    /// needed) to the account's funds row, creating the row first if the account has none
    /// yet. Where writes are pipelined both go, unconditionally, with the transaction's
    /// next command; elsewhere the update is tried first and the row created only when it
    /// found nothing.
    pub(super) async fn update_funds(
        &self,
        db: &impl Deferred,
        account_id: &str,
        update: UpdateMany<paper_funds::Entity>,
    ) -> Result<(), DbErr> {
        if db.pipelines() {
            defer(db, &self.new_funds(account_id)).await?;
            return defer(db, &update).await;
        }
        let update = update.build(db.get_database_backend());
        if db.execute(update.clone()).await?.rows_affected() == 0 {
            let create = self.new_funds(account_id);
            db.execute(create.build(db.get_database_backend())).await?;
            db.execute(update).await?;
        }
        Ok(())
    }

    /// Locks the account's funds row for the rest of the transaction (creating it first if
    /// needed) with a write that changes nothing. Every transaction that changes the books
    /// starts with this: they serialise per account and take their locks in one order
    /// (funds, then position), so they never deadlock on PostgreSQL, and on SQLite the
    /// transaction holds the write lock from its first statement (a transaction that read
    /// first could not upgrade once another had written).
    pub(super) async fn lock_funds(
        &self,
        db: &impl Deferred,
        account_id: &str,
    ) -> Result<(), DbErr> {
        use paper_funds::Column as F;
        let touch = paper_funds::Entity::update_many()
            .col_expr(F::Reserved, Expr::col(F::Reserved).into())
            .filter(F::AccountId.eq(account_id));
        self.update_funds(db, account_id, touch).await
    }

    /// The account's funds: one row.
    pub async fn funds(&self, db: &impl ConnectionTrait, account_id: &str) -> Result<Funds, DbErr> {
        let row = paper_funds::Entity::find_by_id(account_id.to_string())
            .one(db)
            .await?;
        Ok(match row {
            Some(row) => funds_of(&row),
            None => Funds {
                cash: self.opening_cash,
                used: 0,
                blocked: 0,
                available: self.opening_cash,
            },
        })
    }
}

/// The wire form of a funds row.
pub fn funds_of(row: &paper_funds::Model) -> Funds {
    let blocked = row
        .reserved
        .saturating_add(row.short_value.saturating_mul(2));
    Funds {
        cash: row.cash,
        used: row.used,
        blocked,
        available: row.cash.saturating_sub(row.used).saturating_sub(blocked),
    }
}

/// The stored side of an order; a corrupt one is an error, never read as a default.
pub(super) fn side_of(order: &orders::Model) -> Result<Side, DbErr> {
    order
        .side
        .parse()
        .map_err(|e| DbErr::Custom(format!("order {}: column side: {e}", order.id)))
}

/// The order's reservation as `r`, in the books' SQL: `(SELECT r.held_units {RESERVATION})`
/// (binds `:order`).
pub(super) const RESERVATION: &str = "FROM paper_reservations AS r WHERE r.order_id = :order";

/// The condition on a position's key, in the books' SQL (binds `:account`, `:exchange`,
/// `:symbol` and `:product`).
pub(super) const POSITION: &str =
    "account_id = :account AND exchange = :exchange AND symbol = :symbol AND product = :product";

/// Values for SQL written with named parameters (`:name`), turned into the positional
/// parameters the database takes (`?` on SQLite, as a pipelined statement must have them;
/// `$1`, `$2`… on PostgreSQL), each value repeated wherever its name appears. The books'
/// statements that decide in SQL read far better this way than with a dozen `?`.
#[derive(Debug, Default)]
pub(super) struct Named(Vec<(&'static str, sea_orm::Value)>);

impl Named {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Binds `name` (without its `:`) to `value`.
    pub(super) fn with(mut self, name: &'static str, value: impl Into<sea_orm::Value>) -> Self {
        self.0.push((name, value.into()));
        self
    }

    /// `sql` with every `:name` replaced by a positional parameter, and the values in that
    /// order. A name with no value is an error: the statement is wrong, and must not run
    /// with a value missing.
    pub(super) fn statement(
        &self,
        backend: sea_orm::DbBackend,
        sql: &str,
    ) -> Result<sea_orm::Statement, DbErr> {
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let (mut text, mut values) = (String::with_capacity(sql.len()), Vec::new());
        let mut rest = sql;
        while let Some(at) = rest.find(':') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let end = after.find(|c| !is_name(c)).unwrap_or(after.len());
            let name = &after[..end];
            let value = self
                .0
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| DbErr::Custom(format!("no value for :{name} in {sql}")))?;
            values.push(value);
            match backend {
                sea_orm::DbBackend::Postgres => text.push_str(&format!("${}", values.len())),
                _ => text.push('?'),
            }
            rest = &after[end..];
        }
        text.push_str(rest);
        Ok(sea_orm::Statement::from_sql_and_values(
            backend, text, values,
        ))
    }
}
