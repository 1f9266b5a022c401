//! Exact fill values, so that no average is built on a rounded average:
//! - `orders.filled_value`: the value of an order's filled units, paise, where Pinnacle
//!   knows each part's value (the paper broker); its average price is
//!   `filled_value / filled_quantity`, rounded down once, instead of a running average
//!   rounded at every part;
//! - `paper_positions.open_cost`: what a position's open units cost (a short's: what they
//!   were sold for). A closing fill takes its share of it, so realised P&L no longer drifts
//!   with the rounded average price; the position's average is derived from it.
//!
//! On PostgreSQL `pinnacle_paper_fill` is replaced by the same arithmetic
//! (`order-worker/src/engine/ledger/arithmetic.rs`, `Book::fill`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null};

/// Adds the columns; an open position's cost starts at `|net| × average` (its best
/// figure), an order's filled value unknown (its average stands until it fills again).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    FilledValue,
}

#[derive(DeriveIden)]
enum PaperPositions {
    Table,
    OpenCost,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(big_integer_null(Orders::FilledValue))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PaperPositions::Table)
                    .add_column(big_integer(PaperPositions::OpenCost).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE paper_positions \
                 SET open_cost = ABS(net_quantity) * COALESCE(average_price, 0)",
            )
            .await?;
        crate::on_postgres(manager, &[FILL]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(
            manager,
            &[crate::m20261214_000001_paper_books_functions::FILL],
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PaperPositions::Table)
                    .drop_column(PaperPositions::OpenCost)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::FilledValue)
                    .to_owned(),
            )
            .await
    }
}

/// A fill of `p_quantity` units worth `p_value` paise (`fill` and `Book::fill`): the
/// reservation gives back what the fill took (held units first, then cash units; all of it
/// when `p_terminal`), cash moves by the value, the position by the fill at average cost
/// (the open cost grows when opening; closed units take their share of it and book their
/// value less that share; a flip opens the rest at its share of the value), the open
/// short's value (its open cost) is kept on the funds row, and the trade is recorded.
pub(crate) const FILL: &str = r"
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
    INSERT INTO paper_trades (account_id, order_id, exchange, symbol, product, side, quantity,
            price, ts_ms)
        VALUES (p_account, p_order, p_exchange, p_symbol, p_product, p_side, p_quantity,
            p_value / p_quantity, p_ts_ms);
END
$$";
