//! Held units follow the position. An order that closes a position holds the units it
//! will close (`paper_positions.buy_held`/`sell_held`, `paper_reservations.held_units`)
//! and reserves no cash for them. When another order's fill closes those units first
//! (a market sell against a long that a resting sell already held), the holder would
//! later open a position with nothing reserved. From this step a fill that leaves its
//! side holding more units than the position can close turns the excess into cash units
//! of the holders, newest order first, at each one's reference price
//! (`order-worker/src/engine/ledger/fills.rs`, `convert_holders`).
//!
//! On PostgreSQL `pinnacle_paper_fill` is replaced by one that does so. On both databases
//! the books are repaired once: every position whose held units exceed what it can close
//! has the excess converted the same way.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

/// Replaces the fill function and repairs positions that hold more than they can close.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, &[FILL]).await?;
        repair(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, &[crate::m20261217_000001_exact_fill_values::FILL]).await
    }
}

/// Converts, for every position and side holding more units than the position can close,
/// the excess held units of that side's reservations into cash units (newest order first)
/// and reserves their cash, as a fill now does.
async fn repair(db: &SchemaManagerConnection<'_>) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let over = db
        .query_all(Statement::from_string(
            backend,
            "SELECT account_id, exchange, symbol, product, \
             sell_held - CASE WHEN net_quantity > 0 THEN net_quantity ELSE 0 END AS sells, \
             buy_held - CASE WHEN net_quantity < 0 THEN -net_quantity ELSE 0 END AS buys \
             FROM paper_positions WHERE \
             sell_held > CASE WHEN net_quantity > 0 THEN net_quantity ELSE 0 END \
             OR buy_held > CASE WHEN net_quantity < 0 THEN -net_quantity ELSE 0 END",
        ))
        .await?;
    for row in over {
        let key: [String; 4] = [
            row.try_get("", "account_id")?,
            row.try_get("", "exchange")?,
            row.try_get("", "symbol")?,
            row.try_get("", "product")?,
        ];
        for (side, column, excess) in [
            ("SELL", "sell_held", row.try_get::<i64>("", "sells")?),
            ("BUY", "buy_held", row.try_get::<i64>("", "buys")?),
        ] {
            if excess > 0 {
                convert(db, &key, side, excess).await?;
                let clamp = format!(
                    "UPDATE paper_positions SET {column} = {column} - {excess} \
                     WHERE account_id = $1 AND exchange = $2 AND symbol = $3 AND product = $4"
                );
                db.execute(statement(backend, &clamp, &key, &[])).await?;
            }
        }
    }
    Ok(())
}

/// Converts `excess` held units of `side`'s reservations on the position `key`.
async fn convert(
    db: &SchemaManagerConnection<'_>,
    key: &[String; 4],
    side: &str,
    mut excess: i64,
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let holders = db
        .query_all(statement(
            backend,
            "SELECT r.order_id, r.unit_price, r.held_units \
             FROM paper_reservations AS r JOIN orders AS o ON o.id = r.order_id \
             WHERE r.account_id = $1 AND o.exchange = $2 AND o.symbol = $3 \
             AND o.product = $4 AND o.side = $5 AND r.held_units > 0",
            key,
            &[side.into()],
        ))
        .await?;
    let mut holders = holders
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<String>("", "order_id")?,
                row.try_get::<i64>("", "unit_price")?,
                row.try_get::<i64>("", "held_units")?,
            ))
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    holders.sort_by(|a, b| b.0.cmp(&a.0));
    let mut cash = 0_i64;
    for (order_id, unit_price, held) in holders {
        if excess <= 0 {
            break;
        }
        let take = held.min(excess);
        excess -= take;
        cash = cash.saturating_add(take.saturating_mul(unit_price));
        db.execute(Statement::from_sql_and_values(
            backend,
            placeholders(
                backend,
                "UPDATE paper_reservations SET held_units = held_units - $1, \
                 cash_units = cash_units + $1 WHERE order_id = $2",
            ),
            [take.into(), order_id.into()],
        ))
        .await?;
    }
    if cash != 0 {
        db.execute(Statement::from_sql_and_values(
            backend,
            placeholders(
                backend,
                "UPDATE paper_funds SET reserved = reserved + $1 WHERE account_id = $2",
            ),
            [cash.into(), key[0].clone().into()],
        ))
        .await?;
    }
    Ok(())
}

/// `sql` (written with `$1`…) bound to the position key, then `more`.
fn statement(
    backend: sea_orm_migration::sea_orm::DbBackend,
    sql: &str,
    key: &[String; 4],
    more: &[sea_orm_migration::sea_orm::Value],
) -> Statement {
    let values = key
        .iter()
        .map(|k| k.clone().into())
        .chain(more.iter().cloned())
        .collect::<Vec<_>>();
    Statement::from_sql_and_values(backend, placeholders(backend, sql), values)
}

/// `$n` placeholders as the backend takes them: SQLite accepts `?n` with the same numbers.
fn placeholders(backend: sea_orm_migration::sea_orm::DbBackend, sql: &str) -> String {
    match backend {
        sea_orm_migration::sea_orm::DbBackend::Postgres => sql.to_string(),
        _ => sql.replace('$', "?"),
    }
}

/// A fill (`fill` and `Book::fill`), as `m20261217_000001_exact_fill_values` wrote it, and
/// then: units the fill's side still holds beyond what the position can close become cash
/// units of the orders that held them (`convert_holders`).
const FILL: &str = r#"
CREATE OR REPLACE FUNCTION pinnacle_paper_fill(
    p_order text, p_account text, p_exchange text, p_symbol text, p_product text,
    p_side text, p_quantity bigint, p_value bigint, p_terminal boolean, p_ts_ms bigint,
    p_opening_cash bigint)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r paper_reservations;
    p paper_positions;
    v_reserved boolean;
    v_sell boolean := p_side = 'SELL';
    v_held bigint := 0;
    v_cash bigint := 0;
    v_unit_price bigint := 0;
    v_signed bigint;
    v_total bigint;
    v_closed bigint;
    v_removed bigint;
    v_closed_value bigint;
    v_cost bigint;
    v_pnl bigint := 0;
    v_n numeric;
    v_short_before bigint;
    v_short_after bigint;
    v_overflow bigint;
    v_take bigint;
    v_converted numeric := 0;
    h record;
BEGIN
    -- The account's lock, creating its funds row first if it has none.
    PERFORM 1 FROM paper_funds WHERE account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO paper_funds (account_id, cash, used, reserved, short_value)
            VALUES (p_account, p_opening_cash, 0, 0, 0)
            ON CONFLICT (account_id) DO NOTHING;
        PERFORM 1 FROM paper_funds WHERE account_id = p_account FOR UPDATE;
    END IF;
    SELECT * INTO r FROM paper_reservations WHERE order_id = p_order;
    v_reserved := FOUND;
    IF v_reserved THEN
        v_unit_price := r.unit_price;
        IF p_terminal THEN
            v_held := r.held_units;
            v_cash := r.cash_units;
        ELSE
            v_held := LEAST(p_quantity, r.held_units);
            v_cash := LEAST(p_quantity - v_held, r.cash_units);
        END IF;
    END IF;
    UPDATE paper_funds SET
        used = used + CASE WHEN v_sell THEN -p_value ELSE p_value END,
        reserved = reserved - pinnacle_i64(v_cash::numeric * v_unit_price)
        WHERE account_id = p_account;

    SELECT * INTO p FROM paper_positions
        WHERE account_id = p_account AND exchange = p_exchange AND symbol = p_symbol
            AND product = p_product
        FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO paper_positions (account_id, exchange, symbol, product, net_quantity,
                average_price, open_cost, buy_quantity, sell_quantity, buy_value, sell_value,
                realized_pnl, buy_held, sell_held)
            VALUES (p_account, p_exchange, p_symbol, p_product, 0, NULL, 0, 0, 0, 0, 0, 0, 0,
                0)
            ON CONFLICT DO NOTHING;
        SELECT * INTO STRICT p FROM paper_positions
            WHERE account_id = p_account AND exchange = p_exchange AND symbol = p_symbol
                AND product = p_product
            FOR UPDATE;
    END IF;
    v_short_before := CASE WHEN p.net_quantity < 0 THEN p.open_cost ELSE 0 END;
    v_signed := CASE WHEN v_sell THEN -p_quantity ELSE p_quantity END;
    v_total := p.net_quantity + v_signed;
    IF p.net_quantity = 0 OR sign(p.net_quantity::numeric) = sign(v_signed::numeric) THEN
        v_cost := pinnacle_i64(p.open_cost::numeric + p_value);
    ELSE
        v_closed := LEAST(p_quantity, abs(p.net_quantity));
        v_n := div(p.open_cost::numeric * v_closed, abs(p.net_quantity));
        v_removed := pinnacle_i64(v_n);
        v_n := div(p_value::numeric * v_closed, p_quantity);
        v_closed_value := pinnacle_i64(v_n);
        v_n := (v_closed_value::numeric - v_removed) * sign(p.net_quantity::numeric);
        v_pnl := pinnacle_i64(v_n);
        v_cost := CASE WHEN v_total = 0 THEN 0
            WHEN sign(v_total::numeric) = sign(p.net_quantity::numeric)
                THEN p.open_cost - v_removed
            ELSE p_value - v_closed_value END;
    END IF;
    v_short_after := CASE WHEN v_total < 0 THEN v_cost ELSE 0 END;
    UPDATE paper_positions SET
        net_quantity = v_total,
        open_cost = v_cost,
        average_price = CASE WHEN v_total <> 0 THEN v_cost / abs(v_total) END,
        buy_quantity = buy_quantity + CASE WHEN v_sell THEN 0 ELSE p_quantity END,
        sell_quantity = sell_quantity + CASE WHEN v_sell THEN p_quantity ELSE 0 END,
        buy_value = CASE WHEN v_sell THEN buy_value
            ELSE pinnacle_i64(buy_value::numeric + p_value) END,
        sell_value = CASE WHEN v_sell THEN pinnacle_i64(sell_value::numeric + p_value)
            ELSE sell_value END,
        realized_pnl = pinnacle_i64(realized_pnl::numeric + v_pnl),
        buy_held = GREATEST(0, buy_held - CASE WHEN v_sell THEN 0 ELSE v_held END),
        sell_held = GREATEST(0, sell_held - CASE WHEN v_sell THEN v_held ELSE 0 END)
        WHERE account_id = p_account AND exchange = p_exchange AND symbol = p_symbol
            AND product = p_product;
    IF v_short_after <> v_short_before THEN
        UPDATE paper_funds SET short_value = short_value + (v_short_after - v_short_before)
            WHERE account_id = p_account;
    END IF;

    IF v_reserved THEN
        IF r.cash_units - v_cash <= 0 AND r.held_units - v_held <= 0 THEN
            DELETE FROM paper_reservations WHERE order_id = p_order;
        ELSE
            UPDATE paper_reservations SET cash_units = r.cash_units - v_cash,
                held_units = r.held_units - v_held
                WHERE order_id = p_order;
        END IF;
    END IF;
    -- Units other orders of this side held to close, beyond what the position can now
    -- close, become cash units of theirs (newest order first, at each one's price).
    v_overflow := CASE WHEN v_sell
        THEN GREATEST(0, p.sell_held - v_held) - GREATEST(v_total, 0)
        ELSE GREATEST(0, p.buy_held - v_held) - GREATEST(-v_total, 0) END;
    IF v_overflow > 0 THEN
        FOR h IN SELECT x.order_id, x.unit_price, x.held_units
            FROM paper_reservations AS x JOIN orders AS o ON o.id = x.order_id
            WHERE x.account_id = p_account AND x.order_id <> p_order AND x.held_units > 0
                AND o.exchange = p_exchange AND o.symbol = p_symbol
                AND o.product = p_product AND o.side = p_side
            ORDER BY x.order_id COLLATE "C" DESC
            FOR UPDATE OF x
        LOOP
            EXIT WHEN v_overflow <= 0;
            v_take := LEAST(h.held_units, v_overflow);
            v_overflow := v_overflow - v_take;
            v_converted := v_converted + pinnacle_i64(v_take::numeric * h.unit_price);
            UPDATE paper_reservations SET held_units = held_units - v_take,
                cash_units = cash_units + v_take
                WHERE order_id = h.order_id;
        END LOOP;
        IF v_converted <> 0 THEN
            UPDATE paper_funds SET reserved = pinnacle_i64(reserved::numeric + v_converted)
                WHERE account_id = p_account;
        END IF;
        UPDATE paper_positions SET
            buy_held = LEAST(buy_held, GREATEST(-v_total, 0)),
            sell_held = LEAST(sell_held, GREATEST(v_total, 0))
            WHERE account_id = p_account AND exchange = p_exchange AND symbol = p_symbol
                AND product = p_product;
    END IF;

    INSERT INTO paper_trades (account_id, order_id, exchange, symbol, product, side, quantity,
            price, ts_ms)
        VALUES (p_account, p_order, p_exchange, p_symbol, p_product, p_side, p_quantity,
            p_value / p_quantity, p_ts_ms);
END
$$"#;
