//! Reservations: what an open or submitted paper order holds back, taken atomically when
//! the paper broker accepts it and given back by its fills and its end.

use pinnacle_common::broker::OrderTerms;
use pinnacle_common::entities::{orders, paper_funds, paper_positions, paper_reservations};
use pinnacle_common::model::{OrderStatus, Product, Side};
use pinnacle_common::writes::{defer, Deferred, WriteTxn, Writer};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, Set, Statement, UpdateMany,
};

use super::arithmetic::split;
use super::books::{side_of, Books, Named, POSITION, RESERVATION};

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

impl Claim<'_> {
    /// Whether the claim may open (or add to) a position with its units beyond what it
    /// holds: a buy, or an `INTRADAY` sell (going short); any other sell sells only what
    /// is held.
    fn may_open(&self) -> bool {
        self.side == Side::Buy || self.product == Product::Intraday
    }

    /// The claim's order and position, as the named values the books' SQL binds
    /// (`:order`, `:account`, `:exchange`, `:symbol`, `:product`).
    fn named(&self) -> Named {
        Named::new()
            .with("order", self.order_id)
            .with("account", self.account_id)
            .with("exchange", self.exchange)
            .with("symbol", self.symbol)
            .with("product", self.product.as_str())
    }
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
    /// The order is not stored or no longer `SUBMITTED` ([`reserve()`]): it was settled
    /// while its placer waited, and nothing was reserved.
    #[error("the order was settled before its reservation was made; nothing was reserved")]
    Settled,
    /// The database failed (nothing was reserved).
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// How many times [`reserve()`] tries again a reservation that the books refused in SQL
/// but that fits when read afterwards (another order's end released what it needed).
const ATTEMPTS: usize = 3;

/// Reserves what a new order needs, in one transaction: held units on the opposite
/// position, cash for the rest; only while the order is stored and still `SUBMITTED`,
/// checked in the same transaction (else [`Refusal::Settled`], and nothing is reserved).
///
/// On PostgreSQL this is one call of a stored function ([`reserve_in_function`]). On
/// SQLite, where writes are pipelined, the statements decide ([`reserve_in_sql`]) and
/// nothing is read before the commit, so the reservation joins a group commit with other
/// orders' writes. A refusal there is a check the commit missed: a fresh read says which
/// rule refused it and with what numbers ([`explain`]); if it fits by then, it is tried
/// again.
///
/// Why the order's state is checked: the paper broker's place is this reservation, a
/// database write that can wait on a lock. A placer whose write waited out its lease (a
/// stalled database) is not stopped by the lease's local deadline once the write was
/// sent; meanwhile reconciliation may have found nothing reserved, settled the order
/// `NOT_AT_BROKER` and released what it held. Unchecked, the late reservation would then
/// commit and hold the order's cash for good. Checked, whichever commits first wins: the
/// reservation (the order's end then releases it) or the end (the reservation is then
/// refused).
pub async fn reserve(db: &Writer, books: &Books, claim: &Claim<'_>) -> Result<(), Refusal> {
    reserve_fenced(db, books, claim, Fence::Submitted).await
}

/// [`reserve()`] without the check on the order, for the books' own tests, which store no
/// orders.
#[cfg(test)]
pub(super) async fn reserve_unfenced(
    db: &Writer,
    books: &Books,
    claim: &Claim<'_>,
) -> Result<(), Refusal> {
    reserve_fenced(db, books, claim, Fence::None).await
}

/// Whether a reservation requires its order to be stored and still `SUBMITTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fence {
    /// No condition on the order (the books' own tests).
    #[cfg(test)]
    None,
    /// Only for an order stored and still `SUBMITTED` (every reservation [`reserve()`]
    /// makes).
    Submitted,
}

async fn reserve_fenced(
    db: &Writer,
    books: &Books,
    claim: &Claim<'_>,
    fence: Fence,
) -> Result<(), Refusal> {
    if db.get_database_backend() == DbBackend::Postgres {
        return reserve_in_function(db, books, claim, fence).await;
    }
    for _ in 0..ATTEMPTS {
        let txn = WriteTxn::begin(db).await?;
        reserve_with(books, &txn, claim, fence).await?;
        match txn.commit().await {
            Err(DbErr::RecordNotUpdated) => {
                if fence == Fence::Submitted && !is_submitted(db.db(), claim.order_id).await? {
                    return Err(Refusal::Settled);
                }
                if let Some(refusal) = explain(db.db(), books, claim).await? {
                    return Err(refusal);
                }
            }
            committed => return Ok(committed?),
        }
    }
    Err(Refusal::Db(DbErr::Custom(format!(
        "the books refused the reservation {ATTEMPTS} times, and had room for it each time \
         they were read afterwards"
    ))))
}

/// [`reserve()`] inside the caller's transaction `txn`. Where writes are pipelined, a
/// refusal is not known until the commit, which fails with [`DbErr::RecordNotUpdated`].
pub(super) async fn reserve_with(
    books: &Books,
    txn: &impl Deferred,
    claim: &Claim<'_>,
    fence: Fence,
) -> Result<(), Refusal> {
    if txn.pipelines() {
        return Ok(reserve_in_sql(books, txn, claim, fence).await?);
    }
    books.lock_funds(txn, claim.account_id).await?;
    if fence == Fence::Submitted && !is_submitted(txn, claim.order_id).await? {
        return Err(Refusal::Settled);
    }
    reserve_in(txn, claim, None).await
}

/// Whether the order `order_id` is stored and still `SUBMITTED`.
async fn is_submitted(db: &impl ConnectionTrait, order_id: &str) -> Result<bool, DbErr> {
    let order = orders::Entity::find_by_id(order_id.to_string())
        .one(db)
        .await?;
    Ok(order.is_some_and(|o| o.status == OrderStatus::Submitted.as_str()))
}

/// [`reserve_in`] with every decision made by the statements themselves, on the rows as
/// they are when each runs, so that nothing is read before the commit. Pipelined writes
/// only: SQLite's transaction holds the write lock while they run, so no other writer can
/// come between them.
///
/// 1. The funds row is created if the account has none.
/// 2. The reservation row is inserted with the split ([`split`]) computed from the
///    position; for a claim that may not open (a sell other than `INTRADAY`), only if
///    every unit is held (checked: else `INSUFFICIENT_HOLDINGS`).
/// 3. The held units are added to the position, if there are any.
/// 4. The cash `cash_units × unit_price` is added to `reserved`, only if it is nothing or
///    available (checked: else `INSUFFICIENT_FUNDS`; [`refusal`]'s rule, so an order that
///    costs nothing passes even when the account's available cash is below zero). SQLite
///    computes a product too big for 64 bits as a float, which no funds row has available.
///
/// With [`Fence::Submitted`] the reservation row is inserted only while the order is
/// `SUBMITTED`; when it is not inserted, the cash update (checked) finds no reservation and
/// fails the commit.
async fn reserve_in_sql(
    books: &Books,
    db: &impl Deferred,
    claim: &Claim<'_>,
    fence: Fence,
) -> Result<(), DbErr> {
    let values = claim
        .named()
        .with("units", claim.units)
        .with("price", claim.unit_price);
    let (free, held_column) = match claim.side {
        Side::Buy => ("-p.net_quantity - p.buy_held", "buy_held"),
        Side::Sell => ("p.net_quantity - p.sell_held", "sell_held"),
    };
    let may_open = claim.may_open();
    let backend = db.get_database_backend();

    defer(db, &books.new_funds(claim.account_id)).await?;
    let mut conditions = Vec::new();
    if !may_open {
        conditions.push("held = :units");
    }
    if fence == Fence::Submitted {
        conditions.push("EXISTS (SELECT 1 FROM orders WHERE id = :order AND status = 'SUBMITTED')");
    }
    let insert = format!(
        "INSERT INTO paper_reservations \
         (order_id, account_id, unit_price, cash_units, held_units) \
         SELECT :order, :account, :price, :units - held, held FROM (SELECT COALESCE((\
         SELECT MAX(0, MIN(:units, {free})) FROM paper_positions AS p WHERE {POSITION}), 0) \
         AS held){}{}",
        if conditions.is_empty() { "" } else { " WHERE " },
        conditions.join(" AND ")
    );
    let insert = values.statement(backend, &insert)?;
    if may_open {
        db.defer(insert).await?;
    } else {
        db.defer_checked(insert, 1).await?;
    }
    let hold = format!(
        "UPDATE paper_positions SET {held_column} = {held_column} + \
         (SELECT r.held_units {RESERVATION}) \
         WHERE {POSITION} AND (SELECT r.held_units {RESERVATION}) > 0"
    );
    db.defer(values.statement(backend, &hold)?).await?;
    let cash = format!(
        "UPDATE paper_funds AS f SET reserved = f.reserved + \
         (SELECT r.cash_units * r.unit_price {RESERVATION}) \
         WHERE f.account_id = :account AND (SELECT r.cash_units * r.unit_price <= 0 \
         OR r.cash_units * r.unit_price <= f.cash - f.used - f.reserved - 2 * f.short_value \
         {RESERVATION})"
    );
    db.defer_checked(values.statement(backend, &cash)?, 1).await
}

/// [`reserve_in`] on PostgreSQL, as one call of `pinnacle_paper_reserve` (migration
/// `m20261214_000001_paper_books_functions`), a transaction of its own that locks the funds
/// and the position, splits the claim and applies [`refusal`]'s rules as `reserve_in` does:
/// one round trip instead of six. A refusal comes back with its numbers, and nothing was
/// written.
///
/// With [`Fence::Submitted`] the call is made only for an order row still `SUBMITTED`,
/// which the statement locks (`FOR SHARE`) before the function locks the books: the
/// order's row, then the funds, as every state change of an order takes them. No row
/// back means the order was settled first.
async fn reserve_in_function(
    db: &Writer,
    books: &Books,
    claim: &Claim<'_>,
    fence: Fence,
) -> Result<(), Refusal> {
    const REST: &str =
        ":account, :exchange, :symbol, :product, :sell, :may_open, :units, :price, :cash";
    let sql = if fence == Fence::Submitted {
        // The call takes the order id from the locked row, so it runs only once that row
        // is locked, and not at all without it.
        format!(
            "SELECT r.refused, r.required, r.available FROM (SELECT id FROM orders \
             WHERE id = :order AND status = 'SUBMITTED' FOR SHARE) AS o, \
             LATERAL pinnacle_paper_reserve(o.id, {REST}) AS r"
        )
    } else {
        format!("SELECT refused, required, available FROM pinnacle_paper_reserve(:order, {REST})")
    };
    let values = claim
        .named()
        .with("sell", claim.side == Side::Sell)
        .with("may_open", claim.may_open())
        .with("units", claim.units)
        .with("price", claim.unit_price)
        .with("cash", books.opening_cash);
    let row = db
        .query_one(values.statement(DbBackend::Postgres, &sql)?)
        .await?;
    let Some(row) = row else {
        // The function always returns a row: none means the order was not `SUBMITTED`.
        return Err(Refusal::Settled);
    };
    let refused: Option<String> = row.try_get("", "refused")?;
    let number = |column| -> Result<i64, DbErr> {
        let value: Option<i64> = row.try_get("", column)?;
        Ok(value.unwrap_or(0))
    };
    match refused.as_deref() {
        None => Ok(()),
        Some("funds") => Err(Refusal::Funds {
            required: number("required")?,
            available: number("available")?,
        }),
        Some("holdings") => Err(Refusal::Holdings {
            required: number("required")?,
            available: number("available")?,
        }),
        Some(other) => Err(Refusal::Db(DbErr::Custom(format!(
            "pinnacle_paper_reserve refused for an unknown reason: {other}"
        )))),
    }
}

/// Why the books refused `claim`, from a fresh read of its funds and position; `None` if
/// it fits now (they changed since).
async fn explain(
    db: &impl ConnectionTrait,
    books: &Books,
    claim: &Claim<'_>,
) -> Result<Option<Refusal>, DbErr> {
    let available = books.funds(db, claim.account_id).await?.available;
    let position = paper_positions::Entity::find_by_id((
        claim.account_id.to_string(),
        claim.exchange.to_string(),
        claim.symbol.to_string(),
        claim.product.as_str().to_string(),
    ))
    .one(db)
    .await?
    .map(|p| (p.net_quantity, p.buy_held, p.sell_held));
    let (net, buy_held, sell_held) = position.unwrap_or((0, 0, 0));
    let (held, opening) = split(claim.side, claim.units, net, buy_held, sell_held);
    Ok(refusal(claim, held, opening, Some(available)).err())
}

/// The books' two rules for a claim split into `held` and `opening` units: only
/// `INTRADAY` sells may open (go short), and the opening units must fit in `available`
/// (`None`: the funds are checked by the conditional update that reserves them).
fn refusal(
    claim: &Claim<'_>,
    held: i64,
    opening: i64,
    available: Option<i64>,
) -> Result<(), Refusal> {
    if opening > 0 && !claim.may_open() {
        return Err(Refusal::Holdings {
            required: claim.units,
            available: held,
        });
    }
    let required = opening.saturating_mul(claim.unit_price);
    match available {
        Some(available) if required > 0 && required > available => Err(Refusal::Funds {
            required,
            available,
        }),
        _ => Ok(()),
    }
}

/// Replaces a modified order's reservation with one for `claim` (its new remaining units
/// and price), in one transaction: if the new one does not fit, the old one stays.
/// `claim.units` is the new quantity; what has already filled is taken off here. The
/// reservation records `terms`, the modify's, in the same transaction: that the paper
/// broker took the modify ([`modify_taken`]).
pub async fn re_reserve(
    db: &Writer,
    books: &Books,
    claim: &Claim<'_>,
    terms: OrderTerms,
) -> Result<(), Refusal> {
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
        reserve_in(&txn, &remaining, Some(terms)).await
    }
    .await;
    finish(txn, reserved).await
}

/// The terms a modify of `order_id` left on its reservation, when the order is still
/// `PENDING_MODIFY` on other terms: the paper broker took the modify ([`re_reserve`]
/// commits the new reservation and these together) but the worker handling it never
/// recorded the outcome. `None` when no modify reached the books, or the last one that did
/// is the one the order stands on.
pub async fn modify_taken(
    db: &impl ConnectionTrait,
    order_id: &str,
) -> Result<Option<(orders::Model, OrderTerms)>, DbErr> {
    let Some(order) = orders::Entity::find_by_id(order_id.to_string())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if order.status != OrderStatus::PendingModify.as_str() {
        return Ok(None);
    }
    let Some(reservation) = paper_reservations::Entity::find_by_id(order_id.to_string())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let Some(quantity) = reservation.modify_quantity else {
        return Ok(None);
    };
    let taken = (
        quantity,
        reservation.modify_price,
        reservation.modify_trigger_price,
    );
    if taken == (order.quantity, order.price, order.trigger_price) {
        return Ok(None);
    }
    let terms = OrderTerms {
        quantity: Some(quantity),
        price: reservation.modify_price,
        trigger_price: reservation.modify_trigger_price,
    };
    Ok(Some((order, terms)))
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
/// Where writes are pipelined (SQLite; only a modify's re-reservation comes here, a new
/// order's goes to [`reserve_in_sql`]), the funds and the position are read together, and
/// the checks are made here: the transaction has held the database's write lock since its
/// `BEGIN IMMEDIATE`, so nothing can change those rows before the commit, and the writes go
/// with it (two commands in all). Elsewhere the position is locked and read, and each write
/// is made conditional and checked, since row locks are all PostgreSQL holds.
///
/// `modified`: the terms of the modify this re-reservation is for, recorded on the
/// reservation ([`modify_taken`]); `None` for a new order.
async fn reserve_in(
    db: &impl Deferred,
    claim: &Claim<'_>,
    modified: Option<OrderTerms>,
) -> Result<(), Refusal> {
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
    let amount = opening.saturating_mul(claim.unit_price);
    match funds {
        Some(funds) => {
            let available = super::books::funds_of(&funds).available;
            refusal(claim, held, opening, Some(available))?;
            if held > 0 {
                defer(db, &hold_units_update(claim, held)).await?;
            }
            if amount > 0 {
                defer(db, &reserve_cash_update(claim.account_id, amount)).await?;
            }
        }
        None => {
            refusal(claim, held, opening, None)?;
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
        modify_quantity: Set(modified.and_then(|t| t.quantity)),
        modify_price: Set(modified.and_then(|t| t.price)),
        modify_trigger_price: Set(modified.and_then(|t| t.trigger_price)),
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

    /// The order and the position's instrument, as the named values the books' SQL binds
    /// (`:order`, `:exchange`, `:symbol`, `:product`).
    fn named(&self) -> Named {
        Named::new()
            .with("order", self.order_id)
            .with("exchange", self.exchange)
            .with("symbol", self.symbol)
            .with("product", self.product)
    }
}

/// Releases everything an order still holds (it ended without a fill, or is being
/// re-reserved): funds first, then the position, then the reservation row.
pub(super) async fn release_in(db: &impl Deferred, held: &Held<'_>) -> Result<(), DbErr> {
    if db.pipelines() {
        return release_in_sql(db, held).await;
    }
    if db.get_database_backend() == DbBackend::Postgres {
        return db.execute(release_call(held)?).await.map(drop);
    }
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

/// [`release_in`] on PostgreSQL, as one call of `pinnacle_paper_release` (migration
/// `m20261214_000001_paper_books_functions`), which reads the reservation and gives back
/// what it holds as `release_in` does.
pub(super) fn release_call(held: &Held<'_>) -> Result<Statement, DbErr> {
    const SQL: &str = "SELECT pinnacle_paper_release(:order, :exchange, :symbol, :product, \
        :sell)";
    held.named()
        .with("sell", held.side == Side::Sell)
        .statement(DbBackend::Postgres, SQL)
}

/// [`release_in`] decided by its statements, so that nothing is read before the commit and
/// an order's end joins a group commit (pipelined writes only, as [`reserve_in_sql`]). An
/// order without a reservation changes nothing: each statement finds no row.
async fn release_in_sql(db: &impl Deferred, held: &Held<'_>) -> Result<(), DbErr> {
    let values = held.named();
    let column = match held.side {
        Side::Sell => "sell_held",
        Side::Buy => "buy_held",
    };
    let statements = [
        format!(
            "UPDATE paper_funds SET reserved = reserved - \
             (SELECT r.cash_units * r.unit_price {RESERVATION}) \
             WHERE account_id = (SELECT r.account_id {RESERVATION}) \
             AND (SELECT r.cash_units * r.unit_price {RESERVATION}) != 0"
        ),
        format!(
            "UPDATE paper_positions SET {column} = {column} - \
             (SELECT r.held_units {RESERVATION}) \
             WHERE account_id = (SELECT r.account_id {RESERVATION}) \
             AND exchange = :exchange AND symbol = :symbol AND product = :product \
             AND (SELECT r.held_units {RESERVATION}) != 0"
        ),
        "DELETE FROM paper_reservations WHERE order_id = :order".to_string(),
    ];
    for sql in &statements {
        db.defer(values.statement(db.get_database_backend(), sql)?)
            .await?;
    }
    Ok(())
}
