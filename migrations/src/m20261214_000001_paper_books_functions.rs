//! The paper books' transactions as PostgreSQL functions, so that each is one call instead
//! of up to eight statements: `pinnacle_paper_reserve` (a new order's reservation, in a
//! transaction of its own), `pinnacle_paper_fill` (a fill's books) and
//! `pinnacle_paper_release` (an end's), both inside the statement of the order's state
//! change. They lock, read and decide exactly as the Rust they replace on PostgreSQL
//! (`order-worker/src/engine/ledger`: `reserve_in`, `fill`, `Book::fill`, `release_in`,
//! which in-memory SQLite still runs), with 64-bit saturation where the Rust saturates;
//! `ledger::tests::the_books_decide_the_same_in_sql_as_in_rust` compares every row after
//! each of its random steps.
//!
//! `pinnacle_paper_fill` as written here is replaced by `m20261217_000001_exact_fill_values`
//! (positions kept at exact cost); this one is what that migration's `down` restores.
//!
//! Locks are taken in the books' one order (the account's funds row, then the position), so
//! they never deadlock with the books' other transactions. SQLite has no stored functions:
//! there the statements themselves decide (`reserve_in_sql`, `fill_in_sql`), and nothing
//! changes.

use sea_orm_migration::prelude::*;

/// Creates the functions on PostgreSQL.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, &[SATURATE, RESERVE, FILL, RELEASE]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(
            manager,
            &[
                "DROP FUNCTION IF EXISTS pinnacle_paper_release(text, text, text, text, boolean); \
             DROP FUNCTION IF EXISTS pinnacle_paper_fill(text, text, text, text, text, text, \
             bigint, bigint, boolean, bigint, bigint); \
             DROP FUNCTION IF EXISTS pinnacle_paper_reserve(text, text, text, text, text, \
             boolean, boolean, bigint, bigint, bigint); \
             DROP FUNCTION IF EXISTS pinnacle_i64(numeric)",
            ],
        )
        .await
    }
}

/// A value clamped to 64 bits, as Rust's saturating arithmetic leaves it (NULL stays NULL).
/// Not `STRICT`, so that the planner can inline it into the expression that calls it
/// instead of running a function (a call costs about 15 µs); it does so only for a cheap
/// argument (its body reads `v` three times), so callers pass a variable or one
/// operation, never a nested call.
const SATURATE: &str = r"
CREATE OR REPLACE FUNCTION pinnacle_i64(v numeric) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (CASE WHEN v > 9223372036854775807 THEN 9223372036854775807
        WHEN v < -9223372036854775808 THEN -9223372036854775808 ELSE v END)::bigint
$$";

/// A new order's reservation (`reserve_in` with `split` and `refusal`): the units that
/// close the opposite position are held on it, the rest reserve `units × price` of cash.
/// Returns one row: `refused` is NULL when it was reserved, else `holdings` (`required`
/// units to sell, `available` free) or `funds` (`required` and `available` paise), and
/// nothing was written (a funds row this call created is removed again, as a rollback
/// would).
const RESERVE: &str = r"
CREATE OR REPLACE FUNCTION pinnacle_paper_reserve(
    p_order text, p_account text, p_exchange text, p_symbol text, p_product text,
    p_sell boolean, p_may_open boolean, p_units bigint, p_price bigint, p_opening_cash bigint,
    OUT refused text, OUT required bigint, OUT available bigint)
LANGUAGE plpgsql AS $$
DECLARE
    f paper_funds;
    v_inserted integer := 0;
    v_blocked bigint;
    v_net bigint := 0;
    v_buy_held bigint := 0;
    v_sell_held bigint := 0;
    v_held bigint;
    v_opening bigint;
    v_amount bigint;
BEGIN
    -- The account's lock, creating its funds row first if it has none.
    SELECT * INTO f FROM paper_funds WHERE account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO paper_funds (account_id, cash, used, reserved, short_value)
            VALUES (p_account, p_opening_cash, 0, 0, 0)
            ON CONFLICT (account_id) DO NOTHING;
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        SELECT * INTO STRICT f FROM paper_funds WHERE account_id = p_account FOR UPDATE;
    END IF;
    SELECT net_quantity, buy_held, sell_held INTO v_net, v_buy_held, v_sell_held
        FROM paper_positions
        WHERE account_id = p_account AND exchange = p_exchange AND symbol = p_symbol
            AND product = p_product
        FOR UPDATE;
    IF NOT FOUND THEN
        v_net := 0; v_buy_held := 0; v_sell_held := 0;
    END IF;
    v_held := GREATEST(LEAST(p_units, GREATEST(
        CASE WHEN p_sell THEN v_net - v_sell_held ELSE -v_net - v_buy_held END, 0)), 0);
    v_opening := p_units - v_held;
    IF v_opening > 0 AND NOT p_may_open THEN
        refused := 'holdings'; required := p_units; available := v_held;
    END IF;
    IF refused IS NULL THEN
        v_amount := pinnacle_i64(v_opening::numeric * p_price);
        -- funds_of, a saturating step at a time (each call's argument kept simple, so that
        -- the planner inlines it).
        v_blocked := pinnacle_i64(f.short_value * 2::numeric);
        v_blocked := pinnacle_i64(f.reserved::numeric + v_blocked);
        available := pinnacle_i64(f.cash::numeric - f.used);
        available := pinnacle_i64(available::numeric - v_blocked);
        IF v_amount > 0 AND v_amount > available THEN
            refused := 'funds'; required := v_amount;
        END IF;
    END IF;
    IF refused IS NOT NULL THEN
        IF v_inserted = 1 THEN
            DELETE FROM paper_funds WHERE account_id = p_account;
        END IF;
        RETURN;
    END IF;
    IF v_held > 0 THEN
        UPDATE paper_positions SET
            buy_held = buy_held + CASE WHEN p_sell THEN 0 ELSE v_held END,
            sell_held = sell_held + CASE WHEN p_sell THEN v_held ELSE 0 END
            WHERE account_id = p_account AND exchange = p_exchange AND symbol = p_symbol
                AND product = p_product;
    END IF;
    IF v_amount > 0 THEN
        UPDATE paper_funds SET reserved = reserved + v_amount WHERE account_id = p_account;
    END IF;
    INSERT INTO paper_reservations (order_id, account_id, unit_price, cash_units, held_units)
        VALUES (p_order, p_account, p_price, v_opening, v_held);
    available := NULL;
END
$$";

/// A fill of `p_quantity` units worth `p_value` paise (`fill` and `Book::fill`): the
/// reservation gives back what the fill took (held units first, then cash units; all of it
/// when `p_terminal`), cash moves by the value, the position by the fill (average price,
/// realised P&L, a flip through zero), the open short's value is kept on the funds row,
/// and the trade is recorded.
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
    v_price bigint := p_value / p_quantity;
    v_signed bigint;
    v_total bigint;
    v_avg bigint;
    v_next_avg bigint;
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
                average_price, buy_quantity, sell_quantity, buy_value, sell_value,
                realized_pnl, buy_held, sell_held)
            VALUES (p_account, p_exchange, p_symbol, p_product, 0, NULL, 0, 0, 0, 0, 0, 0, 0)
            ON CONFLICT DO NOTHING;
        SELECT * INTO STRICT p FROM paper_positions
            WHERE account_id = p_account AND exchange = p_exchange AND symbol = p_symbol
                AND product = p_product
            FOR UPDATE;
    END IF;
    v_short_before := CASE WHEN p.net_quantity < 0
        THEN pinnacle_i64(-p.net_quantity::numeric * COALESCE(p.average_price, 0)) ELSE 0 END;
    v_signed := CASE WHEN v_sell THEN -p_quantity ELSE p_quantity END;
    v_avg := COALESCE(p.average_price, 0);
    v_total := p.net_quantity + v_signed;
    IF p.net_quantity = 0 OR sign(p.net_quantity::numeric) = sign(v_signed::numeric) THEN
        v_n := div(v_avg::numeric * abs(p.net_quantity) + p_value, GREATEST(abs(v_total), 1));
        v_next_avg := pinnacle_i64(v_n);
    ELSE
        v_n := LEAST(abs(v_signed), abs(p.net_quantity))::numeric
            * (v_price::numeric - v_avg) * sign(p.net_quantity::numeric);
        v_pnl := pinnacle_i64(v_n);
        v_next_avg := CASE WHEN sign(v_total::numeric) = sign(p.net_quantity::numeric) THEN v_avg
            ELSE v_price END;
    END IF;
    v_short_after := CASE WHEN v_total < 0
        THEN pinnacle_i64(-v_total::numeric * v_next_avg) ELSE 0 END;
    UPDATE paper_positions SET
        net_quantity = v_total,
        average_price = CASE WHEN v_total <> 0 THEN v_next_avg END,
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
            v_price, p_ts_ms);
END
$$";

/// What an order that ends holds is given back (`release_in`): the reservation's cash to
/// the funds, its held units to the position, and the row goes. Nothing when the order
/// has no reservation. The reservation is read again once the account's funds row is
/// locked: a modify's re-reservation of the same order, which holds that lock while it
/// replaces the row, is then either over or not begun.
const RELEASE: &str = r"
CREATE OR REPLACE FUNCTION pinnacle_paper_release(
    p_order text, p_exchange text, p_symbol text, p_product text, p_sell boolean)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r paper_reservations;
    v_amount bigint;
BEGIN
    SELECT * INTO r FROM paper_reservations WHERE order_id = p_order;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM paper_funds WHERE account_id = r.account_id FOR UPDATE;
    SELECT * INTO r FROM paper_reservations WHERE order_id = p_order;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_amount := pinnacle_i64(r.cash_units::numeric * r.unit_price);
    IF v_amount <> 0 THEN
        UPDATE paper_funds SET reserved = reserved - v_amount WHERE account_id = r.account_id;
    END IF;
    IF r.held_units <> 0 THEN
        UPDATE paper_positions SET
            buy_held = buy_held - CASE WHEN p_sell THEN 0 ELSE r.held_units END,
            sell_held = sell_held - CASE WHEN p_sell THEN r.held_units ELSE 0 END
            WHERE account_id = r.account_id AND exchange = p_exchange AND symbol = p_symbol
                AND product = p_product;
    END IF;
    DELETE FROM paper_reservations WHERE order_id = p_order;
END
$$";
