//! Reservations: what an open or submitted paper order holds back, taken atomically when
//! the paper broker accepts it and given back by its fills and its end.

use pinnacle_common::entities::{orders, paper_funds, paper_positions, paper_reservations};
use pinnacle_common::model::{Product, Side};
use pinnacle_common::writes::{defer, Deferred, WriteTxn, Writer};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    Set, Statement, UpdateMany,
};

use super::arithmetic::split;
use super::books::{side_of, Books};

/// What an order asks the books to hold for it.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The broker account.
    pub account_id: &'a str,
    /// The order (`orders.id`).
    pub order_id: &'a str,
    /// Exchange segment.
    pub exchange: &'a str,
    /// Trading symbol.
    pub symbol: &'a str,
    /// The product; only `INTRADAY` sells may go short.
    pub product: Product,
    /// Buy or sell.
    pub side: Side,
    /// Units still to fill.
    pub units: i64,
    /// The reference price each opening unit reserves, paise.
    pub unit_price: i64,
}

/// Why the books refused a claim.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The opening units cost more than the account has available.
    #[error("insufficient funds: {required} needed, {available} available")]
    Funds {
        /// Paise needed.
        required: i64,
        /// Paise available.
        available: i64,
    },
    /// A sell beyond the position, for a product that may not go short.
    #[error("insufficient holdings: {required} to sell, {available} free")]
    Holdings {
        /// Units to sell.
        required: i64,
        /// Units held and free to sell.
        available: i64,
    },
    /// The database failed (nothing was reserved).
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Reserves what a new order needs, in one transaction: held units on the opposite
/// position, cash for the rest.
pub async fn reserve(db: &Writer, books: &Books, claim: &Claim<'_>) -> Result<(), Refusal> {
    let txn = WriteTxn::begin(db).await?;
    let reserved = reserve_with(books, &txn, claim).await;
    finish(txn, reserved).await
}

/// [`reserve()`] inside the caller's transaction `txn`.
pub(super) async fn reserve_with(
    books: &Books,
    txn: &impl Deferred,
    claim: &Claim<'_>,
) -> Result<(), Refusal> {
    books.lock_funds(txn, claim.account_id).await?;
    reserve_in(txn, claim).await
}

/// Replaces a modified order's reservation with one for `claim` (its new remaining units
/// and price), in one transaction: if the new one does not fit, the old one stays.
/// `claim.units` is the new quantity; what has already filled is taken off here.
pub async fn re_reserve(db: &Writer, books: &Books, claim: &Claim<'_>) -> Result<(), Refusal> {
    let txn = WriteTxn::begin(db).await?;
    let reserved = async {
        books.lock_funds(&txn, claim.account_id).await?;
        release_in(
            &txn,
            &Held {
                order_id: claim.order_id,
                side: claim.side,
                exchange: claim.exchange,
                symbol: claim.symbol,
                product: claim.product.as_str(),
            },
        )
        .await?;
        let filled = orders::Entity::find_by_id(claim.order_id.to_string())
            .one(&txn)
            .await?
            .map_or(0, |order| order.filled_quantity);
        let remaining = Claim {
            units: (claim.units - filled).max(0),
            ..claim.clone()
        };
        reserve_in(&txn, &remaining).await
    }
    .await;
    finish(txn, reserved).await
}

/// Commits `txn` if the reservation was made; otherwise rolls it back (a rollback that
/// fails closes the connection, which ends the transaction too) and returns the refusal.
async fn finish(txn: WriteTxn, reserved: Result<(), Refusal>) -> Result<(), Refusal> {
    match reserved {
        Ok(()) => Ok(txn.commit().await?),
        Err(refusal) => {
            let _ = txn.rollback().await;
            Err(refusal)
        }
    }
}

/// The position row for an order, locked for the rest of the transaction (PostgreSQL;
/// SQLite's transaction already holds the write lock).
pub(super) async fn position_for_update(
    db: &impl ConnectionTrait,
    account_id: &str,
    exchange: &str,
    symbol: &str,
    product: &str,
) -> Result<Option<paper_positions::Model>, DbErr> {
    paper_positions::Entity::find_by_id((
        account_id.to_string(),
        exchange.to_string(),
        symbol.to_string(),
        product.to_string(),
    ))
    .lock_exclusive()
    .one(db)
    .await
}

/// Reserves for `claim` after the account's funds row was locked (and created).
///
/// Where writes are pipelined (SQLite), the funds and the position are read together, and
/// the checks are made here: the transaction has held the database's write lock since its
/// `BEGIN IMMEDIATE`, so nothing can change those rows before the commit, and the writes go
/// with it (two commands in all). Elsewhere the position is locked and read, and each write
/// is made conditional and checked, since row locks are all PostgreSQL holds.
async fn reserve_in(db: &impl Deferred, claim: &Claim<'_>) -> Result<(), Refusal> {
    let product = claim.product.as_str();
    let (position, funds) = if db.pipelines() {
        let (funds, position) = funds_and_position(db, claim).await?;
        (position, Some(funds))
    } else {
        let position =
            position_for_update(db, claim.account_id, claim.exchange, claim.symbol, product)
                .await?
                .map(|p| (p.net_quantity, p.buy_held, p.sell_held));
        (position, None)
    };
    let (net, buy_held, sell_held) = position.unwrap_or((0, 0, 0));
    let (held, opening) = split(claim.side, claim.units, net, buy_held, sell_held);
    if opening > 0 && claim.side == Side::Sell && claim.product != Product::Intraday {
        return Err(Refusal::Holdings {
            required: claim.units,
            available: held,
        });
    }
    let amount = opening.saturating_mul(claim.unit_price);
    match funds {
        Some(funds) => {
            let available = super::books::funds_of(&funds).available;
            if amount > 0 && amount > available {
                return Err(Refusal::Funds {
                    required: amount,
                    available,
                });
            }
            if held > 0 {
                defer(db, &hold_units_update(claim, held)).await?;
            }
            if amount > 0 {
                defer(db, &reserve_cash_update(claim.account_id, amount)).await?;
            }
        }
        None => {
            if held > 0 {
                hold_units(db, claim, held).await?;
            }
            if amount > 0 {
                reserve_cash(db, claim.account_id, amount).await?;
            }
        }
    }
    let reservation = paper_reservations::ActiveModel {
        order_id: Set(claim.order_id.to_string()),
        account_id: Set(claim.account_id.to_string()),
        unit_price: Set(claim.unit_price),
        cash_units: Set(opening),
        held_units: Set(held),
    };
    defer(db, &paper_reservations::Entity::insert(reservation)).await?;
    Ok(())
}

/// The funds row (locked and created before) and the claim's position, if it has one, in
/// one read: `(net_quantity, buy_held, sell_held)`. Where writes are pipelined only.
async fn funds_and_position(
    db: &impl ConnectionTrait,
    claim: &Claim<'_>,
) -> Result<(paper_funds::Model, Option<(i64, i64, i64)>), DbErr> {
    const SQL: &str = "SELECT f.*, p.net_quantity AS p_net_quantity, \
         p.buy_held AS p_buy_held, p.sell_held AS p_sell_held \
         FROM paper_funds AS f LEFT JOIN paper_positions AS p \
         ON p.account_id = f.account_id AND p.exchange = ? AND p.symbol = ? AND p.product = ? \
         WHERE f.account_id = ?";
    let values: [sea_orm::Value; 4] = [
        claim.exchange.into(),
        claim.symbol.into(),
        claim.product.as_str().into(),
        claim.account_id.into(),
    ];
    let stmt = Statement::from_sql_and_values(db.get_database_backend(), SQL, values);
    let row = db
        .query_one(stmt)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("paper funds {}", claim.account_id)))?;
    let funds = paper_funds::Model::from_query_result(&row, "")?;
    let net: Option<i64> = row.try_get("", "p_net_quantity")?;
    let position = match net {
        Some(net) => Some((
            net,
            row.try_get("", "p_buy_held")?,
            row.try_get("", "p_sell_held")?,
        )),
        None => None,
    };
    Ok((funds, position))
}

/// `buy_held` or `sell_held += units` on the claim's position, only if they are still free.
fn hold_units_update(claim: &Claim<'_>, units: i64) -> UpdateMany<paper_positions::Entity> {
    use paper_positions::Column as P;
    let (column, free) = match claim.side {
        Side::Buy => (P::BuyHeld, Expr::val(0).sub(Expr::col(P::NetQuantity))),
        Side::Sell => (P::SellHeld, Expr::col(P::NetQuantity).into()),
    };
    paper_positions::Entity::update_many()
        .col_expr(column, Expr::col(column).add(units))
        .filter(P::AccountId.eq(claim.account_id))
        .filter(P::Exchange.eq(claim.exchange))
        .filter(P::Symbol.eq(claim.symbol))
        .filter(P::Product.eq(claim.product.as_str()))
        .filter(free.sub(Expr::col(column)).gte(units))
}

/// Holds `units` of the opposite position for the claim, only if they are still free.
async fn hold_units(
    db: &impl ConnectionTrait,
    claim: &Claim<'_>,
    units: i64,
) -> Result<(), Refusal> {
    let result = hold_units_update(claim, units).exec(db).await?;
    if result.rows_affected == 1 {
        Ok(())
    } else {
        // The row is locked for this transaction, so this means it changed under us.
        Err(Refusal::Db(DbErr::Custom(
            "the position changed while reserving".into(),
        )))
    }
}

/// `reserved += amount`, only if the account has `amount` available.
fn reserve_cash_update(account_id: &str, amount: i64) -> UpdateMany<paper_funds::Entity> {
    use paper_funds::Column as F;
    let available = Expr::col(F::Cash)
        .sub(Expr::col(F::Used))
        .sub(Expr::col(F::Reserved))
        .sub(Expr::col(F::ShortValue).mul(2));
    paper_funds::Entity::update_many()
        .col_expr(F::Reserved, Expr::col(F::Reserved).add(amount))
        .filter(F::AccountId.eq(account_id))
        .filter(available.gte(amount))
}

/// [`reserve_cash_update`], checked: a refusal says what was available.
async fn reserve_cash(
    db: &impl ConnectionTrait,
    account_id: &str,
    amount: i64,
) -> Result<(), Refusal> {
    let result = reserve_cash_update(account_id, amount).exec(db).await?;
    if result.rows_affected == 1 {
        return Ok(());
    }
    let funds = paper_funds::Entity::find_by_id(account_id.to_string())
        .one(db)
        .await?;
    Err(Refusal::Funds {
        required: amount,
        available: funds.map_or(0, |f| super::books::funds_of(&f).available),
    })
}

/// Shrinks a reservation by what was given back, deleting it once nothing is left.
pub(super) async fn settle_reservation(
    db: &impl Deferred,
    reservation: &paper_reservations::Model,
    cash_units: i64,
    held_units: i64,
) -> Result<(), DbErr> {
    let cash_left = reservation.cash_units - cash_units;
    let held_left = reservation.held_units - held_units;
    if cash_left <= 0 && held_left <= 0 {
        defer(
            db,
            &paper_reservations::Entity::delete_by_id(reservation.order_id.clone()),
        )
        .await
    } else {
        use paper_reservations::Column as R;
        let update = paper_reservations::Entity::update_many()
            .col_expr(R::CashUnits, Expr::value(cash_left))
            .col_expr(R::HeldUnits, Expr::value(held_left))
            .filter(R::OrderId.eq(reservation.order_id.as_str()));
        defer(db, &update).await
    }
}

/// Which order's reservation to release, and the position its held units are on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held<'a> {
    /// The order.
    pub order_id: &'a str,
    /// Its side (a sell holds `sell_held`, a buy `buy_held`).
    pub side: Side,
    /// Exchange segment.
    pub exchange: &'a str,
    /// Trading symbol.
    pub symbol: &'a str,
    /// Stored product.
    pub product: &'a str,
}

impl<'a> Held<'a> {
    /// The reservation of a stored order.
    pub(super) fn of(order: &'a orders::Model) -> Result<Self, DbErr> {
        Ok(Self {
            order_id: &order.id,
            side: side_of(order)?,
            exchange: &order.exchange,
            symbol: &order.symbol,
            product: &order.product,
        })
    }
}

/// Releases everything an order still holds (it ended without a fill, or is being
/// re-reserved): funds first, then the position, then the reservation row.
pub(super) async fn release_in(db: &impl Deferred, held: &Held<'_>) -> Result<(), DbErr> {
    let Some(reservation) = paper_reservations::Entity::find_by_id(held.order_id.to_string())
        .one(db)
        .await?
    else {
        return Ok(());
    };
    let amount = reservation
        .cash_units
        .saturating_mul(reservation.unit_price);
    if amount != 0 {
        use paper_funds::Column as F;
        let update = paper_funds::Entity::update_many()
            .col_expr(F::Reserved, Expr::col(F::Reserved).sub(amount))
            .filter(F::AccountId.eq(reservation.account_id.as_str()));
        defer(db, &update).await?;
    }
    if reservation.held_units != 0 {
        use paper_positions::Column as P;
        let column = match held.side {
            Side::Sell => P::SellHeld,
            Side::Buy => P::BuyHeld,
        };
        let update = paper_positions::Entity::update_many()
            .col_expr(column, Expr::col(column).sub(reservation.held_units))
            .filter(P::AccountId.eq(reservation.account_id.as_str()))
            .filter(P::Exchange.eq(held.exchange))
            .filter(P::Symbol.eq(held.symbol))
            .filter(P::Product.eq(held.product));
        defer(db, &update).await?;
    }
    defer(
        db,
        &paper_reservations::Entity::delete_by_id(reservation.order_id),
    )
    .await
}
