//! The database pool against a real PostgreSQL server: a connection the server dropped (a
//! restart, an administrator's `pg_terminate_backend`, a failover) is replaced before its
//! next use, however recently it was used, so the statement that comes after succeeds
//! instead of failing on a dead socket.

use std::time::Duration;

use pinnacle_common::config::DatabaseSettings;
use pinnacle_common::db;
use pinnacle_tests::{backends, Backend, TestDb};
use sea_orm::{ConnectionTrait as _, DatabaseConnection, Statement};

/// The server process behind the connection a statement ran on.
async fn backend_pid(db: &DatabaseConnection) -> Result<i32, sea_orm::DbErr> {
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT pg_backend_pid() AS pid",
        ))
        .await?
        .expect("one row");
    row.try_get("", "pid")
}

#[tokio::test]
async fn a_postgres_connection_the_server_dropped_is_replaced_before_its_next_use() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let test_db = TestDb::create(Backend::Postgres).await;
    // Both spellings of the scheme; the connection dropped a moment after its last use (a
    // pool that pinged only connections idle for a second failed here) and long after.
    let other = test_db.url.replacen("postgres://", "postgresql://", 1);
    for url in [test_db.url.clone(), other] {
        for idle in [Duration::from_millis(100), Duration::from_millis(1_200)] {
            let pool = db::connect(&DatabaseSettings {
                database_url: url.clone(),
                database_max_connections: 1,
            })
            .await
            .expect("connects");
            let first = backend_pid(&pool).await.expect("a statement runs");
            // The server closes every connection to the database, as a restart does.
            test_db.outage(Duration::ZERO).await;
            tokio::time::sleep(idle).await;
            let second = backend_pid(&pool).await.unwrap_or_else(|e| {
                panic!("{url}, {idle:?} after: the statement after the server dropped the connection: {e}")
            });
            assert_ne!(first, second, "on a new connection");
            pool.close().await.expect("closes");
        }
    }
}

/// Runs `sql` on `db` (a pool or a transaction).
async fn run(
    db: &impl sea_orm::ConnectionTrait,
    sql: &str,
) -> Result<sea_orm::ExecResult, sea_orm::DbErr> {
    db.execute(Statement::from_string(db.get_database_backend(), sql))
        .await
}

#[tokio::test]
async fn a_postgres_transaction_left_idle_by_a_paused_client_frees_its_locks() {
    use sea_orm::TransactionTrait as _;

    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let test_db = TestDb::create(Backend::Postgres).await;
    let settings = DatabaseSettings {
        database_url: test_db.url.clone(),
        database_max_connections: 2,
    };
    // Two processes' pools on one database.
    let paused = db::connect(&settings).await.expect("connects");
    let other = db::connect(&settings).await.expect("connects");
    run(
        &other,
        "CREATE TABLE funds (id INT PRIMARY KEY, cash INT NOT NULL)",
    )
    .await
    .expect("create");
    run(&other, "INSERT INTO funds VALUES (1, 100)")
        .await
        .expect("insert");

    // The first takes the row's lock in a transaction, then stops sending anything, as a
    // process does when it is paused mid-transaction.
    let txn = paused.begin().await.expect("begin");
    run(&txn, "UPDATE funds SET cash = cash - 1 WHERE id = 1")
        .await
        .expect("the lock");

    // The other waits for the lock only until the server ends the idle transaction.
    let started = std::time::Instant::now();
    tokio::time::timeout(
        db::IDLE_IN_TRANSACTION_TIMEOUT + Duration::from_secs(5),
        run(&other, "UPDATE funds SET cash = cash - 10 WHERE id = 1"),
    )
    .await
    .expect("the lock is freed")
    .expect("the update runs");
    assert!(
        started.elapsed() >= db::IDLE_IN_TRANSACTION_TIMEOUT - Duration::from_millis(200),
        "it did wait for the lock: {:?}",
        started.elapsed()
    );

    // The paused one's transaction was rolled back: its commit fails, and nothing of it
    // stays.
    assert!(txn.commit().await.is_err(), "the ended transaction commits");
    let row = other
        .query_one(Statement::from_string(
            other.get_database_backend(),
            "SELECT cash FROM funds WHERE id = 1",
        ))
        .await
        .expect("read")
        .expect("row");
    assert_eq!(row.try_get::<i32>("", "cash").expect("cash"), 90);
    // And its pool serves the next statement on a new connection.
    backend_pid(&paused).await.expect("a statement runs");
}
