//! Opening the database: SQLite (the embedded default) or PostgreSQL, from one URL; and the
//! client span that wraps each statement on the request path.
//!
//! A SQLite file holds sealed credentials, token hashes and the order book, so it is
//! created owner-only (0600) whatever the umask, and an existing file (with its `-wal`,
//! `-shm` and `-journal` companions) is tightened to 0600 before it is opened. SQLite
//! gives the companions the main file's mode when it creates them.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr,
};

use crate::settings::{password_span, DatabaseSettings};

/// Connects with a bounded pool and SQL statement logging off (statements are logged by
/// the services' own spans, and parameters must never reach a log).
///
/// SQLite runs in WAL mode with `synchronous=NORMAL`: readers never block the writer, and
/// a commit costs no fsync (the WAL is synced at checkpoints). A crash of the process loses
/// nothing; a power cut may lose the last commits, which is why production runs
/// PostgreSQL. Writers wait up to 10 s for the lock instead of failing.
///
/// A process's SQLite pool holds **two** connections ([`SQLITE_CONNECTIONS`]), whatever
/// `DATABASE_MAX_CONNECTIONS` says, for reads, and its writes go through one more, the
/// writing connection of [`crate::writes::Writer`]: SQLite has a single writer, and
/// connections of one process competing for it wait in SQLite's busy handler, which
/// sleeps 1, 2, 5, 10 … ms between tries. The request path's writes queue, in order, for
/// the writing connection instead, while reads run on the pool beside it (in WAL mode a
/// reader never waits for the writer); no code holds a transaction while it waits on the
/// pool. Other processes on the same file, and the few writes made on the pool (an
/// operator's commands, the user API in `pinnacle dev`), still wait in the busy handler,
/// holding a pool connection meanwhile: the second one keeps the reads going.
///
/// The pool does not ping a SQLite connection before handing it out: the connection is a
/// file opened by this process, which nothing can hang up, and with sqlx's SQLite driver a
/// ping is a round trip to the connection's own thread, as costly as a statement, on every
/// acquire (about a quarter of an order's hand-offs). A PostgreSQL connection is pinged, so
/// that a server restart costs a reconnect, not a failed request, and a transaction left
/// idle by a paused client is ended by the server ([`IDLE_IN_TRANSACTION_TIMEOUT`]).
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let sqlite = settings.database_url.starts_with("sqlite:");
    let file = match sqlite {
        true => sqlite_file(&settings.database_url)?,
        false => None,
    };
    let connections = match (sqlite, &file) {
        (true, Some(_)) => SQLITE_CONNECTIONS,
        // An in-memory database is shared between connections through SQLite's shared
        // cache, whose table locks fail at once instead of waiting: one connection.
        (true, None) => 1,
        (false, _) => settings.database_max_connections.max(1),
    };
    let mut options = ConnectOptions::new(settings.database_url.clone());
    options
        .max_connections(connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(!sqlite)
        .sqlx_logging(false);
    if sqlite {
        if let Some(path) = &file {
            owner_only(path, settings.database_url.contains("mode=rwc"))?;
        }
        options.map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .statement_cache_capacity(SQLITE_STATEMENT_CACHE)
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
        });
    } else {
        options.map_sqlx_postgres_opts(|postgres| {
            postgres.options([(
                "idle_in_transaction_session_timeout",
                IDLE_IN_TRANSACTION_TIMEOUT.as_millis(),
            )])
        });
    }
    Database::connect(options)
        .await
        .map_err(|e| without_password(e, &settings.database_url))
}

/// One attempt to reach the database, without a pool, bounded to 10 s: PostgreSQL's own
/// answer (refused, starting up, no such database) at once, where [`connect`]'s pool
/// keeps trying for its whole acquire timeout and then says only that it timed out. A
/// SQLite file has no server to reach.
pub async fn reach(settings: &DatabaseSettings) -> Result<(), DbErr> {
    use sea_orm::sqlx::postgres::PgConnectOptions;
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
    if settings.database_url.starts_with("sqlite:") {
        return Ok(());
    }
    let failed = |e: sea_orm::sqlx::Error| {
        without_password(
            DbErr::Conn(RuntimeErr::SqlxError(e)),
            &settings.database_url,
        )
    };
    let options = PgConnectOptions::from_str(&settings.database_url).map_err(failed)?;
    let timed_out = || {
        sea_orm::sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer within 10 s",
        ))
    };
    let connection = tokio::time::timeout(Duration::from_secs(10), options.connect())
        .await
        .map_err(|_| failed(timed_out()))?
        .map_err(failed)?;
    connection.close().await.map_err(failed)
}

/// Whether a failure of [`connect`] or [`reach`] may pass on its own, so that a service
/// should wait and try again: the server could not be reached (refused, reset, timed out,
/// a host name that does not resolve yet), is starting up or shutting down, or has no
/// connection slot free. A wrong password, a missing database or a bad URL will not pass,
/// and neither does anything SQLite says (its file is local).
pub fn may_pass(error: &DbErr) -> bool {
    use sea_orm::sqlx::Error;
    let (DbErr::Conn(RuntimeErr::SqlxError(error))
    | DbErr::Exec(RuntimeErr::SqlxError(error))
    | DbErr::Query(RuntimeErr::SqlxError(error))) = error
    else {
        return false;
    };
    match error {
        Error::Io(_) | Error::PoolTimedOut => true,
        Error::Database(db) => db.code().is_some_and(|code| {
            // cannot_connect_now, admin_shutdown, crash_shutdown, too_many_connections.
            matches!(code.as_ref(), "57P03" | "57P01" | "57P02" | "53300")
        }),
        _ => false,
    }
}

/// `error` with `url`'s password taken out. SeaORM writes the whole connection string into
/// some of its errors (one it cannot parse, such as a port out of range; one no driver
/// takes), and the callers print the error.
fn without_password(error: DbErr, url: &str) -> DbErr {
    let Some(password) = password_span(url)
        .map(|span| &url[span])
        .filter(|password| !password.is_empty())
    else {
        return error;
    };
    let scrub = |text: &str| text.replace(password, "***");
    match error {
        // The operating system's or the pool's words, never the URL: kept whole, so that
        // `may_pass` still sees what they are (a password such as "111" would otherwise
        // match "os error 111").
        DbErr::Conn(RuntimeErr::SqlxError(
            e @ (sea_orm::sqlx::Error::Io(_) | sea_orm::sqlx::Error::PoolTimedOut),
        )) => DbErr::Conn(RuntimeErr::SqlxError(e)),
        DbErr::Conn(RuntimeErr::Internal(text)) => DbErr::Conn(RuntimeErr::Internal(scrub(&text))),
        DbErr::Custom(text) => DbErr::Custom(scrub(&text)),
        other if other.to_string().contains(password) => DbErr::Custom(scrub(&other.to_string())),
        other => other,
    }
}

/// How long a PostgreSQL transaction may sit idle, waiting for its client's next statement,
/// before the server ends the session (`idle_in_transaction_session_timeout`, set for
/// every connection of the pool), which rolls the transaction back and frees its locks.
///
/// Pinnacle's transactions send their statements back to back and never wait on anything
/// else (a broker, NATS) inside one, so only a client that stopped mid-transaction goes
/// idle that long: a process paused (`SIGSTOP`, a debugger, a VM frozen) or starved. Its
/// row locks (an account's funds row, an order) would otherwise hold every other worker's
/// transactions on those rows, and with them their pools, for as long as it stays
/// paused. Now each of its transactions holds them at most two seconds once idle; the
/// paused process's connections that were waiting for those rows when it stopped may
/// take them in turn, each for two seconds more, so the rows are free within about two
/// seconds a connection of its pool, usually one or two (`tests/e2e/faults.rs`). Two
/// seconds keeps one such wait inside an order's lease (`PINNACLE_WORKER_LEASE_MS`, 5 s,
/// renewed every third of it). The paused process finds its connections closed when it
/// resumes, and their transactions fail like any other.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a statement waits for a connection (the pool's, or SQLite's writing connection)
/// before it fails.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The connections of a SQLite file's pool (see [`connect`]); the writing connection comes
/// on top. An in-memory database has one.
pub const SQLITE_CONNECTIONS: u32 = 2;

/// Pages the SQLite WAL may grow to before the connection whose commit crosses it
/// checkpoints it (SQLite's default is 1,000, about 4 MB: every hundred or so orders, one
/// of them waited for the copy and two fsyncs, a few ms). The writing connection's
/// [`crate::writes::Writer`] checkpoints in the background instead, every
/// [`crate::writes::CHECKPOINT_EVERY`], which keeps the WAL far below this; the threshold
/// is the safety net of a process that writes without a `Writer`, or whose background
/// checkpoint falls behind.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Prepared statements the SQLite connection keeps (sqlx's default is 100). The write
/// pipeline ([`crate::writes`]) sends multi-statement commands, each cached under its whole
/// text: the order store's and paper books' combinations (about 40–70) come on top of
/// every single statement of the process, and an evicted one is parsed again on the
/// connection's only thread.
pub const SQLITE_STATEMENT_CACHE: usize = 256;

/// The file a `sqlite:` URL names; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Result<Option<PathBuf>, DbErr> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| DbErr::Custom(format!("invalid SQLite URL: {e}")))?;
    let path = options.get_filename();
    let in_memory = url.contains("mode=memory")
        || path.as_os_str().is_empty()
        || path
            .to_str()
            .is_some_and(|p| p.starts_with("file:") || p == ":memory:");
    Ok((!in_memory).then(|| path.to_path_buf()))
}

/// The mode of every SQLite file: read and write for the owner only.
pub const SQLITE_FILE_MODE: u32 = 0o600;

/// Creates `path` with [`SQLITE_FILE_MODE`] if it is missing and `create` is set, and
/// tightens it and its companions to that mode if any group or other bit is set.
#[cfg(unix)]
fn owner_only(path: &Path, create: bool) -> Result<(), DbErr> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let fail = |what: &str, file: &Path, e: std::io::Error| {
        DbErr::Custom(format!("{what} {}: {e}", file.display()))
    };
    if create && !path.exists() {
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(SQLITE_FILE_MODE)
            .open(path);
        match created {
            // The umask can only have removed bits; set the mode exactly.
            Ok(file) => file
                .set_permissions(std::fs::Permissions::from_mode(SQLITE_FILE_MODE))
                .map_err(|e| fail("making owner-only", path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail("creating the SQLite file", path, e)),
        }
    }
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        files.push(PathBuf::from(companion));
    }
    for file in files {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(SQLITE_FILE_MODE))
                .map_err(|e| fail("making owner-only", &file, e))?;
            tracing::warn!(file = %file.display(), "SQLite file was readable by others; now 0600");
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_path: &Path, _create: bool) -> Result<(), DbErr> {
    Ok(())
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
        db.query.summary = %format_args!("{operation} {table}"),
    )
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use sea_orm::ConnectionTrait as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    fn settings(url: String) -> DatabaseSettings {
        DatabaseSettings {
            database_url: url,
            database_max_connections: 2,
        }
    }

    #[tokio::test]
    async fn a_new_sqlite_file_and_its_wal_are_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.db");
        let db = connect(&settings(format!("sqlite://{}?mode=rwc", path.display())))
            .await
            .expect("connects");
        db.execute_unprepared("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .await
            .expect("writes");
        let wal = dir.path().join("new.db-wal");
        let shm = dir.path().join("new.db-shm");
        assert!(wal.exists() && shm.exists(), "WAL mode made its companions");
        for file in [&path, &wal, &shm] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        db.close().await.expect("closes");
    }

    #[tokio::test]
    async fn an_existing_world_readable_file_is_tightened_before_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let db = connect(&settings(url.clone())).await.expect("connects");
        db.execute_unprepared("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .await
            .expect("writes");
        db.close().await.expect("closes");
        let wal = dir.path().join("old.db-wal");
        std::fs::write(&wal, b"").expect("a leftover WAL");
        for file in [&path, &wal] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let db = connect(&settings(url)).await.expect("reconnects");
        for file in [&path, &wal] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        let rows = db
            .query_all(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT x FROM t",
            ))
            .await
            .expect("the data is intact");
        assert_eq!(rows.len(), 1);
    }

    #[tokio::test]
    async fn an_unparsable_url_is_refused_without_its_password() {
        for url in [
            "postgres://app:hunter2@127.0.0.1:99999/pinnacle",
            "postgresql://app:hunter2@db:5432/pinnacle?sslmode=nonsense",
            "mysql://app:hunter2@db/pinnacle",
            "nosuchdb://app:hunter2@db/pinnacle",
        ] {
            let error = connect(&settings(url.to_string()))
                .await
                .expect_err("refused")
                .to_string();
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
    }

    #[test]
    fn only_the_password_is_taken_out_of_an_error() {
        let url = "postgres://app:s3cret@db:99999/p";
        let error = DbErr::Custom(format!("The connection string '{url}' cannot be parsed."));
        assert_eq!(
            without_password(error, url).to_string(),
            "Custom Error: The connection string 'postgres://app:***@db:99999/p' cannot be parsed."
        );
        let untouched = DbErr::Custom("connection refused".into());
        assert_eq!(
            without_password(untouched, url).to_string(),
            "Custom Error: connection refused"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_may_pass_whatever_its_password_and_a_missing_one_does_not() {
        // Nothing listens on the port; the password is a word of the refusal's text.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a port")
            .port();
        for password in ["hunter2", "111", "refused", "os"] {
            let url = format!("postgres://app:{password}@127.0.0.1:{port}/p");
            let error = reach(&settings(url)).await.expect_err("nothing listens");
            assert!(may_pass(&error), "{password}: {error}");
        }
        let bad = reach(&settings("postgres://app:pw@127.0.0.1:99999/p".into()))
            .await
            .expect_err("a port out of range");
        assert!(!may_pass(&bad), "{bad}");
        assert!(!may_pass(&DbErr::Custom("no such database".into())));
        reach(&settings("sqlite::memory:".into()))
            .await
            .expect("a SQLite file has no server to reach");
    }

    #[tokio::test]
    async fn in_memory_and_missing_read_only_databases_create_no_file() {
        assert_eq!(sqlite_file("sqlite::memory:").expect("parses"), None);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.db");
        let url = format!("sqlite://{}?mode=rw", path.display());
        assert_eq!(sqlite_file(&url).expect("parses"), Some(path.clone()));
        assert!(connect(&settings(url)).await.is_err(), "rw does not create");
        assert!(!path.exists());
    }
}
