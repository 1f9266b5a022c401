//! The database pool against a real PostgreSQL server: a connection the server dropped
//! while it sat idle is replaced before its next use, so the statement that comes after a
//! server restart succeeds instead of failing on a dead socket.

use std::time::Duration;

use pinnacle_common::config::DatabaseSettings;
use pinnacle_common::db::{self, PING_IDLE_AFTER};
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
async fn a_postgres_connection_dropped_while_idle_is_replaced_before_its_next_use() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let test_db = TestDb::create(Backend::Postgres).await;
    // Both spellings of the scheme get the same pool.
    let other = test_db.url.replacen("postgres://", "postgresql://", 1);
    for url in [test_db.url.clone(), other] {
        let pool = db::connect(&DatabaseSettings {
            database_url: url.clone(),
            database_max_connections: 1,
        })
        .await
        .expect("connects");
        let first = backend_pid(&pool).await.expect("a statement runs");
        // The server closes every connection to the database, as a restart does.
        test_db.outage(Duration::ZERO).await;
        tokio::time::sleep(PING_IDLE_AFTER + Duration::from_millis(200)).await;
        let second = backend_pid(&pool).await.unwrap_or_else(|e| {
            panic!("{url}: the statement after the server dropped the idle connection: {e}")
        });
        assert_ne!(first, second, "on a new connection");
        pool.close().await.expect("closes");
    }
}
