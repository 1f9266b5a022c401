//! The schema's migrations, on SQLite and PostgreSQL: every one can be rolled back and
//! applied again over what its rollback left, and rolling them all back leaves no table
//! and no function behind.

use pinnacle_migrations::{Migrator, MigratorTrait};
use pinnacle_tests::Backend;
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::each_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_migration_rolls_back_and_applies_again() {
    each_backend(|backend| async move {
        let test_db = pinnacle_tests::TestDb::create(backend).await;
        let db = Database::connect(test_db.url.as_str())
            .await
            .expect("connect");
        Migrator::up(&db, None).await.expect("up");
        let applied = Migrator::get_applied_migrations(&db)
            .await
            .expect("applied")
            .len();
        assert_eq!(applied, Migrator::migrations().len());
        // One at a time, newest first, each applied again before the next goes, then all.
        for step in 1..=u32::try_from(applied).expect("few") {
            Migrator::down(&db, Some(step))
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: rolling back {step}: {e}"));
            Migrator::up(&db, None)
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: applying {step} again: {e}"));
        }
        Migrator::down(&db, None).await.expect("every rollback");
        assert!(Migrator::get_applied_migrations(&db)
            .await
            .expect("applied")
            .is_empty());
        // Nothing is left behind: no table but the migrations' own, no function.
        let left = match backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations'"
            }
            Backend::Postgres => {
                "SELECT table_name AS name FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_name <> 'seaql_migrations' \
                 UNION ALL SELECT proname FROM pg_proc \
                 WHERE pronamespace = 'public'::regnamespace"
            }
        };
        let rows = db
            .query_all(Statement::from_string(db.get_database_backend(), left))
            .await
            .expect("what is left");
        let names: Vec<String> = rows
            .iter()
            .map(|row| row.try_get("", "name").expect("name"))
            .collect();
        assert!(names.is_empty(), "{backend:?}: left behind: {names:?}");
        Migrator::up(&db, None).await.expect("up again");
        let _ = db.close().await;
    })
    .await;
}

/// `m20261218_000001_held_units_follow_fills` repairs books written before it: a position
/// whose sells hold more units than it can close (here 100 held against a long of 30) has
/// the excess turned into cash units of the holders, newest order first, and their cash
/// reserved; the other side and other accounts are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_units_beyond_the_position_are_repaired_into_cash() {
    each_backend(|backend| async move {
        let test_db = pinnacle_tests::TestDb::create(backend).await;
        let db = Database::connect(test_db.url.as_str())
            .await
            .expect("connect");
        let before = Migrator::migrations()
            .iter()
            .position(|m| m.name() == "m20261218_000001_held_units_follow_fills")
            .expect("the repair is a migration");
        let before = u32::try_from(before).expect("few");
        Migrator::up(&db, Some(before))
            .await
            .expect("up to the one before");
        let now = "'2026-12-07T10:00:00+00:00'";
        let order = |id: &str, side: &str| {
            format!(
                "INSERT INTO orders (id, user_id, broker_account_id, client_order_id, exchange, \
                 symbol, side, order_type, quantity, price, product, status, filled_quantity, \
                 broker_order_id, created_at, updated_at) VALUES ('{id}', 'u', 'acct', '{id}', \
                 'NSE', 'SYM', '{side}', 'LIMIT', 100, 100, 'INTRADAY', 'OPEN', 0, \
                 'PAPER-{id}', {now}, {now})"
            )
        };
        let statements = [
            format!(
                "INSERT INTO users (id, name, is_admin, created_at) VALUES ('u', 'u', false, {now})"
            ),
            format!(
                "INSERT INTO broker_accounts (id, user_id, label, broker, generation, \
                 created_at, updated_at) VALUES ('acct', 'u', 'paper', 'paper', 1, {now}, {now})"
            ),
            order("o-a", "SELL"),
            order("o-b", "SELL"),
            order("o-c", "BUY"),
            "INSERT INTO paper_funds (account_id, cash, used, reserved, short_value) \
             VALUES ('acct', 1000000, 3000, 500, 0)"
                .into(),
            "INSERT INTO paper_positions (account_id, exchange, symbol, product, net_quantity, \
             average_price, open_cost, buy_quantity, sell_quantity, buy_value, sell_value, \
             realized_pnl, buy_held, sell_held) VALUES ('acct', 'NSE', 'SYM', 'INTRADAY', 30, \
             100, 3000, 130, 100, 13000, 11000, 1000, 0, 100)"
                .into(),
            "INSERT INTO paper_reservations (order_id, account_id, unit_price, cash_units, \
             held_units) VALUES ('o-a', 'acct', 120, 0, 60), ('o-b', 'acct', 130, 0, 40), \
             ('o-c', 'acct', 100, 5, 0)"
                .into(),
        ];
        for sql in statements {
            db.execute_unprepared(&sql)
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: {sql}: {e}"));
        }
        Migrator::up(&db, None).await.expect("the repair");

        let query = |sql: &'static str| {
            let db = &db;
            async move {
                db.query_all(Statement::from_string(db.get_database_backend(), sql))
                    .await
                    .expect("query")
            }
        };
        let reservations: Vec<(String, i64, i64)> = query(
            "SELECT order_id, cash_units, held_units FROM paper_reservations ORDER BY order_id",
        )
        .await
        .iter()
        .map(|r| {
            (
                r.try_get("", "order_id").expect("id"),
                r.try_get("", "cash_units").expect("cash"),
                r.try_get("", "held_units").expect("held"),
            )
        })
        .collect();
        // 70 units too many: the newest holder gives up its 40, the older one 30 of 60.
        assert_eq!(
            reservations,
            [
                ("o-a".to_string(), 30, 30),
                ("o-b".to_string(), 40, 0),
                ("o-c".to_string(), 5, 0)
            ],
            "{backend:?}"
        );
        let held = &query("SELECT buy_held, sell_held FROM paper_positions").await[0];
        let held: (i64, i64) = (
            held.try_get("", "buy_held").expect("buy"),
            held.try_get("", "sell_held").expect("sell"),
        );
        assert_eq!(held, (0, 30), "{backend:?}");
        let reserved: i64 = query("SELECT reserved FROM paper_funds").await[0]
            .try_get("", "reserved")
            .expect("reserved");
        assert_eq!(reserved, 500 + 30 * 120 + 40 * 130, "{backend:?}");
        let _ = db.close().await;
    })
    .await;
}
