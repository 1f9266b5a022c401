//! Opening the database: SQLite (the embedded default) or PostgreSQL, from one URL; and the
//! client span that wraps each statement on the request path.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

use crate::config::DatabaseSettings;

/// Connects with a bounded pool and SQL statement logging off (statements are logged by
/// the services' own spans, and parameters must never reach a log).
///
/// SQLite runs in WAL mode with `synchronous=NORMAL`: readers never block the writer, and
/// a commit costs no fsync (the WAL is synced at checkpoints). A crash of the process loses
/// nothing; a power cut may lose the last commits, which is why production runs
/// PostgreSQL. Writers wait up to 10 s for the lock instead of failing.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(settings.database_url.clone());
    options
        .max_connections(settings.database_max_connections.max(1))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    if settings.database_url.starts_with("sqlite:") {
        options.map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
        });
    }
    Database::connect(options).await
}

/// A client span for one statement (or one short transaction), exported as
/// `<OPERATION> <table>` with the OpenTelemetry database attributes. It never carries the
/// statement's parameters.
pub fn span(
    db: &impl ConnectionTrait,
    operation: &'static str,
    table: &'static str,
) -> tracing::Span {
    let system = match db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgresql",
        DbBackend::MySql => "mysql",
    };
    tracing::info_span!(
        "db.query",
        otel.name = %format_args!("{operation} {table}"),
        otel.kind = "client",
        db.system.name = system,
        db.operation.name = operation,
        db.collection.name = table,
    )
}
