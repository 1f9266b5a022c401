//! The test harness: a real `nats-server` and a real database for every test.
//!
//! # Layout
//! - [`TestNats`]: nats-server 2.10+ (the one `scripts/setup.sh` installs) on a dynamic
//!   loopback port with its own JetStream store dir; killed on drop.
//! - [`TestDb`]: a fresh database per test, on SQLite or PostgreSQL ([`Backend`]);
//!   PostgreSQL databases are dropped afterwards.
//! - [`backends`]: SQLite always, plus PostgreSQL when reachable. With
//!   `PINNACLE_REQUIRE_POSTGRES=1` (CI) an unreachable PostgreSQL is a failure.
//! - [`TestStack`]: the whole system (publisher, worker, user API) wired exactly as
//!   `pinnacle dev` wires it, plus helpers to create users and place orders.
//! - [`angel`]: the SmartAPI simulator with the stack pointed at it.
//! - [`cluster`]: a 3-node cluster from the shipped `nats/` configs, with authorization.
//! - [`logs`]: a capturing subscriber, so tests can assert no secret was logged.
//! - [`promql`]: scrapes of several processes and the dashboard's PromQL subset
//!   evaluated over them.
//! - [`sim`]: Angel One on the SmartAPI simulator: accounts, settings, and the publisher
//!   alone streaming from it ([`sim::SimPublisher`]).

pub mod angel;
pub mod cluster;
pub mod logs;
pub mod promql;
pub mod sim;
mod stack;

use std::time::Duration;

use pinnacle_cli::nats_server::NatsServer;
use pinnacle_store::testing::PostgresDatabase;
use sea_orm::{ConnectionTrait, Database};
pub use stack::{market, no_limits, worker_settings, TestStack, TestUser, ADMIN_TOKEN};

/// The project's Python (from `scripts/setup.sh`), or `PINNACLE_PYTHON`.
pub fn python() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PINNACLE_PYTHON") {
        return path.into();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join(".venv/bin/python"))
        .find(|p| p.exists())
        .expect(".venv/bin/python: run scripts/setup.sh")
}

/// The server every harness connects to for PostgreSQL administration.
pub use pinnacle_store::testing::postgres_admin_url;

/// A database engine under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file in a temporary directory.
    Sqlite,
    /// A fresh database on the local server.
    Postgres,
}

fn postgres_reachable() -> bool {
    let url = postgres_admin_url();
    let host_port = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        })
}

/// The backends to run database tests on.
pub fn backends() -> Vec<Backend> {
    let required = std::env::var("PINNACLE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    if postgres_reachable() {
        vec![Backend::Sqlite, Backend::Postgres]
    } else if required {
        panic!(
            "PINNACLE_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable at {}",
            postgres_admin_url()
        );
    } else {
        eprintln!("note: PostgreSQL unreachable; database tests run on SQLite only");
        vec![Backend::Sqlite]
    }
}

/// A running nats-server for one test.
#[derive(Debug)]
pub struct TestNats {
    /// The process (killed on drop).
    pub server: NatsServer,
    /// Its store dir, removed on drop.
    _dir: tempfile::TempDir,
}

impl TestNats {
    /// Starts nats-server with JetStream on a dynamic loopback port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let binary = pinnacle_cli::nats_server::find_binary().expect("nats-server 2.10+");
        let server = NatsServer::start(&binary, dir.path(), &[]).expect("nats-server starts");
        Self { server, _dir: dir }
    }

    /// The client URL.
    pub fn url(&self) -> &str {
        self.server.url()
    }
}

/// A fresh, empty database for one test.
#[derive(Debug)]
pub struct TestDb {
    /// Which engine.
    pub backend: Backend,
    /// Connection URL.
    pub url: String,
    /// The PostgreSQL database, dropped on drop.
    pg: Option<PostgresDatabase>,
    /// SQLite's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Creates a database on `backend`.
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Self {
                    backend,
                    url,
                    pg: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let pg = PostgresDatabase::create("pinnacle_test")
                    .await
                    .expect("create test database");
                Self {
                    backend,
                    url: pg.url().to_string(),
                    pg: Some(pg),
                    _dir: None,
                }
            }
        }
    }
}

impl TestDb {
    /// Takes this PostgreSQL database down for `outage` as a stopped server looks to its
    /// clients: every connection to it is closed and new ones are refused
    /// (`ALLOW_CONNECTIONS false`, then `pg_terminate_backend`), then it takes connections
    /// again. Other databases of the server are untouched. SQLite has no server to stop;
    /// [`stall_database`] holds its write lock instead.
    pub async fn outage(&self, outage: Duration) {
        let name = self
            .pg
            .as_ref()
            .map(PostgresDatabase::name)
            .expect("an outage needs a PostgreSQL database");
        let admin = Database::connect(postgres_admin_url())
            .await
            .expect("connect to PostgreSQL");
        let allow =
            |allowed: bool| format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {allowed}");
        admin
            .execute_unprepared(&allow(false))
            .await
            .expect("refuse connections");
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .await
            .expect("close connections");
        tokio::time::sleep(outage).await;
        admin
            .execute_unprepared(&allow(true))
            .await
            .expect("take connections again");
        let _ = admin.close().await;
    }
}

/// A loopback port for a process a test is about to start, free when this returns.
///
/// Ports come from below the kernel's ephemeral range (32768–60999 on Linux), where it
/// never puts a port of its own (`bind(0)`, outgoing connections, a dynamic nats-server),
/// and no two calls in one test binary return the same one. So a port handed out here and
/// closed again stays free until its process binds it, even while other tests start
/// processes or a stopped nats-server waits to be restarted on its port. (`bind(0)` and
/// close, the usual trick, lets the kernel hand the same port to the next caller.)
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Start where another test binary running beside this one is unlikely to be.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

/// Serialises the tests that load the machine or measure pace (the fault suite, the
/// rate-limit burst): on a 2-core machine two of them at once would measure each other.
/// Hold the guard for the whole test.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stalls the database at `url` for `stall`: holds the write lock (SQLite) or an exclusive
/// lock on `orders` (PostgreSQL), as a stuck transaction or a failing disk would.
pub async fn stall_database(url: &str, stall: Duration) {
    let lock = lock_database(url).await;
    tokio::time::sleep(stall).await;
    lock.release().await;
}

/// A stuck transaction that holds the database at `url` until [`DatabaseLock::release`]:
/// the write lock (SQLite) or an exclusive lock on `orders` (PostgreSQL). Taken when this
/// returns.
pub async fn lock_database(url: &str) -> DatabaseLock {
    lock_database_with(url, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE").await
}

/// [`lock_database`], with `postgres_lock` (a `LOCK TABLE …` statement) as what the stuck
/// transaction holds on PostgreSQL. On SQLite any write takes the one write lock.
pub async fn lock_database_with(url: &str, postgres_lock: &str) -> DatabaseLock {
    use sea_orm::{DbBackend, TransactionTrait};
    let db = pinnacle_common::db::connect(&pinnacle_common::config::DatabaseSettings {
        database_url: url.to_string(),
        database_max_connections: 1,
    })
    .await
    .expect("stall connection");
    let txn = db.begin().await.expect("begin");
    let lock = match db.get_database_backend() {
        // A stuck transaction, not a paused client: the server must not end it after
        // `IDLE_IN_TRANSACTION_TIMEOUT`, as it would a paused client's.
        DbBackend::Postgres => {
            txn.execute_unprepared("SET LOCAL idle_in_transaction_session_timeout = 0")
                .await
                .expect("no idle timeout");
            postgres_lock
        }
        _ => "UPDATE orders SET status = status",
    };
    txn.execute_unprepared(lock).await.expect("lock");
    DatabaseLock { _db: db, txn }
}

/// The lock [`lock_database`] holds.
#[derive(Debug)]
pub struct DatabaseLock {
    _db: sea_orm::DatabaseConnection,
    txn: sea_orm::DatabaseTransaction,
}

impl DatabaseLock {
    /// Rolls the stuck transaction back: the database serves again.
    pub async fn release(self) {
        self.txn.rollback().await.expect("release");
    }
}

/// Every order lifecycle event stored in `ORDER_EVENTS` for `user_id`, in stream order.
pub async fn order_events(
    client: &async_nats::Client,
    user_id: &str,
) -> Vec<pinnacle_common::model::OrderEvent> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js
        .get_stream(pinnacle_common::subjects::ORDER_EVENTS_STREAM)
        .await
        .expect("order events stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let subject = pinnacle_common::subjects::order_events(user_id);
    let mut events = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        if message.subject.as_str() == subject {
            events.push(
                pinnacle_common::codec::Encoding::MsgPack
                    .decode(&message.payload)
                    .expect("order event decodes"),
            );
        }
    }
    events
}

/// Every order event of `user_id` read the way the trader reads them: the `events` verb,
/// `limit` a page, with `token`, from the first; with the last sequence read. Every page
/// must hold what PROTOCOL.md promises: at most `limit` events (exactly `limit` while more
/// are pending: the stream holds nothing but events), rising sequences, each with its
/// trace context, and `last_sequence` where the next page starts. A refused page is the
/// error.
pub async fn order_events_paged(
    client: &async_nats::Client,
    user_id: &str,
    token: &str,
    limit: u32,
) -> Result<(Vec<pinnacle_common::model::OrderEvent>, u64), pinnacle_common::error::ErrorBody> {
    use pinnacle_common::codec::Encoding;
    use pinnacle_common::model::{EventPage, Reply};
    use pinnacle_common::subjects::{self, headers};
    let (mut events, mut after) = (Vec::new(), 0);
    let mut stream: Option<String> = None;
    loop {
        let mut hdrs = async_nats::HeaderMap::new();
        hdrs.insert(headers::AUTHORIZATION, format!("Bearer {token}").as_str());
        let body = serde_json::json!({"after": after, "limit": limit, "stream": stream});
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            client.request_with_headers(
                subjects::order(user_id, subjects::verbs::EVENTS),
                hdrs,
                Encoding::MsgPack.encode(&body).expect("encode"),
            ),
        )
        .await
        .expect("a page within 10 s")
        .expect("a page");
        let reply: Reply<EventPage> = Encoding::MsgPack
            .decode(&reply.payload)
            .expect("a page decodes");
        let Some(page) = reply.result else {
            return Err(reply.error.expect("a refused page has its error"));
        };
        assert!(page.events.len() <= limit as usize, "{page:?}");
        assert!(!page.rewound, "the stream was not re-created: {page:?}");
        if let Some(stream) = &stream {
            assert_eq!(*stream, page.stream, "every page counts in one stream");
        }
        stream = Some(page.stream.clone());
        if page.pending > 0 {
            assert_eq!(
                page.events.len(),
                limit as usize,
                "a page short of its limit"
            );
        }
        for stored in &page.events {
            assert!(stored.sequence > after, "sequences rise: {page:?}");
            assert!(
                stored.traceparent.is_some(),
                "an event keeps its trace: {stored:?}"
            );
            after = stored.sequence;
        }
        assert_eq!(page.last_sequence, after, "{page:?}");
        events.extend(page.events.into_iter().map(|stored| stored.event));
        if page.pending == 0 {
            return Ok((events, after));
        }
    }
}

/// Asserts that `events` (one user's, in stream order) hold every transition of order
/// `order_id` exactly once and in order, from `NEW` to `last`: each event leaves the state
/// the one before it entered, and no event id repeats.
pub fn assert_complete_history(
    events: &[pinnacle_common::model::OrderEvent],
    order_id: &str,
    last: pinnacle_common::model::OrderStatus,
) {
    use pinnacle_common::model::OrderStatus;
    let history: Vec<_> = events
        .iter()
        .filter(|e| e.order.order_id == order_id)
        .collect();
    let statuses: Vec<_> = history.iter().map(|e| e.order.status).collect();
    assert!(
        history.len() >= 2,
        "{order_id}: too few events: {statuses:?}"
    );
    assert_eq!(history[0].order.status, OrderStatus::New, "{statuses:?}");
    assert_eq!(history[0].previous_status, None, "{statuses:?}");
    for pair in history.windows(2) {
        assert_eq!(
            pair[1].previous_status,
            Some(pair[0].order.status),
            "{order_id}: out of order or missing: {statuses:?}"
        );
    }
    let mut ids: Vec<_> = history.iter().map(|e| e.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), history.len(), "{order_id}: duplicated events");
    assert_eq!(statuses.last(), Some(&last), "{order_id}: {statuses:?}");
}

/// Every audit event stored for `user_id`, decoded, with its raw payload.
pub async fn audit_events(
    client: &async_nats::Client,
    user_id: &str,
) -> Vec<(pinnacle_common::model::AuditEvent, bytes::Bytes)> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js
        .get_stream(pinnacle_common::subjects::AUDIT_STREAM)
        .await
        .expect("audit stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let subject = pinnacle_common::subjects::audit_credential(user_id);
    let mut events = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        if message.subject.as_str() == subject {
            let event = pinnacle_common::codec::Encoding::MsgPack
                .decode(&message.payload)
                .expect("audit event decodes");
            events.push((event, message.payload));
        }
    }
    events
}
