//! The paper broker's books: funds, positions (long `DELIVERY` positions are the
//! holdings), reservations and trades, kept incrementally in tables, so that no read and no
//! order ever scans an account's order history.
//!
//! # How they change
//! - **Placing** ([`reserve()`], from the paper broker's `place_order`; only for an order
//!   still `SUBMITTED`, so a placer's write that waited out its lease cannot reserve for an
//!   order reconciliation has ended): an order's units
//!   first close the opposite position of the same product (held on that position row, so
//!   two sells never sell the same units), the rest open a position and reserve
//!   `units × reference price` (see [`arithmetic::reference_price`]) with a conditional
//!   `UPDATE paper_funds SET reserved = reserved + x WHERE … AND available >= x`, so
//!   concurrent orders on any worker cannot overspend. Only `INTRADAY` sells may go
//!   short; every other product sells only what it holds (`INSUFFICIENT_HOLDINGS`).
//! - **Modifying** ([`re_reserve`]): the old reservation is released and the new remaining
//!   quantity reserved in one transaction; if it does not fit, nothing changes. The
//!   reservation records the modify's terms with it, so that a modify whose worker died
//!   before recording it is known to have been taken ([`modify_taken`]).
//! - **Filling and ending** ([`apply`], called by the SQL order store's
//!   [`transition`](crate::engine::store::OrderStore::transition) inside the transaction
//!   that updates the order row and writes its outbox event): a fill consumes
//!   the order's reservation, moves the position, cash (`used`) and the short value, and
//!   records a trade; a terminal state releases what is left. A part filled at one tick's
//!   price is booked at that price (the matcher passes its exact value). A position is
//!   kept at average cost with its exact open cost (`paper_positions.open_cost`): a closing
//!   fill takes its share of that cost, so realised P&L is exact and the average price
//!   (`open_cost / |net|`, rounded down) is never built on an earlier rounded average.
//!   Held units follow the position: when a fill closes units that other orders of its
//!   side held (it had reserved cash to open, finding none free), those orders now open
//!   when they fill, so the units the side holds beyond what the position can close become
//!   their cash units, newest order first, at each one's reference price
//!   (`convert_holders`). So `sell_held ≤ max(net, 0)` and `buy_held ≤ max(−net, 0)`
//!   always hold.
//!
//! # Where the decisions are made
//! The rules are written in Rust ([`arithmetic`]): the books read the rows they change
//! (locked: the funds row first, then the position), decide, and write. Two faster forms
//! run the same rules where they can:
//! - on SQLite, where a transaction holds the one write lock from its first statement, a
//!   new order's reservation, a fill and an end decide in SQL (`reserve_in_sql`,
//!   `fill_in_sql`, `release_in_sql`), so that nothing is read before the commit and each
//!   joins the writing connection's group commit;
//! - on PostgreSQL a new order's reservation and a fill are one call each of a stored
//!   function (`pinnacle_paper_reserve`, `pinnacle_paper_fill`, in migration
//!   `m20261214_000001_paper_books_functions`) that locks, reads and decides as the Rust
//!   does, so each costs one round trip instead of six and eight.
//!
//! The Rust path remains for what the others do not cover (a modify's re-reservation, an
//! end on PostgreSQL, an in-memory SQLite database).
//! `tests::the_books_decide_the_same_in_sql_as_in_rust` holds all three to the same rows.
//!
//! # Funds
//! `available = cash − used − reserved − 2 × short_value`: an open intraday short holds
//! back its sale proceeds and the same again as margin until it is covered (`blocked` on
//! the wire is `reserved + 2 × short_value`).
//!
//! An account's first order or fill creates its funds row with
//! `PINNACLE_WORKER_PAPER_CASH` (`INSERT … ON CONFLICT DO NOTHING`).

pub mod arithmetic;
mod books;
mod fills;
mod reserve;
#[cfg(test)]
mod tests;

use pinnacle_common::entities::{paper_positions, paper_trades};
use pinnacle_common::model::{Holding, Position, Product, Trade};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

pub use arithmetic::DEFAULT_TICK_SIZE;
pub use books::{Books, PAPER_PREFIX};
pub use fills::{apply, postgres_call};
pub use reserve::{modify_taken, re_reserve, reserve, Claim, Refusal};

/// The most recent fills the trade book returns.
pub const TRADES_LIMIT: u64 = 1_000;

/// The account's positions, one row per instrument and product it has traded.
pub async fn positions(
    db: &impl ConnectionTrait,
    account_id: &str,
) -> Result<Vec<Position>, DbErr> {
    paper_positions::Entity::find()
        .filter(paper_positions::Column::AccountId.eq(account_id))
        .order_by_asc(paper_positions::Column::Exchange)
        .order_by_asc(paper_positions::Column::Symbol)
        .order_by_asc(paper_positions::Column::Product)
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            Ok(Position {
                product: parsed("product", &row.product)?,
                exchange: row.exchange,
                symbol: row.symbol,
                net_quantity: row.net_quantity,
                average_price: row.average_price,
                buy_quantity: row.buy_quantity,
                sell_quantity: row.sell_quantity,
                realized_pnl: row.realized_pnl,
            })
        })
        .collect()
}

/// The account's holdings: its long `DELIVERY` positions (paper settlement is immediate).
pub async fn holdings(db: &impl ConnectionTrait, account_id: &str) -> Result<Vec<Holding>, DbErr> {
    Ok(paper_positions::Entity::find()
        .filter(paper_positions::Column::AccountId.eq(account_id))
        .filter(paper_positions::Column::Product.eq(Product::Delivery.as_str()))
        .filter(paper_positions::Column::NetQuantity.gt(0))
        .order_by_asc(paper_positions::Column::Exchange)
        .order_by_asc(paper_positions::Column::Symbol)
        .all(db)
        .await?
        .into_iter()
        .map(|row| Holding {
            quantity: row.net_quantity,
            average_price: row.average_price.unwrap_or(0),
            exchange: row.exchange,
            symbol: row.symbol,
        })
        .collect())
}

/// The account's latest [`TRADES_LIMIT`] fills, oldest first.
pub async fn trades(db: &impl ConnectionTrait, account_id: &str) -> Result<Vec<Trade>, DbErr> {
    let mut rows = paper_trades::Entity::find()
        .filter(paper_trades::Column::AccountId.eq(account_id))
        .order_by_desc(paper_trades::Column::Id)
        .limit(TRADES_LIMIT)
        .all(db)
        .await?;
    rows.reverse();
    rows.into_iter()
        .map(|row| {
            Ok(Trade {
                product: parsed("product", &row.product)?,
                side: parsed("side", &row.side)?,
                order_id: row.order_id,
                exchange: row.exchange,
                symbol: row.symbol,
                quantity: row.quantity,
                price: row.price,
                ts_ms: row.ts_ms,
            })
        })
        .collect()
}

/// A stored enum, parsed; a corrupt value is an error, never read as a default.
fn parsed<T>(field: &str, text: &str) -> Result<T, DbErr>
where
    T: std::str::FromStr<Err = pinnacle_common::model::UnknownValue>,
{
    text.parse()
        .map_err(|e| DbErr::Custom(format!("the books hold a bad {field}: {e}")))
}
