//! The books' side of an order's state change: run by the SQL order store's
//! [`transition`](crate::engine::store::OrderStore::transition) inside the transaction
//! that updates the order row, so the order, its outbox event and the books commit
//! together or not at all.

use pinnacle_common::entities::{
    orders, paper_funds, paper_positions, paper_reservations, paper_trades,
};
use pinnacle_common::model::Side;
use pinnacle_common::writes::{defer, Deferred};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Set,
    Statement, UpdateMany,
};

use super::arithmetic::Book;
use super::books::PAPER_PREFIX;
use super::books::{side_of, Books, Named, POSITION, RESERVATION};
use super::reserve::{position_for_update, release_call, release_in, settle_reservation, Held};

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
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    match Change::of(before, after, value)? {
        Change::Fill(fill) if db.pipelines() => fill_in_sql(db, books, after, &fill).await,
        Change::Fill(fill) if postgres => {
            db.execute(fill_call(books, after, &fill)?).await.map(drop)
        }
        Change::Fill(fill) => self::fill(db, books, after, &fill).await,
        Change::Release(held) => release_in(db, &held).await,
        Change::Nothing => Ok(()),
    }
}

/// [`apply`] on PostgreSQL as one function call, for a statement that changes the order
/// row too (`store::transition`): `SELECT pinnacle_paper_fill(…)` or
/// `SELECT pinnacle_paper_release(…)`, whose `FROM` the caller adds; `None` when the books
/// do not change.
pub fn postgres_call(
    books: &Books,
    before: &orders::Model,
    after: &orders::Model,
    value: Option<i64>,
) -> Result<Option<Statement>, DbErr> {
    match Change::of(before, after, value)? {
        Change::Fill(fill) => fill_call(books, after, &fill).map(Some),
        Change::Release(held) => release_call(&held).map(Some),
        Change::Nothing => Ok(None),
    }
}

/// What a state change does to the books.
enum Change<'a> {
    /// A paper order filled more.
    Fill(Fill),
    /// An order ended with what it reserved (if anything) still held.
    Release(Held<'a>),
    /// Nothing: an order of another broker, or a paper one that neither filled nor ended.
    Nothing,
}

/// A fill of `quantity` units worth `value` paise; `terminal` when it is the order's last
/// change (then the rest of its reservation goes too).
struct Fill {
    quantity: i64,
    value: i64,
    terminal: bool,
}

impl<'a> Change<'a> {
    fn of(
        before: &orders::Model,
        after: &'a orders::Model,
        value: Option<i64>,
    ) -> Result<Self, DbErr> {
        let paper = after
            .broker_order_id
            .as_deref()
            .is_some_and(|id| id.starts_with(PAPER_PREFIX));
        let terminal = crate::engine::row::status_of(after)?.is_terminal();
        let quantity = after.filled_quantity - before.filled_quantity;
        Ok(if paper && quantity > 0 {
            Change::Fill(Fill {
                quantity,
                value: value.unwrap_or_else(|| value_from_averages(before, after)),
                terminal,
            })
        } else if terminal && (paper || after.broker_order_id.is_none()) {
            Change::Release(Held::of(after)?)
        } else {
            Change::Nothing
        })
    }
}

/// The value of the units that filled between `before` and `after`, paise, from the
/// orders table's (rounded) average price: `average × filled` after, less before. (A fill
/// whose value is known passes it: the store keeps `filled_value` only then.)
fn value_from_averages(before: &orders::Model, after: &orders::Model) -> i64 {
    let value = |o: &orders::Model| {
        i128::from(o.average_price.unwrap_or(0)) * i128::from(o.filled_quantity)
    };
    i64::try_from(value(after) - value(before))
        .unwrap_or(0)
        .max(0)
}

/// Books a fill. Statements: the reservation, funds (which also takes the account's lock),
/// the position, the trade. The funds row is written (and so locked) before the position
/// is read and locked, the order every transaction of the books takes its locks in. Where
/// writes are pipelined, see [`fill_in_sql`]; on PostgreSQL, [`fill_call`].
async fn fill(
    db: &impl Deferred,
    books: &Books,
    after: &orders::Model,
    &Fill {
        quantity,
        value,
        terminal,
    }: &Fill,
) -> Result<(), DbErr> {
    let side = side_of(after)?;
    let account_id = after.broker_account_id.as_str();

    // 1. What the fill takes from the reservation: held units first, then cash units (all
    //    of it when the order ends here).
    let reservation = paper_reservations::Entity::find_by_id(after.id.clone())
        .one(db)
        .await?;
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
    let position = locked_position(db, after).await?;
    let mut book = book_of(&position);
    let short_before = book.short_value();
    book.fill(side, quantity, value);
    let (mut buy_held, mut sell_held) = (position.buy_held, position.sell_held);
    let (own, closable) = match side {
        Side::Buy => (&mut buy_held, (-book.net_quantity).max(0)),
        Side::Sell => (&mut sell_held, book.net_quantity.max(0)),
    };
    *own = (*own - held).max(0);
    let overflow = *own - closable;
    *own = (*own).min(closable);
    write_position(db, &position, &book, (buy_held, sell_held)).await?;
    let short_change = book.short_value() - short_before;
    if short_change != 0 {
        defer(db, &move_funds(account_id, 0, 0, short_change)).await?;
    }

    // 4. The rest of the reservation; other orders' units the fill closed; the trade.
    if let Some(reservation) = &reservation {
        settle_reservation(db, reservation, cash_units, held).await?;
    }
    if overflow > 0 {
        convert_holders(db, after, side, overflow).await?;
    }
    record_trade(db, after, quantity, value).await
}

/// Turns `units` held units of other orders into cash units, for a fill of `order` that
/// closed more of the position than its own reservation held: the units those orders held
/// to close are gone, so when they fill they will open instead, and must hold cash for it
/// as any opening order does. Newest order first, each at its own reference price; the
/// cash is reserved whatever is available, since the fill that closed the units released
/// at least as many units' cash (it had reserved them to open). See
/// [`super::arithmetic::split`] for how units are held.
async fn convert_holders(
    db: &impl Deferred,
    order: &orders::Model,
    side: Side,
    units: i64,
) -> Result<(), DbErr> {
    use paper_reservations::Column as R;
    let (account, exchange, symbol, product) = position_key(order);
    let same_position = orders::Entity::find()
        .select_only()
        .column(orders::Column::Id)
        .filter(orders::Column::BrokerAccountId.eq(account))
        .filter(orders::Column::Exchange.eq(exchange))
        .filter(orders::Column::Symbol.eq(symbol))
        .filter(orders::Column::Product.eq(product))
        .filter(orders::Column::Side.eq(side.as_str()))
        .into_query();
    let mut holders = paper_reservations::Entity::find()
        .filter(R::AccountId.eq(account))
        .filter(R::OrderId.ne(order.id.as_str()))
        .filter(R::HeldUnits.gt(0))
        .filter(R::OrderId.in_subquery(same_position))
        .all(db)
        .await?;
    holders.sort_by(|a, b| b.order_id.cmp(&a.order_id));
    let (mut left, mut cash) = (units, 0_i64);
    for holder in holders {
        if left <= 0 {
            break;
        }
        let take = holder.held_units.min(left);
        left -= take;
        cash = cash.saturating_add(take.saturating_mul(holder.unit_price));
        let update = paper_reservations::Entity::update_many()
            .col_expr(R::HeldUnits, Expr::col(R::HeldUnits).sub(take))
            .col_expr(R::CashUnits, Expr::col(R::CashUnits).add(take))
            .filter(R::OrderId.eq(holder.order_id.as_str()));
        defer(db, &update).await?;
    }
    if cash != 0 {
        defer(db, &move_funds(account, 0, cash.saturating_neg(), 0)).await?;
    }
    Ok(())
}

/// The arithmetic view of a position row.
fn book_of(position: &paper_positions::Model) -> Book {
    Book {
        net_quantity: position.net_quantity,
        open_cost: position.open_cost,
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
            average_price: Set(book.average_price()),
            open_cost: Set(book.open_cost),
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

/// [`fill`] with every decision made by the statements themselves, on the rows as they are
/// when each runs, so that nothing is read before the commit and the whole transition
/// (the order's compare-and-set, the books, the outbox row) can join a group commit.
/// Pipelined writes only: SQLite's transaction holds the write lock while they run.
///
/// In order, since each reads what the ones before left (every `UPDATE`'s expressions see
/// its row as it was before it):
/// 1. the position and funds rows are created if missing;
/// 2. funds: `used` moves by the fill's value, `reserved` gives back the cash units the fill
///    took from the reservation (held units first, then cash units; all of it when the
///    order ends here), and the position's short value comes off `short_value`;
/// 3. the position moves by [`Book::fill`]'s arithmetic, written in SQL, and gives back
///    the units it held for the order;
/// 4. the position's new short value goes onto `short_value`;
/// 5. the reservation shrinks by what the fill took, and goes when nothing is left;
/// 6. the trade is recorded.
///
/// `tests::the_books_decide_the_same_in_sql_as_in_rust` runs random reservations and fills
/// both ways and compares every row.
async fn fill_in_sql(
    db: &impl Deferred,
    books: &Books,
    after: &orders::Model,
    &Fill {
        quantity,
        value,
        terminal,
    }: &Fill,
) -> Result<(), DbErr> {
    let side = side_of(after)?;
    let account = after.broker_account_id.as_str();
    let (signed, bought, held_column) = match side {
        Side::Buy => (quantity, "buy", "buy_held"),
        Side::Sell => (-quantity, "sell", "sell_held"),
    };
    let values = named(after)
        .with("q", quantity)
        .with("s", signed)
        .with("v", value)
        .with("spent", if side == Side::Buy { value } else { -value });
    // What the fill takes from the order's reservation `r`: held units first, then cash
    // units; all of it when the order ends here.
    let (held, cash) = if terminal {
        ("r.held_units", "r.cash_units")
    } else {
        (
            "MIN(:q, r.held_units)",
            "MIN(:q - MIN(:q, r.held_units), r.cash_units)",
        )
    };
    let short = format!(
        "(SELECT CASE WHEN p.net_quantity < 0 THEN p.open_cost ELSE 0 END \
         FROM paper_positions AS p WHERE {POSITION})"
    );
    // The position's units open in the fill's direction before it (or none).
    const ADDING: &str = "(net_quantity = 0 OR (net_quantity > 0) = (:s > 0))";
    // Reducing: the units the fill closes, their share of the open cost and their share of
    // the fill's value ([`share`](super::arithmetic::share), written as
    // `a / n × k + (a % n) × k / n` so that no product outgrows 64 bits).
    const CLOSED: &str = "MIN(:q, ABS(net_quantity))";
    let removed = format!(
        "(open_cost / ABS(net_quantity) * {CLOSED} \
         + open_cost % ABS(net_quantity) * {CLOSED} / ABS(net_quantity))"
    );
    let closed_value = format!("(:v / :q * {CLOSED} + :v % :q * {CLOSED} / :q)");
    let open_cost = format!(
        "CASE WHEN net_quantity + :s = 0 THEN 0 \
         WHEN {ADDING} THEN open_cost + :v \
         WHEN (net_quantity + :s > 0) = (net_quantity > 0) THEN open_cost - {removed} \
         ELSE :v - {closed_value} END"
    );

    defer(db, &new_position(after)).await?;
    defer(db, &books.new_funds(account)).await?;
    let statements = [
        format!(
            "UPDATE paper_funds SET used = used + :spent, \
             reserved = reserved - COALESCE((SELECT {cash} * r.unit_price {RESERVATION}), 0), \
             short_value = short_value - {short} WHERE account_id = :account"
        ),
        format!(
            "UPDATE paper_positions SET \
             {bought}_quantity = {bought}_quantity + :q, \
             {bought}_value = {bought}_value + :v, \
             net_quantity = net_quantity + :s, \
             open_cost = {open_cost}, \
             average_price = CASE WHEN net_quantity + :s = 0 THEN NULL \
               ELSE ({open_cost}) / ABS(net_quantity + :s) END, \
             realized_pnl = realized_pnl + CASE WHEN {ADDING} THEN 0 \
               ELSE ({closed_value} - {removed}) \
                 * (CASE WHEN net_quantity > 0 THEN 1 ELSE -1 END) END, \
             {held_column} = MAX(0, {held_column} - \
               COALESCE((SELECT {held} {RESERVATION}), 0)) \
             WHERE {POSITION}"
        ),
        format!(
            "UPDATE paper_funds SET short_value = short_value + {short} \
             WHERE account_id = :account"
        ),
        if terminal {
            String::new()
        } else {
            format!(
                "UPDATE paper_reservations AS r SET held_units = r.held_units - {held}, \
                 cash_units = r.cash_units - {cash} WHERE r.order_id = :order"
            )
        },
        format!(
            "DELETE FROM paper_reservations WHERE order_id = :order{}",
            if terminal {
                ""
            } else {
                " AND cash_units <= 0 AND held_units <= 0"
            }
        ),
    ];
    for sql in statements.iter().filter(|sql| !sql.is_empty()) {
        db.defer(values.statement(db.get_database_backend(), sql)?)
            .await?;
    }
    convert_holders_in_sql(db, after, side).await?;
    record_trade(db, after, quantity, value).await
}

/// [`convert_holders`] in SQL, after [`fill_in_sql`] moved the position: the units the
/// fill's side still holds beyond what the position can close (the `gate`, a row only
/// when there are any) are taken from the holders' reservations, newest order first (a
/// running sum of the newer ones' held units says where each starts), their cash reserved
/// at each one's price, and the position's held units cut to what it can close.
///
/// The gate is the outer loop of every statement (`CROSS JOIN` fixes SQLite's join
/// order), so a fill that closed only its own units costs three look-ups of its position
/// row and reads no reservation: 12 µs for the three, measured with 2,000 other
/// reservations in the table, where the same gate written as a condition SQLite could not
/// hoist cost 87 µs, a scan of every reservation on every fill.
///
/// The cash is summed with `TOTAL` (exact while it is below 2^53 paise) and saturates at
/// the 64-bit limit, as the Rust does.
async fn convert_holders_in_sql(
    db: &impl Deferred,
    order: &orders::Model,
    side: Side,
) -> Result<(), DbErr> {
    let (held, closable) = match side {
        Side::Buy => ("buy_held", "MAX(-net_quantity, 0)"),
        Side::Sell => ("sell_held", "MAX(net_quantity, 0)"),
    };
    let takes = format!(
        "WITH gate AS (SELECT {held} - {closable} AS overflow FROM paper_positions \
           WHERE {POSITION} AND {held} > {closable}), \
         holders AS (SELECT r.order_id, r.unit_price, r.held_units, gate.overflow, \
           COALESCE(SUM(r.held_units) OVER (ORDER BY r.order_id DESC \
             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS newer \
           FROM gate CROSS JOIN paper_reservations AS r CROSS JOIN orders AS o \
           WHERE o.id = r.order_id AND r.account_id = :account AND r.order_id <> :order \
           AND r.held_units > 0 AND o.exchange = :exchange AND o.symbol = :symbol \
           AND o.product = :product AND o.side = :side), \
         takes AS (SELECT order_id, unit_price, MIN(held_units, overflow - newer) AS take \
           FROM holders WHERE overflow > newer)"
    );
    let statements = [
        format!(
            "{takes} UPDATE paper_funds SET reserved = MIN(reserved + \
             (SELECT CAST(TOTAL(take * unit_price) AS INTEGER) FROM takes), \
             9223372036854775807) WHERE account_id = :account AND EXISTS (SELECT 1 FROM gate)"
        ),
        format!(
            "{takes} UPDATE paper_reservations AS r SET held_units = r.held_units - t.take, \
             cash_units = r.cash_units + t.take FROM takes AS t WHERE r.order_id = t.order_id"
        ),
        format!(
            "UPDATE paper_positions SET {held} = {closable} WHERE {POSITION} \
             AND {held} > {closable}"
        ),
    ];
    let values = named(order).with("side", side.as_str());
    for sql in &statements {
        db.defer(values.statement(db.get_database_backend(), sql)?)
            .await?;
    }
    Ok(())
}

/// [`fill`] on PostgreSQL, as one call of `pinnacle_paper_fill` (migration
/// `m20261214_000001_paper_books_functions`), which locks, reads and decides as [`fill`]
/// and [`Book::fill`] do: one statement instead of eight.
fn fill_call(books: &Books, after: &orders::Model, fill: &Fill) -> Result<Statement, DbErr> {
    const SQL: &str = "SELECT pinnacle_paper_fill(:order, :account, :exchange, :symbol, \
        :product, :side, :quantity, :value, :terminal, :ts_ms, :cash)";
    let side = side_of(after)?;
    named(after)
        .with("side", side.as_str())
        .with("quantity", fill.quantity)
        .with("value", fill.value)
        .with("terminal", fill.terminal)
        .with("ts_ms", after.updated_at.timestamp_millis())
        .with("cash", books.opening_cash)
        .statement(DbBackend::Postgres, SQL)
}

/// The order and its position's key, as the named values the books' SQL binds (`:order`,
/// `:account`, `:exchange`, `:symbol`, `:product`).
fn named(order: &orders::Model) -> Named {
    let (account, exchange, symbol, product) = position_key(order);
    Named::new()
        .with("order", order.id.as_str())
        .with("account", account)
        .with("exchange", exchange)
        .with("symbol", symbol)
        .with("product", product)
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
        open_cost: Set(0),
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
