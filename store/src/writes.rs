//! [`WriteTxn`]: a write transaction that reaches the database in as few round trips as
//! the driver allows, [`Deferred`], the statements it may hold back to do so, and
//! [`Writer`], the way a process's writes reach the database (on SQLite a connection of
//! their own, apart from the readers' pool).
//!
//! # Why
//! sqlx's SQLite driver runs every command on the connection's own thread, so each statement
//! is a hand-off there and back: two wake-ups, tens of µs on a loaded 2-core machine, while
//! SQLite itself needs a few µs. A paper order's write sets (the insert with its events,
//! the reservation, the fill) used to cost about 30 such hand-offs on the one SQLite
//! connection, which bounded the whole engine (docs/BENCHMARKS.md).
//!
//! # How
//! On SQLite a `WriteTxn` keeps the statements whose answer nobody reads
//! ([`Deferred::defer`]) and sends them as one multi-statement command together with the
//! next statement whose answer is read, with `BEGIN IMMEDIATE` in front of the first command
//! and `COMMIT` behind the last. A write set that reads only at its start costs one or two
//! hand-offs in all.
//!
//! # What still holds
//! Everything a transaction promises: the statements run in the order they were given, on
//! one connection, between one `BEGIN IMMEDIATE` and one `COMMIT`. The first that fails
//! stops the command, fails the call that sent it (a deferred statement's failure is the
//! next call's error, or the commit's), and the transaction is rolled back before the error
//! is returned; every caller treats any error as the end of its transaction. A `WriteTxn`
//! dropped before it committed (an early return, a cancelled future) is rolled back by a
//! task that owns its connection; if that fails the connection is closed, which rolls it
//! back too (and with no runtime left, the process is ending: the connection is abandoned,
//! and SQLite discards the transaction when the file is next opened). A pooled connection
//! never goes back inside a transaction.
//!
//! Every statement must be exactly one SQL statement with positional `?` parameters: the
//! command binds its values in order across its statements and reads one answer per
//! statement. [`one_statement`] refuses anything else (numbered `?1`/`$1` parameters,
//! which sqlx binds by absolute position in the command; a second statement after a `;`;
//! a comment; an empty text), and a refused statement fails its transaction like one the
//! database refused. SeaQuery builds only such statements.
//!
//! On PostgreSQL, whose protocol runs one statement per command, a `WriteTxn` is a plain
//! SeaORM transaction and a deferred statement runs at once.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt as _;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteQueryResult, SqliteRow,
};
use sea_orm::sqlx::{ConnectOptions as _, Connection as _, Either, Executor as _};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, QueryTrait, RuntimeErr, Statement, TransactionTrait, Values,
};
use sea_query_binder::SqlxValues;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// A connection that may hold a write back until the transaction next needs an answer.
#[async_trait]
pub trait Deferred: ConnectionTrait {
    /// Runs `stmt` in this transaction, at the latest together with the next statement
    /// whose answer is read or with the commit. Its failure fails that later call (and the
    /// transaction), so it suits writes whose outcome the caller does not inspect.
    async fn defer(&self, stmt: Statement) -> Result<(), DbErr>;

    /// [`defer`](Self::defer) for a write that must change exactly `rows` rows (a
    /// compare-and-set). When it changes another number, the call that sent it fails with
    /// [`DbErr::RecordNotUpdated`] and the transaction is rolled back. A commit never shares
    /// a command with such a write: the check comes first, then the `COMMIT`.
    async fn defer_checked(&self, stmt: Statement, rows: u64) -> Result<(), DbErr> {
        let changed = self.execute(stmt).await?.rows_affected();
        if changed == rows {
            Ok(())
        } else {
            Err(DbErr::RecordNotUpdated)
        }
    }

    /// Whether deferred statements really wait for the next command (SQLite). Then an
    /// unconditional write ("create the row if it is missing") costs nothing, and is
    /// cheaper than reading first to see whether it is needed.
    fn pipelines(&self) -> bool {
        false
    }
}

/// [`Deferred::defer`] for a SeaORM query (an insert, update or delete), built for the
/// transaction's database.
pub async fn defer<Q>(db: &impl Deferred, query: &Q) -> Result<(), DbErr>
where
    Q: QueryTrait + ?Sized,
{
    db.defer(query.build(db.get_database_backend())).await
}

/// [`Deferred::defer_checked`] for a SeaORM query.
pub async fn defer_checked<Q>(db: &impl Deferred, query: &Q, rows: u64) -> Result<(), DbErr>
where
    Q: QueryTrait + ?Sized,
{
    db.defer_checked(query.build(db.get_database_backend()), rows)
        .await
}

/// A plain transaction runs a deferred statement at once.
#[async_trait]
impl Deferred for DatabaseTransaction {
    async fn defer(&self, stmt: Statement) -> Result<(), DbErr> {
        self.execute(stmt).await.map(drop)
    }
}

/// The way into one database for writes. On SQLite, writes go through a connection of
/// their own (the *writing connection*), apart from the pool that serves reads; elsewhere
/// a `Writer` is the pool.
///
/// # Why a connection of its own
/// SQLite has one writer, so a process sends its writes through one connection, in turn.
/// Taken from the pool, that connection cost one more hand-off to sqlx's connection thread
/// each time it went back (sqlx tests a connection on release, and cannot be told not to),
/// about a third of an order's hand-offs; and every read waited behind the writes. The
/// writing connection is held by whichever write has it and never goes back to a pool,
/// while reads run on the pool's connection beside it (WAL readers never wait for the
/// writer, and see every commit made before they start).
///
/// Every `Writer` of one pool shares its writing connection (the order store's, the paper
/// books' and the outbox relay's writes queue for one connection, first come first served);
/// it is opened with the pool's options at the first write and closed when the last
/// `Writer` of the pool is dropped. An in-memory database, which a second connection would
/// not see, writes through the pool instead.
///
/// As a [`ConnectionTrait`], a `Writer` runs each statement as a committed transaction of
/// its own: on SQLite `BEGIN IMMEDIATE`, the statement and `COMMIT` in one command on the
/// writing connection; elsewhere the statement alone, on the pool. Writes outside a
/// [`WriteTxn`] that the request path makes (the rate counter, the outbox relay, the order
/// leases) go this way, so that no write of the process waits in SQLite's busy handler
/// for another of the same process.
#[derive(Debug, Clone)]
pub struct Writer {
    db: DatabaseConnection,
    /// The writing connection, on SQLite.
    lane: Option<Arc<Lane>>,
}

impl Writer {
    /// The writer of `db`'s database: on SQLite the pool's writing connection, shared with
    /// every other `Writer` of the same pool.
    pub fn new(db: &DatabaseConnection) -> Self {
        let lane = match db.get_database_backend() {
            DbBackend::Sqlite => Some(Lane::of(db)),
            _ => None,
        };
        Self {
            db: db.clone(),
            lane,
        }
    }

    /// The pool, for reads.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Whether a [`WriteTxn`] of this writer holds statements back and sends several in one
    /// command (SQLite), as [`Deferred::pipelines`] says of the transaction.
    pub fn pipelines(&self) -> bool {
        self.lane.is_some()
    }
}

#[async_trait]
impl ConnectionTrait for Writer {
    fn get_database_backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match &self.lane {
            Some(lane) => Ok(lane
                .single(stmt)
                .await?
                .map_err(|f| f.into_db(exec_err))?
                .done
                .into()),
            None => self.db.execute(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match &self.lane {
            Some(_) => {
                self.execute(Statement::from_string(DbBackend::Sqlite, sql))
                    .await
            }
            None => self.db.execute_unprepared(sql).await,
        }
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.query_all(stmt).await?.into_iter().next())
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.lane {
            Some(lane) => {
                let rows = lane
                    .single(stmt)
                    .await?
                    .map_err(|f| f.into_db(query_err))?
                    .rows;
                Ok(rows.into_iter().map(QueryResult::from).collect())
            }
            None => self.db.query_all(stmt).await,
        }
    }
}

/// A SQLite pool's writing connection (see [`Writer`]).
#[derive(Debug)]
struct Lane {
    /// The pool's connection options: the lane's identity (the pool keeps them in one
    /// `Arc` for its life), and how the connection is opened.
    options: Arc<SqliteConnectOptions>,
    pool: sea_orm::sqlx::SqlitePool,
    /// Whether the database is a file, which a connection of its own would see too; asked
    /// at the first write. An in-memory database is written through the pool.
    file: tokio::sync::OnceCell<bool>,
    /// The writing connection, once opened.
    own: Arc<Mutex<Option<SqliteConnection>>>,
    /// Whether the writing connection was taken since the last background checkpoint.
    written: std::sync::atomic::AtomicBool,
}

/// How often a SQLite file with a live [`Writer`] is checkpointed in the background: a
/// `PRAGMA wal_checkpoint(PASSIVE)` on a connection of the checkpoint's own, which copies
/// committed pages from the WAL into the database file and syncs both while reads and
/// writes go on, so that no write on the request path pays for it (see
/// [`crate::db::WAL_AUTOCHECKPOINT_PAGES`]).
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// The lanes of this process, one per SQLite pool while a `Writer` of it lives.
static LANES: std::sync::Mutex<Vec<Weak<Lane>>> = std::sync::Mutex::new(Vec::new());

impl Lane {
    /// The lane of `db`'s pool: the live one, or a new one.
    fn of(db: &DatabaseConnection) -> Arc<Self> {
        let pool = db.get_sqlite_connection_pool();
        let options = pool.connect_options();
        let mut lanes = LANES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        lanes.retain(|lane| lane.strong_count() > 0);
        let live = lanes
            .iter()
            .filter_map(Weak::upgrade)
            .find(|lane| Arc::ptr_eq(&lane.options, &options));
        if let Some(lane) = live {
            return lane;
        }
        let lane = Arc::new(Self {
            options,
            pool: pool.clone(),
            file: tokio::sync::OnceCell::new(),
            own: Arc::new(Mutex::new(None)),
            written: std::sync::atomic::AtomicBool::new(false),
        });
        lanes.push(Arc::downgrade(&lane));
        // Without a runtime (never on the request path) SQLite checkpoints at its threshold.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(Self::checkpoint_in_background(Arc::downgrade(&lane)));
        }
        lane
    }

    /// Checkpoints the lane's database every [`CHECKPOINT_EVERY`] while the lane lives and
    /// something was written since the last time (once its first write found it a file),
    /// on a connection of its own (a checkpoint syncs the files, several ms, and must not
    /// hold a reader's connection meanwhile).
    async fn checkpoint_in_background(lane: Weak<Self>) {
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        let mut connection: Option<SqliteConnection> = None;
        loop {
            every.tick().await;
            let Some(lane) = lane.upgrade() else {
                break;
            };
            if lane.pool.is_closed() {
                break;
            }
            // A write in progress keeps the mark, so its commit is checkpointed too.
            let written = match lane.own.try_lock() {
                Ok(_idle) => lane
                    .written
                    .swap(false, std::sync::atomic::Ordering::Relaxed),
                Err(_) => lane.written.load(std::sync::atomic::Ordering::Relaxed),
            };
            if !written || lane.file.get() != Some(&true) {
                continue;
            }
            let checkpointed = async {
                if connection.is_none() {
                    connection = Some(lane.open().await?);
                }
                let conn = connection.as_mut().ok_or_else(ended)?;
                sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(conn)
                    .await
            }
            .await;
            if let Err(error) = checkpointed {
                // Opened again at the next tick; meanwhile SQLite checkpoints at its
                // threshold.
                tracing::debug!(%error, "background WAL checkpoint failed");
                connection = None;
            }
        }
        if let Some(connection) = connection {
            let _ = connection.close().await;
        }
    }

    /// Runs `stmt` as a transaction of its own (one command), and returns its answer; the
    /// outer error is the connection's.
    async fn single(&self, stmt: Statement) -> Result<Result<Answer, Failure>, DbErr> {
        let mut pipeline = Pipeline::new(self.take().await?);
        Ok(pipeline.send(Some(stmt), true).await)
    }

    /// Waits for the connection (as long as the pool would: [`crate::db::ACQUIRE_TIMEOUT`]),
    /// opening it if it is not open.
    async fn take(&self) -> Result<Conn, DbErr> {
        let conn_err = |e| DbErr::Conn(RuntimeErr::SqlxError(e));
        if self.pool.is_closed() {
            return Err(conn_err(sea_orm::sqlx::Error::PoolClosed));
        }
        let file = self
            .file
            .get_or_try_init(|| async {
                let main: String = sea_orm::sqlx::query_scalar(
                    "SELECT file FROM pragma_database_list WHERE name = 'main'",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(!main.is_empty())
            })
            .await
            .map_err(conn_err)?;
        if !file {
            return self
                .pool
                .acquire()
                .await
                .map(Conn::Pooled)
                .map_err(conn_err);
        }
        let mut guard =
            tokio::time::timeout(crate::db::ACQUIRE_TIMEOUT, self.own.clone().lock_owned())
                .await
                .map_err(|_| conn_err(sea_orm::sqlx::Error::PoolTimedOut))?;
        self.written
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if guard.is_none() {
            *guard = Some(self.open().await.map_err(conn_err)?);
        }
        Ok(Conn::Own(guard))
    }

    /// A new connection to the lane's database file with the pool's options. It never
    /// creates the file: `connect` made it, owner-only; one removed since is an error, not a
    /// new empty database.
    async fn open(&self) -> Result<SqliteConnection, sea_orm::sqlx::Error> {
        let options = self.options.as_ref().clone().create_if_missing(false);
        options.connect().await
    }
}

/// The connection a write transaction holds.
#[derive(Debug)]
enum Conn {
    /// The writing connection; `None` inside once it was closed (it is opened again by the
    /// next write).
    Own(OwnedMutexGuard<Option<SqliteConnection>>),
    /// The pool's connection (an in-memory database).
    Pooled(PoolConnection<Sqlite>),
}

impl Conn {
    fn get(&mut self) -> Option<&mut SqliteConnection> {
        match self {
            Conn::Own(guard) => guard.as_mut(),
            Conn::Pooled(conn) => Some(&mut **conn),
        }
    }

    /// Closes the connection (which ends any transaction on it) instead of reusing it.
    fn close(&mut self) {
        match self {
            Conn::Own(guard) => drop(guard.take()),
            Conn::Pooled(conn) => conn.close_on_drop(),
        }
    }
}

/// A write transaction; see the [module documentation](self).
#[derive(Debug)]
pub struct WriteTxn {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Sqlite(Mutex<Pipeline>),
    Plain(DatabaseTransaction),
}

impl WriteTxn {
    /// Begins a write transaction through `writer`. On SQLite this waits for the writing
    /// connection; the `BEGIN IMMEDIATE` goes with the first statement.
    pub async fn begin(writer: &Writer) -> Result<Self, DbErr> {
        let inner = match &writer.lane {
            Some(lane) => Inner::Sqlite(Mutex::new(Pipeline::new(lane.take().await?))),
            None => Inner::Plain(writer.db.begin().await?),
        };
        Ok(Self { inner })
    }

    /// Commits, sending whatever is still deferred first.
    pub async fn commit(self) -> Result<(), DbErr> {
        match self.inner {
            Inner::Sqlite(pipeline) => pipeline.into_inner().commit().await,
            Inner::Plain(txn) => txn.commit().await,
        }
    }

    /// Runs `stmt` as the transaction's last statement and commits, returning its rows: on
    /// SQLite in the same command as the deferred statements and the `COMMIT` (a checked
    /// statement is checked first, in a command of its own).
    pub async fn commit_with(self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.inner {
            Inner::Sqlite(pipeline) => {
                let answer = pipeline.into_inner().finish(Some(stmt)).await?;
                Ok(answer.rows.into_iter().map(QueryResult::from).collect())
            }
            Inner::Plain(txn) => {
                let rows = txn.query_all(stmt).await?;
                txn.commit().await?;
                Ok(rows)
            }
        }
    }

    /// Rolls back what was sent and drops what was deferred.
    pub async fn rollback(self) -> Result<(), DbErr> {
        match self.inner {
            Inner::Sqlite(pipeline) => pipeline.into_inner().rollback().await,
            Inner::Plain(txn) => txn.rollback().await,
        }
    }

    /// The commands sent to the database so far on SQLite (0 elsewhere, where every
    /// statement is its own command).
    pub async fn round_trips(&self) -> u32 {
        match &self.inner {
            Inner::Sqlite(pipeline) => pipeline.lock().await.round_trips,
            Inner::Plain(_) => 0,
        }
    }
}

#[async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        match &self.inner {
            Inner::Sqlite(_) => DbBackend::Sqlite,
            Inner::Plain(txn) => txn.get_database_backend(),
        }
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match &self.inner {
            Inner::Sqlite(pipeline) => {
                let answer = pipeline.lock().await.send(Some(stmt), false).await;
                Ok(answer.map_err(|f| f.into_db(exec_err))?.done.into())
            }
            Inner::Plain(txn) => txn.execute(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match &self.inner {
            Inner::Sqlite(_) => {
                self.execute(Statement::from_string(DbBackend::Sqlite, sql))
                    .await
            }
            Inner::Plain(txn) => txn.execute_unprepared(sql).await,
        }
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.query_all(stmt).await?.into_iter().next())
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.inner {
            Inner::Sqlite(pipeline) => {
                let answer = pipeline.lock().await.send(Some(stmt), false).await;
                let rows = answer.map_err(|f| f.into_db(query_err))?.rows;
                Ok(rows.into_iter().map(QueryResult::from).collect())
            }
            Inner::Plain(txn) => txn.query_all(stmt).await,
        }
    }
}

#[async_trait]
impl Deferred for WriteTxn {
    async fn defer(&self, stmt: Statement) -> Result<(), DbErr> {
        match &self.inner {
            Inner::Sqlite(pipeline) => pipeline.lock().await.defer(stmt, None),
            Inner::Plain(txn) => txn.defer(stmt).await,
        }
    }

    async fn defer_checked(&self, stmt: Statement, rows: u64) -> Result<(), DbErr> {
        match &self.inner {
            Inner::Sqlite(pipeline) => pipeline.lock().await.defer(stmt, Some(rows)),
            Inner::Plain(txn) => txn.defer_checked(stmt, rows).await,
        }
    }

    fn pipelines(&self) -> bool {
        matches!(self.inner, Inner::Sqlite(_))
    }
}

/// One SQLite connection's transaction: the statements held back, and whether a `BEGIN`
/// may be open on the connection.
struct Pipeline {
    /// `None` once handed to the rollback task.
    conn: Option<Conn>,
    /// Held-back statements, each with the number of rows it must change, if checked.
    deferred: Vec<(Statement, Option<u64>)>,
    /// A `BEGIN IMMEDIATE` was sent and neither a `COMMIT` nor a `ROLLBACK` has been seen
    /// to succeed since: the connection may be inside a transaction.
    open: bool,
    /// Why the transaction cannot go on: a statement failed (it was rolled back then), or a
    /// command was sent and its answer not read to the end (its caller was cancelled, so
    /// what ran of it is unknown). Only a rollback is left.
    broken: Option<&'static str>,
    round_trips: u32,
}

/// Why a command of a [`Pipeline`] failed (its transaction is rolled back either way).
enum Failure {
    /// The database refused a statement, or the connection failed.
    Sql(sea_orm::sqlx::Error),
    /// A checked statement changed another number of rows than it had to.
    Unchanged,
}

impl From<sea_orm::sqlx::Error> for Failure {
    fn from(e: sea_orm::sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl Failure {
    /// As SeaORM reports it: a database failure through `sql`, a failed check as
    /// [`DbErr::RecordNotUpdated`].
    fn into_db(self, sql: fn(sea_orm::sqlx::Error) -> DbErr) -> DbErr {
        match self {
            Self::Sql(e) => sql(e),
            Self::Unchanged => DbErr::RecordNotUpdated,
        }
    }
}

/// What the statement that triggered a command answered.
#[derive(Default)]
struct Answer {
    done: SqliteQueryResult,
    rows: Vec<SqliteRow>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the deferred statements' values: they may be anything a caller binds.
        f.debug_struct("Pipeline")
            .field("deferred", &self.deferred.len())
            .field("open", &self.open)
            .field("broken", &self.broken)
            .field("round_trips", &self.round_trips)
            .finish()
    }
}

impl Pipeline {
    fn new(conn: Conn) -> Self {
        Self {
            conn: Some(conn),
            deferred: Vec::new(),
            open: false,
            broken: None,
            round_trips: 0,
        }
    }

    /// Holds `stmt` back. A statement that [`one_statement`] refuses ends the transaction
    /// like any failed statement: what was held back is dropped, and the next call (or the
    /// commit) rolls back and fails, so nothing of it can commit without the refused
    /// statement.
    fn defer(&mut self, stmt: Statement, rows: Option<u64>) -> Result<(), DbErr> {
        if let Err(e) = one_statement(&stmt.sql) {
            self.refused();
            return Err(exec_err(sea_orm::sqlx::Error::Protocol(e)));
        }
        self.deferred.push((stmt, rows));
        Ok(())
    }

    /// Marks the transaction failed after a statement was refused before it was sent.
    fn refused(&mut self) {
        self.deferred.clear();
        self.broken = Some("a statement of it was refused before it was sent");
    }

    async fn commit(&mut self) -> Result<(), DbErr> {
        if self.broken.is_none() && !self.open && self.deferred.is_empty() {
            // Nothing was ever sent: there is nothing to commit.
            return Ok(());
        }
        self.finish(None).await.map(drop)
    }

    /// Sends what is deferred, then `last`, then `COMMIT`; a checked write is checked
    /// before anything commits, in a command of its own.
    async fn finish(&mut self, last: Option<Statement>) -> Result<Answer, DbErr> {
        if self.deferred.iter().any(|(_, rows)| rows.is_some()) {
            self.send(None, false)
                .await
                .map_err(|f| f.into_db(exec_err))?;
        }
        self.send(last, true).await.map_err(|f| f.into_db(exec_err))
    }

    async fn rollback(&mut self) -> Result<(), DbErr> {
        self.deferred.clear();
        if !self.open {
            return Ok(());
        }
        let conn = self.conn.as_mut().ok_or_else(ended).map_err(exec_err)?;
        let connection = conn.get().ok_or_else(ended).map_err(exec_err)?;
        self.round_trips += 1;
        match roll_back(connection).await {
            Ok(_) => {
                self.open = false;
                Ok(())
            }
            Err(e) => {
                // Whatever state it is in, the connection must not be reused; closing it
                // ends any transaction.
                tracing::warn!(error = %e, "a SQLite rollback failed; closing its connection");
                conn.close();
                self.open = false;
                Err(exec_err(e))
            }
        }
    }

    /// Sends the deferred statements, then `last` (whose answer is returned), then `COMMIT`
    /// if `commit`, as one command; `BEGIN IMMEDIATE` goes first if none is open. On
    /// failure, or when a checked statement changed another number of rows than it had to,
    /// the transaction is rolled back before the error is returned. [`Self::commit`] never
    /// sends a checked statement with the `COMMIT`.
    async fn send(&mut self, last: Option<Statement>, commit: bool) -> Result<Answer, Failure> {
        if let Some(why) = self.broken {
            let _ = self.rollback().await;
            return Err(Failure::Sql(sea_orm::sqlx::Error::Protocol(format!(
                "this transaction was rolled back: {why}"
            ))));
        }
        if let Some(e) = last
            .as_ref()
            .and_then(|stmt| one_statement(&stmt.sql).err())
        {
            self.refused();
            let _ = self.rollback().await;
            return Err(Failure::Sql(sea_orm::sqlx::Error::Protocol(e)));
        }
        let begin = !self.open;
        let deferred = std::mem::take(&mut self.deferred);
        debug_assert!(
            !commit || deferred.iter().all(|(_, rows)| rows.is_none()),
            "a checked statement sent with the commit"
        );
        let mut checks = Vec::new();
        let mut sql = String::new();
        let mut values = Vec::new();
        let mut count = 0usize;
        let mut push = |text: &str, bound: Option<Values>| {
            if count > 0 {
                sql.push_str(";\n");
            }
            sql.push_str(text);
            values.extend(bound.map(|v| v.0).unwrap_or_default());
            count += 1;
            count - 1
        };
        if begin {
            push("BEGIN IMMEDIATE", None);
        }
        for (stmt, rows) in deferred {
            let at = push(&stmt.sql, stmt.values);
            if let Some(rows) = rows {
                checks.push((at, rows));
            }
        }
        let target = last.map(|stmt| push(&stmt.sql, stmt.values));
        if commit {
            push("COMMIT", None);
        }
        let conn = self.conn.as_mut().and_then(Conn::get).ok_or_else(ended)?;
        self.open = true;
        self.broken = Some("a command of it was cancelled");
        self.round_trips += 1;
        let mut answer = Answer::default();
        let mut finished = 0usize;
        let mut unchanged = false;
        let ran = {
            let query = sea_orm::sqlx::query_with(&sql, SqlxValues(Values(values)));
            let mut steps = conn.fetch_many(query);
            loop {
                match steps.try_next().await {
                    Ok(Some(Either::Left(done))) => {
                        if checks
                            .iter()
                            .any(|&(at, rows)| at == finished && done.rows_affected() != rows)
                        {
                            unchanged = true;
                        }
                        if Some(finished) == target {
                            answer.done = done;
                        }
                        finished += 1;
                    }
                    Ok(Some(Either::Right(row))) => {
                        if Some(finished) == target {
                            answer.rows.push(row);
                        }
                    }
                    // The stream ended without an error: every statement ran (sqlx stops a
                    // command only at a failure), and each reported its end once, since
                    // [`one_statement`] let only single statements in.
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        };
        match ran {
            Ok(()) if unchanged => {
                self.broken = Some("a checked write changed another number of rows");
                let _ = self.rollback().await;
                Err(Failure::Unchanged)
            }
            Ok(()) => {
                self.broken = None;
                if commit {
                    self.open = false;
                }
                Ok(answer)
            }
            Err(e) => {
                // The command stopped at the failing statement, possibly inside the
                // transaction. Marked broken first (a call cancelled during the rollback
                // must not leave it looking usable), then ended before anyone sees the
                // error; a failed rollback has already marked the connection to be closed.
                self.broken = Some("a statement of it failed");
                if begin && finished == 0 {
                    // Not even the `BEGIN` ran. If that is because the connection is still
                    // inside a transaction nobody ended, nothing can use it again: close it.
                    self.open = false;
                    if inside_a_transaction(&e) {
                        tracing::warn!("the SQLite writing connection was left inside a transaction; closing it");
                        if let Some(conn) = self.conn.as_mut() {
                            conn.close();
                        }
                    }
                }
                let _ = self.rollback().await;
                Err(Failure::Sql(e))
            }
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Some(conn) = self.conn.take() else {
            return;
        };
        // Dropped inside a transaction (an early return or a cancelled call): roll it back
        // before anyone else writes through the connection, or close the connection.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // The connection is closed unless the rollback finishes: a task dropped
                // before it ran (its runtime shutting down) must not hand back a connection
                // inside a transaction.
                let mut unfinished = CloseUnlessDone(Some(conn));
                runtime.spawn(async move {
                    let Some(conn) = unfinished.0.as_mut() else { return };
                    let Some(connection) = conn.get() else { return };
                    if let Err(error) = roll_back(connection).await {
                        tracing::warn!(%error, "rolling back a dropped SQLite transaction failed; closing its connection");
                        return;
                    }
                    // Rolled back: the connection goes back as it is.
                    drop(unfinished.0.take());
                });
            }
            // No runtime means the process is ending: the connection is closed (or, for a
            // pooled one, left to the process's end), and SQLite discards the open
            // transaction.
            Err(_) => drop(CloseUnlessDone(Some(conn))),
        }
    }
}

/// A connection that is closed when dropped, unless taken out first.
struct CloseUnlessDone(Option<Conn>);

impl Drop for CloseUnlessDone {
    fn drop(&mut self) {
        match self.0.take() {
            // sqlx needs a runtime to close a pooled connection; without one the process is
            // ending, and the connection is left to it.
            Some(Conn::Pooled(conn)) if tokio::runtime::Handle::try_current().is_err() => {
                std::mem::forget(conn)
            }
            Some(mut conn) => conn.close(),
            None => {}
        }
    }
}

/// `ROLLBACK`; one that finds no transaction open (its command had already run to its
/// `COMMIT` when its caller stopped waiting) has nothing to do, and succeeds.
async fn roll_back(connection: &mut SqliteConnection) -> Result<(), sea_orm::sqlx::Error> {
    match connection.execute("ROLLBACK").await {
        Ok(_) => Ok(()),
        Err(e) if sqlite_says(&e, "no transaction is active") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `e` is SQLite refusing a `BEGIN` inside a transaction.
fn inside_a_transaction(e: &sea_orm::sqlx::Error) -> bool {
    sqlite_says(e, "within a transaction")
}

/// Whether `e` is a database error whose message contains `text`.
fn sqlite_says(e: &sea_orm::sqlx::Error, text: &str) -> bool {
    e.as_database_error()
        .is_some_and(|db| db.message().contains(text))
}

/// Whether `sql` may share a command with others: one statement, positional `?` parameters
/// only, no comment. String literals and quoted identifiers are skipped.
fn one_statement(sql: &str) -> Result<(), String> {
    let refused = |what: &str| {
        Err(format!(
            "a pipelined statement must be one statement with `?` parameters; this has {what}"
        ))
    };
    let bytes = sql.as_bytes();
    let (mut i, mut statement, mut ended) = (0, false, false);
    while let Some(&b) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        let quoted_until = match b {
            b'\'' | b'"' | b'`' => Some(b),
            b'[' => Some(b']'),
            _ => None,
        };
        if let Some(close) = quoted_until {
            if ended {
                return refused("more than one statement");
            }
            let length = bytes[i + 1..].iter().position(|&c| c == close);
            i += length.map_or(bytes.len(), |at| at + 2);
            statement = true;
            continue;
        }
        match (b, next) {
            (b'-', Some(b'-')) | (b'/', Some(b'*')) => return refused("a comment"),
            (b'?' | b'$', Some(d)) if d.is_ascii_digit() => return refused("a numbered parameter"),
            (b';', _) => ended = true,
            (c, _) if c.is_ascii_whitespace() => {}
            _ if ended => return refused("more than one statement"),
            _ => statement = true,
        }
        i += 1;
    }
    if statement {
        Ok(())
    } else {
        refused("no statement")
    }
}

/// The connection was handed to the rollback task (only `Drop` does that, so no method
/// meets this).
fn ended() -> sea_orm::sqlx::Error {
    sea_orm::sqlx::Error::Protocol("the transaction has already ended".into())
}

fn exec_err(e: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(e))
}

fn query_err(e: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(e))
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;
    use sea_orm::SqlErr;

    use super::*;
    use crate::db::connect;
    use crate::settings::DatabaseSettings;

    /// A file database (a pool of its one connection) with a table `t (k UNIQUE, v)`, and
    /// the folder that holds it.
    async fn database() -> (tempfile::TempDir, DatabaseConnection, Writer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let (db, writer) = database_at(url).await;
        (dir, db, writer)
    }

    /// The database at `url`, with the table `t`, and its writer.
    async fn database_at(url: String) -> (DatabaseConnection, Writer) {
        let db = connect(&DatabaseSettings {
            database_url: url,
            database_max_connections: 1,
        })
        .await
        .expect("connects");
        db.execute_unprepared("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .await
            .expect("table");
        let writer = Writer::new(&db);
        (db, writer)
    }

    fn insert(k: i64, v: &str) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO t (k, v) VALUES (?, ?)",
            [k.into(), v.into()],
        )
    }

    /// A query that keeps SQLite busy for a while (tens of ms).
    fn slow() -> Statement {
        Statement::from_string(
            DbBackend::Sqlite,
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) \
             SELECT count(*) FROM c",
        )
    }

    async fn rows(db: &impl ConnectionTrait) -> Vec<(i64, String)> {
        db.query_all(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT k, v FROM t ORDER BY k",
        ))
        .await
        .expect("select")
        .iter()
        .map(|row| {
            (
                row.try_get_by_index(0).expect("k"),
                row.try_get_by_index(1).expect("v"),
            )
        })
        .collect()
    }

    /// The writing connection is usable and outside any transaction (its `BEGIN` would
    /// fail inside one).
    async fn usable(writer: &Writer) {
        writer
            .execute(Statement::from_string(DbBackend::Sqlite, "SELECT 1"))
            .await
            .expect("the connection is outside any transaction");
    }

    #[tokio::test]
    async fn deferred_writes_go_with_the_next_read_and_the_commit_in_one_command_each() {
        let (_dir, db, w) = database().await;
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.defer(insert(1, "a")).await.expect("defer");
        txn.defer(insert(2, "b")).await.expect("defer");
        assert_eq!(txn.round_trips().await, 0, "nothing sent yet");
        // A read sees the transaction's own deferred writes.
        assert_eq!(rows(&txn).await, vec![(1, "a".into()), (2, "b".into())]);
        assert_eq!(txn.round_trips().await, 1);
        txn.defer(insert(3, "c")).await.expect("defer");
        let done = txn
            .execute(Statement::from_string(
                DbBackend::Sqlite,
                "UPDATE t SET v = 'x' WHERE k >= 2",
            ))
            .await
            .expect("update");
        assert_eq!(
            done.rows_affected(),
            2,
            "the answer is the last statement's"
        );
        txn.defer(insert(4, "d")).await.expect("defer");
        assert_eq!(txn.round_trips().await, 2);
        txn.commit().await.expect("commit");
        let expected = vec![
            (1, "a".to_string()),
            (2, "x".into()),
            (3, "x".into()),
            (4, "d".into()),
        ];
        assert_eq!(rows(&db).await, expected);
        usable(&w).await;
    }

    fn set_v(k: i64, v: &str) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "UPDATE t SET v = ? WHERE k = ?",
            [v.into(), k.into()],
        )
    }

    #[tokio::test]
    async fn a_checked_write_travels_with_the_next_read_and_is_checked_before_the_commit() {
        let (_dir, db, w) = database().await;
        w.execute(insert(1, "a")).await.expect("row");
        // Checked, then read: one command.
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.defer_checked(set_v(1, "b"), 1).await.expect("defer");
        assert_eq!(rows(&txn).await, vec![(1, "b".into())]);
        assert_eq!(txn.round_trips().await, 1);
        txn.commit().await.expect("commit");
        assert_eq!(rows(&db).await, vec![(1, "b".into())]);
        // Checked, then straight to the commit: the check first, then the `COMMIT`.
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.defer_checked(set_v(1, "c"), 1).await.expect("defer");
        txn.defer(insert(2, "d")).await.expect("defer");
        txn.commit().await.expect("commit");
        assert_eq!(rows(&db).await, vec![(1, "c".into()), (2, "d".into())]);
        usable(&w).await;
    }

    #[tokio::test]
    async fn a_checked_write_that_misses_fails_its_command_and_nothing_of_the_transaction_stays() {
        let (_dir, db, w) = database().await;
        w.execute(insert(1, "a")).await.expect("row");
        // Missed, found by the next read: that read fails, and the transaction is over.
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.defer(insert(5, "e")).await.expect("defer");
        txn.defer_checked(set_v(9, "x"), 1).await.expect("defer");
        let read = txn
            .query_all(Statement::from_string(DbBackend::Sqlite, "SELECT k FROM t"))
            .await;
        assert!(matches!(read, Err(DbErr::RecordNotUpdated)), "{read:?}");
        assert!(
            txn.commit().await.is_err(),
            "a failed transaction never commits"
        );
        assert_eq!(rows(&db).await, vec![(1, "a".into())]);
        usable(&w).await;
        // Missed, found at the commit: nothing commits, not even what came after it.
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.defer(insert(5, "e")).await.expect("defer");
        txn.defer_checked(set_v(1, "y"), 2).await.expect("defer");
        txn.defer(insert(6, "f")).await.expect("defer");
        let committed = txn.commit().await;
        assert!(
            matches!(committed, Err(DbErr::RecordNotUpdated)),
            "{committed:?}"
        );
        assert_eq!(rows(&db).await, vec![(1, "a".into())]);
        usable(&w).await;
        // A plain transaction checks at once.
        let txn = db.begin().await.expect("begin");
        let missed = txn.defer_checked(set_v(9, "x"), 1).await;
        assert!(matches!(missed, Err(DbErr::RecordNotUpdated)), "{missed:?}");
        txn.defer_checked(set_v(1, "z"), 1).await.expect("hit");
        txn.commit().await.expect("commit");
        assert_eq!(rows(&db).await, vec![(1, "z".into())]);
    }

    #[tokio::test]
    async fn committed_pages_reach_the_database_file_in_the_background() {
        let (dir, db, w) = database().await;
        let threshold: i64 = db
            .query_one(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA wal_autocheckpoint",
            ))
            .await
            .expect("pragma")
            .expect("a row")
            .try_get_by_index(0)
            .expect("pages");
        assert_eq!(threshold, i64::from(crate::db::WAL_AUTOCHECKPOINT_PAGES));
        let file = dir.path().join("w.db");
        let size = || std::fs::metadata(&file).expect("database file").len();
        let before = size();
        // About 2 MB (500 pages), far below the threshold: only the background checkpoint
        // copies them out of the WAL.
        let text = "x".repeat(2_000);
        for chunk in 0..20 {
            let txn = WriteTxn::begin(&w).await.expect("begin");
            for i in 0..50 {
                txn.defer(insert(chunk * 50 + i, &text))
                    .await
                    .expect("defer");
            }
            txn.commit().await.expect("commit");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while size() < before + 1_500_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes (from {before})",
                size()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rows(&db).await.len(), 1_000);
    }

    #[tokio::test]
    async fn a_failing_deferred_write_fails_the_next_call_and_nothing_of_the_transaction_stays() {
        let (_dir, db, w) = database().await;
        db.execute(insert(1, "kept")).await.expect("seed");

        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.defer(insert(2, "lost")).await.expect("defer");
        txn.defer(insert(1, "duplicate")).await.expect("defer");
        txn.defer(insert(3, "never runs")).await.expect("defer");
        let error = txn
            .commit()
            .await
            .expect_err("the duplicate fails the commit");
        assert!(
            matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
            "the database's error is kept: {error:?}"
        );
        assert_eq!(rows(&db).await, vec![(1, "kept".into())]);
        usable(&w).await;

        // The same through a read, and the transaction cannot go on afterwards.
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.defer(insert(1, "duplicate")).await.expect("defer");
        let select = || Statement::from_string(DbBackend::Sqlite, "SELECT 1");
        let read = txn.query_all(select()).await;
        assert!(read.is_err(), "the read reports the deferred failure");
        txn.defer(insert(2, "after the failure"))
            .await
            .expect("defer");
        assert!(
            txn.query_all(select()).await.is_err(),
            "nothing runs after a failure"
        );
        assert!(
            txn.commit().await.is_err(),
            "a failed transaction cannot commit"
        );
        assert_eq!(rows(&db).await, vec![(1, "kept".into())]);
        usable(&w).await;
    }

    #[tokio::test]
    async fn a_transaction_dropped_or_cancelled_before_its_commit_leaves_nothing() {
        let (_dir, db, w) = database().await;

        // Dropped after a command ran inside it: the rollback task ends it.
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.execute(insert(1, "dropped")).await.expect("insert");
        drop(txn);
        assert!(rows(&db).await.is_empty());
        usable(&w).await;

        // A call whose answer was never read: the transaction only rolls back. The call is
        // a slow query so that it is still running on the connection's thread when its
        // future is dropped after one poll.
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.execute(insert(1, "before")).await.expect("insert");
        txn.defer(insert(2, "cancelled")).await.expect("defer");
        let cancelled = txn.query_all(slow()).now_or_never();
        assert!(
            cancelled.is_none(),
            "the command was in flight when dropped"
        );
        assert!(
            txn.commit().await.is_err(),
            "a transaction with an interrupted command cannot commit"
        );
        assert!(rows(&db).await.is_empty());
        usable(&w).await;

        // Explicitly rolled back, and nothing sent at all.
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.execute(insert(1, "rolled back")).await.expect("insert");
        txn.rollback().await.expect("rollback");
        WriteTxn::begin(&w)
            .await
            .expect("begin")
            .commit()
            .await
            .expect("an empty transaction commits");
        assert!(rows(&db).await.is_empty());
        usable(&w).await;
    }

    #[tokio::test]
    async fn a_call_cancelled_while_its_failure_is_rolled_back_leaves_the_transaction_failed() {
        let (_dir, db, w) = database().await;
        db.execute(insert(1, "kept")).await.expect("seed");
        // The first poll sends the command, which fails at the duplicate; the second reads
        // the failure and sends the rollback, still pending when the call is dropped.
        let txn = loop {
            let txn = WriteTxn::begin(&w).await.expect("begin");
            txn.execute(insert(2, "in the transaction"))
                .await
                .expect("insert");
            txn.defer(insert(1, "duplicate")).await.expect("defer");
            let in_window = {
                let read = txn.query_all(slow());
                tokio::pin!(read);
                let sent = futures::poll!(read.as_mut()).is_pending();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                sent && futures::poll!(read.as_mut()).is_pending()
            };
            if in_window {
                break txn;
            }
        };
        let later = txn.execute(insert(3, "after the failure")).await;
        assert!(later.is_err(), "nothing runs after a failure: {later:?}");
        assert!(txn.commit().await.is_err());
        assert_eq!(rows(&db).await, vec![(1, "kept".into())]);
        usable(&w).await;
    }

    #[tokio::test]
    async fn only_single_statements_with_positional_parameters_are_pipelined() {
        let (_dir, db, w) = database().await;
        let txn = WriteTxn::begin(&w).await.expect("begin");
        let refused = [
            "UPDATE t SET v = ?2 WHERE k = ?1",
            "UPDATE t SET v = $1",
            "INSERT INTO t (k, v) VALUES (1, 'a'); INSERT INTO t (k, v) VALUES (2, 'b')",
            "INSERT INTO t (k, v) VALUES (1, 'a') -- a comment",
            "/* a comment */ SELECT 1",
            "  ;  ",
        ];
        for sql in refused {
            let stmt = || Statement::from_string(DbBackend::Sqlite, sql);
            assert!(txn.defer(stmt()).await.is_err(), "deferred: {sql}");
            assert!(txn.execute(stmt()).await.is_err(), "sent: {sql}");
        }
        drop(txn);
        // A refused statement ends its transaction, as a failed one does: what was held
        // back or already sent never commits without it.
        for sent_first in [false, true] {
            let txn = WriteTxn::begin(&w).await.expect("begin");
            txn.defer(insert(1, "a")).await.expect("defer");
            if sent_first {
                assert_eq!(rows(&txn).await.len(), 1, "the insert was sent");
            }
            let refused = Statement::from_string(DbBackend::Sqlite, "UPDATE t SET v = $1");
            assert!(txn.execute(refused).await.is_err());
            txn.defer(insert(2, "b"))
                .await
                .expect("deferring is still taken");
            let error = txn.commit().await.expect_err("the commit fails");
            assert!(error.to_string().contains("refused"), "{error}");
        }
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.defer(insert(1, "a")).await.expect("defer");
        let refused = Statement::from_string(DbBackend::Sqlite, "SELECT ?1");
        assert!(txn.defer(refused).await.is_err());
        assert!(txn.commit().await.is_err(), "the commit fails");
        let accepted = [
            "INSERT INTO t (k, v) VALUES (?, ?)",
            "INSERT INTO t (k, v) VALUES (7, 'a; b -- c /* d */ ?1 $2');",
            r#"SELECT "k;--?1" FROM "t" WHERE [v] = ?"#,
        ];
        for sql in accepted {
            assert_eq!(one_statement(sql), Ok(()), "{sql}");
        }
        assert!(rows(&db).await.is_empty(), "nothing refused ran");
        usable(&w).await;
    }

    #[tokio::test]
    async fn writers_of_one_pool_share_one_writing_connection_beside_the_readers() {
        let (_dir, db, w) = database().await;
        let other = Writer::new(&db);
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.execute(insert(1, "held")).await.expect("insert");
        // The second writer waits for the first's transaction, not for SQLite's busy
        // handler: its write goes in only after the commit.
        let waiting = tokio::spawn(async move {
            let t = WriteTxn::begin(&other).await.expect("begin");
            t.execute(insert(2, "after")).await.expect("insert");
            t.commit().await.expect("commit");
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second writer waits its turn");
        // Readers use the pool, beside the open write transaction, and see commits only.
        assert!(rows(&db).await.is_empty());
        txn.commit().await.expect("commit");
        waiting.await.expect("the second writer");
        assert_eq!(
            rows(&db).await,
            vec![(1, "held".into()), (2, "after".into())]
        );
        assert!(
            Arc::ptr_eq(
                w.lane.as_ref().expect("a lane"),
                Writer::new(&db).lane.as_ref().expect("a lane")
            ),
            "a new writer of the pool finds the live lane"
        );
        usable(&w).await;
    }

    #[tokio::test]
    async fn a_writer_runs_each_statement_as_its_own_committed_transaction() {
        let (_dir, db, w) = database().await;
        let done = w.execute(insert(1, "a")).await.expect("insert");
        assert_eq!(done.rows_affected(), 1);
        let error = w.execute(insert(1, "duplicate")).await.expect_err("unique");
        assert!(
            matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
            "{error:?}"
        );
        let returned = w
            .query_all(Statement::from_string(
                DbBackend::Sqlite,
                "UPDATE t SET v = 'b' WHERE k = 1 RETURNING v",
            ))
            .await
            .expect("update");
        assert_eq!(returned.len(), 1);
        assert_eq!(rows(&db).await, vec![(1, "b".into())], "committed");
        usable(&w).await;
    }

    #[tokio::test]
    async fn an_in_memory_database_is_written_through_its_pool() {
        let (db, w) = database_at("sqlite::memory:".into()).await;
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.defer(insert(1, "a")).await.expect("defer");
        txn.commit().await.expect("commit");
        w.execute(insert(2, "b")).await.expect("insert");
        // A connection of its own would have written to a database of its own.
        assert_eq!(rows(&db).await, vec![(1, "a".into()), (2, "b".into())]);
    }

    /// The writing connection, for tests that look inside.
    fn own(w: &Writer) -> Arc<Mutex<Option<SqliteConnection>>> {
        w.lane.as_ref().expect("a lane").own.clone()
    }

    #[tokio::test]
    async fn a_write_whose_caller_stopped_waiting_after_its_commit_keeps_the_connection() {
        let (_dir, db, w) = database().await;
        w.execute(insert(0, "opens the connection"))
            .await
            .expect("insert");
        {
            // An insert that takes SQLite tens of ms, so that the first poll, which sends
            // it, cannot also see it finish (a plain insert sometimes did, on an idle core).
            let slow_insert = Statement::from_string(
                DbBackend::Sqlite,
                "INSERT INTO t (k, v) \
                 WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) \
                 SELECT 1, 'committed unseen' FROM (SELECT count(*) FROM c)",
            );
            let mut write = Box::pin(w.execute(slow_insert));
            assert!((&mut write).now_or_never().is_none(), "in flight");
            // sqlx's thread runs the whole command (`BEGIN`, insert, `COMMIT`) meanwhile;
            // the call is dropped only once a reader sees its row. (Dropped earlier, sqlx
            // would stop the command at its next answer and the rollback would undo it.)
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while rows(&db).await.len() < 2 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the write never committed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        // The dropped call's rollback finds no transaction open: nothing to do.
        let open = own(&w).lock().await.is_some();
        assert!(open, "the writing connection was closed for nothing");
        assert_eq!(rows(&db).await.len(), 2);
        usable(&w).await;
    }

    #[test]
    fn a_connection_left_inside_a_transaction_is_closed_and_writes_go_on() {
        let first = tokio::runtime::Runtime::new().expect("runtime");
        let (_dir, db, w) = first.block_on(database());
        first.block_on(async {
            let txn = WriteTxn::begin(&w).await.expect("begin");
            txn.execute(insert(1, "never committed"))
                .await
                .expect("insert");
            // Parked in a task when its runtime shuts down: the rollback task its drop
            // spawns never runs.
            tokio::spawn(async move {
                let _txn = txn;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
        });
        first.shutdown_timeout(std::time::Duration::from_secs(1));
        let second = tokio::runtime::Runtime::new().expect("runtime");
        second.block_on(async {
            for k in 10..13 {
                w.execute(insert(k, "later")).await.expect("a later write");
            }
            let keys: Vec<i64> = rows(&db).await.into_iter().map(|(k, _)| k).collect();
            assert_eq!(keys, vec![10, 11, 12], "the open transaction was discarded");
        });
    }

    #[tokio::test]
    async fn a_writer_refuses_once_its_pool_is_closed() {
        let (_dir, db, w) = database().await;
        w.execute(insert(1, "before")).await.expect("insert");
        db.clone().close().await.expect("closes");
        let write = w.execute(insert(2, "after")).await;
        assert!(write.is_err(), "a write after the pool closed: {write:?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_writing_connection_never_creates_the_database_file() {
        let (dir, _db, w) = database().await;
        w.execute(insert(1, "a")).await.expect("insert");
        // Closed (as after a failed rollback), then the file goes away.
        drop(own(&w).lock().await.take());
        let path = dir.path().join("w.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert!(w.execute(insert(2, "b")).await.is_err());
        assert!(!path.exists(), "a new, empty database was created");
    }

    #[tokio::test]
    async fn reads_go_on_while_a_pool_write_waits_for_the_writing_connection() {
        let (_dir, db, w) = database().await;
        let txn = WriteTxn::begin(&w).await.expect("begin");
        txn.execute(insert(1, "writing")).await.expect("insert");
        // A write through the pool (the user API in `pinnacle dev`) waits in SQLite's busy
        // handler for the writing connection's transaction; it holds a pool connection.
        let pool = db.clone();
        let waiting = tokio::spawn(async move { pool.execute(insert(2, "pool")).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let read = tokio::time::timeout(std::time::Duration::from_secs(2), rows(&db)).await;
        assert_eq!(read.expect("a read beside it is not held up"), vec![]);
        txn.commit().await.expect("commit");
        waiting
            .await
            .expect("task")
            .expect("the pool write goes in after");
        assert_eq!(rows(&db).await.len(), 2);
    }

    #[test]
    fn a_transaction_dropped_without_a_runtime_does_not_panic() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (_dir, txn) = runtime.block_on(async {
            let (dir, _db, w) = database().await;
            let txn = WriteTxn::begin(&w).await.expect("begin");
            txn.execute(insert(1, "open")).await.expect("insert");
            (dir, txn)
        });
        let dropped = std::thread::spawn(move || drop(txn)).join();
        assert!(dropped.is_ok(), "dropping outside a runtime panicked");
    }
}
