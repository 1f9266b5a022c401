//! The books' side of an order's state change: run by [`crate::store::transition`] inside
//! the transaction that updates the order row, so the order, its outbox event and the
//! books commit together or not at all.

use pinnacle_common::entities::{
    orders, paper_funds, paper_positions, paper_reservations, paper_trades,
};
use pinnacle_common::model::{OrderStatus, Side};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

use super::arithmetic::Book;
use super::reserve::{give_back, position_for_update, release_in};
use super::Books;
use crate::matcher::PAPER_PREFIX;

/// Applies `before → after` to the books: a fill (more `filled_quantity`) of a paper order
/// consumes its reservation and moves position, cash and trades; a terminal state releases
/// what the order still holds. Other orders only cost a primary-key look-up when they end
/// before the broker named them.
pub async fn apply(
    db: &impl ConnectionTrait,
    books: &Books,
    before: &orders::Model,
    after: &orders::Model,
) -> Result<(), DbErr> {
    let paper = after
        .broker_order_id
        .as_deref()
        .is_some_and(|id| id.starts_with(PAPER_PREFIX));
    let filled = after.filled_quantity - before.filled_quantity;
    if paper && filled > 0 {
        fill(db, books, before, after, filled).await?;
    }
    let terminal = OrderStatus::parse(&after.status).is_some_and(OrderStatus::is_terminal);
    if terminal && (paper || after.broker_order_id.is_none()) {
        release_in(db, after).await?;
    }
    Ok(())
}

/// The value of the units that filled between `before` and `after`, paise (the orders
/// table keeps an average price, so cash follows `average × filled` exactly as before).
fn fill_value(before: &orders::Model, after: &orders::Model) -> i64 {
    let value = |o: &orders::Model| {
        i128::from(o.average_price.unwrap_or(0)) * i128::from(o.filled_quantity)
    };
    i64::try_from(value(after) - value(before))
        .unwrap_or(0)
        .max(0)
}

/// Creates a flat position row if there is none (so it can be locked).
async fn ensure_position(
    db: &impl ConnectionTrait,
    key: (&str, &str, &str, &str),
) -> Result<(), DbErr> {
    use paper_positions::Column as P;
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
    paper_positions::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([P::AccountId, P::Exchange, P::Symbol, P::Product])
                .do_nothing()
                .to_owned(),
        )
        .do_nothing()
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

async fn fill(
    db: &impl ConnectionTrait,
    books: &Books,
    before: &orders::Model,
    after: &orders::Model,
    quantity: i64,
) -> Result<(), DbErr> {
    let side = if after.side == "SELL" {
        Side::Sell
    } else {
        Side::Buy
    };
    let value = fill_value(before, after);
    books.lock_funds(db, &after.broker_account_id).await?;

    // 1. The reservation: held units first, then cash units.
    if let Some(reservation) = paper_reservations::Entity::find_by_id(after.id.clone())
        .one(db)
        .await?
    {
        let held = quantity.min(reservation.held_units);
        let cash = (quantity - held).min(reservation.cash_units);
        give_back(db, after, &reservation, cash, held).await?;
    }

    // 2. The position.
    let key = (
        after.broker_account_id.as_str(),
        after.exchange.as_str(),
        after.symbol.as_str(),
        after.product.as_str(),
    );
    ensure_position(db, key).await?;
    let existing = position_for_update(db, key.0, key.1, key.2, key.3)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("paper position {key:?}")))?;
    let mut book = Book {
        net_quantity: existing.net_quantity,
        average_price: existing.average_price,
        buy_quantity: existing.buy_quantity,
        sell_quantity: existing.sell_quantity,
        buy_value: existing.buy_value,
        sell_value: existing.sell_value,
        realized_pnl: existing.realized_pnl,
    };
    let short_before = book.short_value();
    book.fill(side, quantity, value);
    // The held units stay as they are (they may just have been given back above).
    paper_positions::ActiveModel {
        account_id: Set(key.0.to_string()),
        exchange: Set(key.1.to_string()),
        symbol: Set(key.2.to_string()),
        product: Set(key.3.to_string()),
        net_quantity: Set(book.net_quantity),
        average_price: Set(book.average_price),
        buy_quantity: Set(book.buy_quantity),
        sell_quantity: Set(book.sell_quantity),
        buy_value: Set(book.buy_value),
        sell_value: Set(book.sell_value),
        realized_pnl: Set(book.realized_pnl),
        ..Default::default()
    }
    .update(db)
    .await?;

    // 3. Cash: a buy spends, a sell brings cash in; an open short holds its value back.
    let spent = match side {
        Side::Buy => value,
        Side::Sell => -value,
    };
    use paper_funds::Column as F;
    paper_funds::Entity::update_many()
        .col_expr(F::Used, Expr::col(F::Used).add(spent))
        .col_expr(
            F::ShortValue,
            Expr::col(F::ShortValue).add(book.short_value() - short_before),
        )
        .filter(F::AccountId.eq(after.broker_account_id.as_str()))
        .exec(db)
        .await?;

    // 4. The trade.
    paper_trades::ActiveModel {
        account_id: Set(after.broker_account_id.clone()),
        order_id: Set(after.id.clone()),
        exchange: Set(after.exchange.clone()),
        symbol: Set(after.symbol.clone()),
        product: Set(after.product.clone()),
        side: Set(after.side.clone()),
        quantity: Set(quantity),
        price: Set(value / quantity),
        ts_ms: Set(after.updated_at.timestamp_millis()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
