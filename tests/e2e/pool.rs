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
