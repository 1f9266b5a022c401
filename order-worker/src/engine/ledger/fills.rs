//! The books' side of an order's state change: run by the SQL order store's
//! [`transition`](crate::engine::store::OrderStore::transition) inside the transaction
//! that updates the order row, so the order, its outbox event and the books commit
//! together or not at all.

use std::sync::LazyLock;

use pinnacle_common::entities::{
    orders, paper_funds, paper_positions, paper_reservations, paper_trades,
};
use pinnacle_common::model::Side;
use pinnacle_common::writes::{defer, Deferred};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, FromQueryResult, IdenStatic, Iterable, QueryFilter, Set,
    Statement, UpdateMany,
};

use super::arithmetic::Book;
use super::books::PAPER_PREFIX;
use super::books::{side_of, Books};
use super::reserve::{position_for_update, release_in, settle_reservation, Held};

/// Applies `before → after` to the books: a fill (more `filled_quantity`) of a paper order
/// gives back its share of the order's reservation and moves position, cash and trades; a
/// terminal state releases what the order still holds. Other orders cost nothing, except a
/// primary-key look-up when they end before a broker named them. `value` is the fill's
/// exact value in paise when the caller knows it (a part filled at one tick's price);
/// otherwise it is worked out from the change in `average_price × filled_quantity`, which
/// is exact only for a fill from nothing, since the stored average is rounded.
pub async fn apply(
    db: &impl Deferred,
    books: &Books,
    before: &orders::Model,
    after: &orders::Model,
    value: Option<i64>,
) -> Result<(), DbErr> {
    let paper = after
        .broker_order_id
        .as_deref()
        .is_some_and(|id| id.starts_with(PAPER_PREFIX));
    let terminal = crate::engine::row::status_of(after)?.is_terminal();
    let filled = after.filled_quantity - before.filled_quantity;
    if paper && filled > 0 {
        let value = value.unwrap_or_else(|| value_from_averages(before, after));
        fill(db, books, after, filled, value, terminal).await
    } else if terminal && (paper || after.broker_order_id.is_none()) {
        release_in(db, &Held::of(after)?).await
    } else {
        Ok(())
    }
}

/// The value of the units that filled between `before` and `after`, paise, from the
/// orders table's (rounded) average price: `average × filled` after, less before.
fn value_from_averages(before: &orders::Model, after: &orders::Model) -> i64 {
    let value = |o: &orders::Model| {
        i128::from(o.average_price.unwrap_or(0)) * i128::from(o.filled_quantity)
    };
    i64::try_from(value(after) - value(before))
        .unwrap_or(0)
        .max(0)
}

/// A fill of `quantity` units worth `value` paise; `terminal` when it is the order's last
/// change (then the rest of its reservation goes too). Statements: the reservation, funds
/// (which also takes the account's lock), the position, the trade.
///
/// Where writes are pipelined (SQLite), the reservation and the position are read in one
/// command (with the order's own update, in the store) and every write goes with the
/// commit: the transaction has held the database's write lock since its `BEGIN
/// IMMEDIATE`. Elsewhere the funds row is written (and so locked) before the position is
/// read and locked, the order every transaction of the books takes its locks in.
async fn fill(
    db: &impl Deferred,
    books: &Books,
    after: &orders::Model,
    quantity: i64,
    value: i64,
    terminal: bool,
) -> Result<(), DbErr> {
    let side = side_of(after)?;
    let account_id = after.broker_account_id.as_str();

    // 1. What the fill takes from the reservation: held units first, then cash units (all
    //    of it when the order ends here).
    let (reservation, position) = if db.pipelines() {
        let (reservation, position) = reservation_and_position(db, after).await?;
        (reservation, Some(position))
    } else {
        let reservation = paper_reservations::Entity::find_by_id(after.id.clone())
            .one(db)
            .await?;
        (reservation, None)
    };
    let (held, cash_units, unit_price) = match &reservation {
        Some(r) if terminal => (r.held_units, r.cash_units, r.unit_price),
        Some(r) => {
            let held = quantity.min(r.held_units);
            (held, (quantity - held).min(r.cash_units), r.unit_price)
        }
        None => (0, 0, 0),
    };

    // 2. Funds, first (the account's lock): cash moves by the fill's value, the
    //    reservation shrinks by what the fill used.
    let spent = match side {
        Side::Buy => value,
        Side::Sell => -value,
    };
    let released = cash_units.saturating_mul(unit_price);
    books
        .update_funds(db, account_id, move_funds(account_id, spent, released, 0))
        .await?;

    // 3. The position, and the units it held for this order.
    let position = match position {
        Some(position) => position,
        None => locked_position(db, after).await?,
    };
    let mut book = book_of(&position);
    let short_before = book.short_value();
    book.fill(side, quantity, value);
    let (buy_held, sell_held) = match side {
        Side::Buy => (position.buy_held - held, position.sell_held),
        Side::Sell => (position.buy_held, position.sell_held - held),
    };
    write_position(db, &position, &book, (buy_held, sell_held)).await?;
    let short_change = book.short_value() - short_before;
    if short_change != 0 {
        defer(db, &move_funds(account_id, 0, 0, short_change)).await?;
    }

    // 4. The rest of the reservation, and the trade.
    if let Some(reservation) = &reservation {
        settle_reservation(db, reservation, cash_units, held).await?;
    }
    record_trade(db, after, quantity, value).await
}

/// The arithmetic view of a position row.
fn book_of(position: &paper_positions::Model) -> Book {
    Book {
        net_quantity: position.net_quantity,
        average_price: position.average_price,
        buy_quantity: position.buy_quantity,
        sell_quantity: position.sell_quantity,
        buy_value: position.buy_value,
        sell_value: position.sell_value,
        realized_pnl: position.realized_pnl,
    }
}

/// Stores `book` and the units still held for open orders into `position`'s row.
async fn write_position(
    db: &impl Deferred,
    position: &paper_positions::Model,
    book: &Book,
    (buy_held, sell_held): (i64, i64),
) -> Result<(), DbErr> {
    // One UPDATE (an `ActiveModel::update` would read the row back).
    use paper_positions::Column as P;
    let update = paper_positions::Entity::update_many()
        .set(paper_positions::ActiveModel {
            net_quantity: Set(book.net_quantity),
            average_price: Set(book.average_price),
            buy_quantity: Set(book.buy_quantity),
            sell_quantity: Set(book.sell_quantity),
            buy_value: Set(book.buy_value),
            sell_value: Set(book.sell_value),
            realized_pnl: Set(book.realized_pnl),
            buy_held: Set(buy_held.max(0)),
            sell_held: Set(sell_held.max(0)),
            ..Default::default()
        })
        .filter(P::AccountId.eq(position.account_id.as_str()))
        .filter(P::Exchange.eq(position.exchange.as_str()))
        .filter(P::Symbol.eq(position.symbol.as_str()))
        .filter(P::Product.eq(position.product.as_str()));
    defer(db, &update).await
}

/// Records the fill of `quantity` units worth `value` paise in the trade book.
async fn record_trade(
    db: &impl Deferred,
    after: &orders::Model,
    quantity: i64,
    value: i64,
) -> Result<(), DbErr> {
    let account_id = after.broker_account_id.as_str();
    let trade = paper_trades::ActiveModel {
        account_id: Set(account_id.to_string()),
        order_id: Set(after.id.clone()),
        exchange: Set(after.exchange.clone()),
        symbol: Set(after.symbol.clone()),
        product: Set(after.product.clone()),
        side: Set(after.side.clone()),
        quantity: Set(quantity),
        price: Set(value / quantity),
        ts_ms: Set(after.updated_at.timestamp_millis()),
        ..Default::default()
    };
    defer(db, &paper_trades::Entity::insert(trade)).await
}

/// `used += spent, reserved -= released, short_value += short`.
fn move_funds(
    account_id: &str,
    spent: i64,
    released: i64,
    short: i64,
) -> UpdateMany<paper_funds::Entity> {
    use paper_funds::Column as F;
    paper_funds::Entity::update_many()
        .col_expr(F::Used, Expr::col(F::Used).add(spent))
        .col_expr(F::Reserved, Expr::col(F::Reserved).sub(released))
        .col_expr(F::ShortValue, Expr::col(F::ShortValue).add(short))
        .filter(F::AccountId.eq(account_id))
}

/// The order's position row, locked; created flat first if there is none.
async fn locked_position(
    db: &impl Deferred,
    order: &orders::Model,
) -> Result<paper_positions::Model, DbErr> {
    let key = position_key(order);
    if let Some(row) = position_for_update(db, key.0, key.1, key.2, key.3).await? {
        return Ok(row);
    }
    defer(db, &new_position(order)).await?;
    position_for_update(db, key.0, key.1, key.2, key.3)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("paper position {key:?}")))
}

/// The order's reservation, if it still has one, and its position row (created flat first
/// if there is none), in one read that goes with everything deferred before it. Where
/// writes are pipelined only: the position is not locked, the database is.
async fn reservation_and_position(
    db: &impl Deferred,
    order: &orders::Model,
) -> Result<(Option<paper_reservations::Model>, paper_positions::Model), DbErr> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let reservation = paper_reservations::Column::iter()
            .map(|c| format!("r.{0} AS r_{0}", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT p.*, {reservation} FROM paper_positions AS p \
             LEFT JOIN paper_reservations AS r ON r.order_id = ? \
             WHERE p.account_id = ? AND p.exchange = ? AND p.symbol = ? AND p.product = ?"
        )
    });
    defer(db, &new_position(order)).await?;
    let key = position_key(order);
    let values: [sea_orm::Value; 5] = [
        order.id.as_str().into(),
        key.0.into(),
        key.1.into(),
        key.2.into(),
        key.3.into(),
    ];
    let stmt = Statement::from_sql_and_values(db.get_database_backend(), SQL.as_str(), values);
    let row = db
        .query_one(stmt)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("paper position {key:?}")))?;
    let position = paper_positions::Model::from_query_result(&row, "")?;
    let reservation = match row.try_get::<Option<String>>("", "r_order_id")? {
        Some(_) => Some(paper_reservations::Model::from_query_result(&row, "r_")?),
        None => None,
    };
    Ok((reservation, position))
}

/// An order's position key: account, exchange, symbol, product.
fn position_key(order: &orders::Model) -> (&str, &str, &str, &str) {
    (
        order.broker_account_id.as_str(),
        order.exchange.as_str(),
        order.symbol.as_str(),
        order.product.as_str(),
    )
}

/// `INSERT … ON CONFLICT DO NOTHING` of the order's position, flat.
fn new_position(order: &orders::Model) -> sea_orm::Insert<paper_positions::ActiveModel> {
    use paper_positions::Column as P;
    let key = position_key(order);
    let row = paper_positions::ActiveModel {
        account_id: Set(key.0.to_string()),
        exchange: Set(key.1.to_string()),
        symbol: Set(key.2.to_string()),
        product: Set(key.3.to_string()),
        net_quantity: Set(0),
        average_price: Set(None),
        buy_quantity: Set(0),
        sell_quantity: Set(0),
        buy_value: Set(0),
        sell_value: Set(0),
        realized_pnl: Set(0),
        buy_held: Set(0),
        sell_held: Set(0),
    };
    paper_positions::Entity::insert(row).on_conflict(
        OnConflict::columns([P::AccountId, P::Exchange, P::Symbol, P::Product])
            .do_nothing()
            .to_owned(),
    )
}
