//! The books' value ([`Books`]: the opening cash) and the funds row every change starts
//! from; shared by [`super::reserve()`] and [`super::fills`].

use pinnacle_common::entities::{orders, paper_funds};
use pinnacle_common::model::{Funds, Side};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

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

    /// Creates the account's funds row if it has none yet.
    pub(super) async fn ensure_funds(
        &self,
        db: &impl ConnectionTrait,
        account_id: &str,
    ) -> Result<(), DbErr> {
        let row = paper_funds::ActiveModel {
            account_id: Set(account_id.to_string()),
            cash: Set(self.opening_cash),
            used: Set(0),
            reserved: Set(0),
            short_value: Set(0),
        };
        paper_funds::Entity::insert(row)
            .on_conflict(
                OnConflict::column(paper_funds::Column::AccountId)
                    .do_nothing()
                    .to_owned(),
            )
            .do_nothing()
            .exec_without_returning(db)
            .await
            .map(|_| ())
    }

    /// Locks the account's funds row for the rest of the transaction (creating it first if
    /// needed) with a write that changes nothing. Every transaction that changes the books
    /// starts with this: they serialise per account and take their locks in one order
    /// (funds, then position), so they never deadlock on PostgreSQL, and on SQLite the
    /// transaction holds the write lock from its first statement (a transaction that read
    /// first could not upgrade once another had written).
    pub(super) async fn lock_funds(
        &self,
        db: &impl ConnectionTrait,
        account_id: &str,
    ) -> Result<(), DbErr> {
        if touch_funds(db, account_id).await? == 0 {
            self.ensure_funds(db, account_id).await?;
            touch_funds(db, account_id).await?;
        }
        Ok(())
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

/// `UPDATE paper_funds SET reserved = reserved WHERE account_id = ?`: how many rows.
async fn touch_funds(db: &impl ConnectionTrait, account_id: &str) -> Result<u64, DbErr> {
    use paper_funds::Column as F;
    Ok(paper_funds::Entity::update_many()
        .col_expr(F::Reserved, Expr::col(F::Reserved).into())
        .filter(F::AccountId.eq(account_id))
        .exec(db)
        .await?
        .rows_affected)
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
