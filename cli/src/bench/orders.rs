//! `pinnacle bench orders`: order round-trip latency and throughput on the paper broker,
//! measured side by side with a raw NATS request-reply echo, a raw JetStream publish+ack
//! and the raw database's own read and write ([`raw_db`]) in the same run, at the same
//! concurrency, with the same payload size.
//!
//! It starts its own nats-server and stack (publisher, order worker, user API) in this
//! process on a throw-away SQLite file or `--database-url`. Each concurrency level gets its
//! own fresh users ([`super::users`]), so no run inherits another's order history, and
//! every paper account starts with enough cash for every order it will be sent
//! ([`paper_cash_for`]). Orders are realistic: each client sends pairs of a BUY and then the
//! matching SELL, a MARKET order of one share each on the same user and simulated symbol
//! ([`order_for`]), so a DELIVERY sell always finds the share its buy bought, however many
//! clients share a user.
//!
//! Every request must succeed: an error reply is decoded to `CODE: message`, counted, and
//! makes the command exit non-zero once the report is printed ([`OrdersReport::check`]).
//!
//! [`wire`] holds the orders and their replies, [`raw_db`] the database baselines. [`run`]
//! stays one sequence of about 100 lines on purpose (start the stack, prepare the
//! baselines, measure each concurrency, stop): a third of it is the stack's settings, one
//! literal.

pub mod raw_db;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use pinnacle_common::codec::Encoding;
use pinnacle_common::config::{
    DatabaseSettings, MarketDataSettings, NatsSettings, SimFeedSettings, UserApiSettings,
    WorkerSettings,
};
use pinnacle_common::crypto::Vault;
use pinnacle_common::model::Tick;
use pinnacle_common::subjects;
use sea_orm::{ConnectionTrait as _, DbBackend};

use super::machine::Machine;
use super::measure::{measure, Measurement};
use super::process::{rss_kib, Servers};
use super::report::OrdersReport;
use super::users::{create_users, BenchUser};
use crate::nats_server::NatsServer;
use crate::stack::{Stack, StackSettings};

pub use wire::{describe_error, order_for, paper_cash_for, PRICE_CEILING, QUANTITY, SYMBOLS};

use wire::place;

/// The raw baselines' subjects.
const ECHO_SUBJECT: &str = "bench.echo";
const JS_STREAM: &str = "BENCH";
const JS_SUBJECT: &str = "bench.js.publish";

/// The stack's PostgreSQL pool size unless `--database-connections` says otherwise: on the
/// 2-core development machine 16 connections served 64 clients better than 64 did
/// (docs/BENCHMARKS.md), as each connection is a server process competing for the same
/// cores.
pub const DEFAULT_POOL: u32 = 16;

/// The raw database baselines' rows.
pub const RAW_DB_READ: &str = "raw database read (one statement)";
/// See [`RAW_DB_READ`].
pub const RAW_DB_WRITE: &str = "raw database write (one-row commit)";

/// What to run.
#[derive(Debug, Clone)]
pub struct OrdersOptions {
    /// Requests per concurrency level (for each row: the orders and both baselines).
    pub requests: usize,
    /// Concurrency levels to measure.
    pub clients: Vec<usize>,
    /// Users to spread the orders over; `None`: as many as clients.
    pub users: Option<usize>,
    /// Database; a temporary SQLite file when `None`.
    pub database_url: Option<String>,
    /// The stack's pool size on PostgreSQL ([`DEFAULT_POOL`] unless measuring another).
    pub database_connections: u32,
    /// Starting cash per paper account, paise; `None`: sized by [`paper_cash_for`].
    pub paper_cash: Option<i64>,
}

impl OrdersOptions {
    /// `(clients, users)` for each run.
    fn runs(&self) -> Vec<(usize, usize)> {
        self.clients
            .iter()
            .map(|&clients| {
                let clients = clients.max(1);
                (clients, self.users.unwrap_or(clients).max(1))
            })
            .collect()
    }
}

/// Waits until every bench symbol has ticked twice (so the paper broker has prices), and
/// checks each price against the cash sizing.
async fn wait_for_prices(client: &async_nats::Client) -> anyhow::Result<()> {
    let mut ticks = client.subscribe(subjects::MD_TICK_ALL).await?;
    let mut seen = [0u32; SYMBOLS.len()];
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.iter().any(|&n| n < 2) {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, ticks.next())
            .await
            .ok()
            .flatten()
            .context("no ticks for the bench symbols within 10 s")?;
        let Ok(tick) = Encoding::MsgPack.decode::<Tick>(&message.payload) else {
            continue;
        };
        if let Some(n) = SYMBOLS.iter().position(|(s, _)| *s == tick.symbol) {
            anyhow::ensure!(
                tick.ltp * QUANTITY <= PRICE_CEILING,
                "{} trades at {} paise, above the cash sizing ceiling of {PRICE_CEILING}",
                tick.symbol,
                tick.ltp
            );
            seen[n] += 1;
        }
    }
    Ok(())
}

/// Runs the benchmark and returns its report (which may record failures: see
/// [`OrdersReport::check`]).
pub async fn run(options: OrdersOptions) -> anyhow::Result<OrdersReport> {
    let runs = options.runs();
    let paper_cash = options
        .paper_cash
        .unwrap_or_else(|| paper_cash_for(options.requests, &runs));
    let dir = tempfile::tempdir()?;
    let server = NatsServer::start(
        &crate::nats_server::find_binary()?,
        &dir.path().join("nats"),
        &[],
    )?;
    let nats = NatsSettings::for_url(server.url());
    let database_url = options.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        )
    });
    let backend = database_url.split(':').next().unwrap_or("?").to_string();
    let vault = Arc::new(Vault::new(1, &[9u8; 32]));
    let rss_start_kib = rss_kib();
    let database = DatabaseSettings {
        database_url,
        database_max_connections: options.database_connections,
    };
    let stack = Stack::start(stack_settings(&nats, database, &vault, paper_cash)).await?;
    let audit = pinnacle_common::audit::AuditLog::new(
        pinnacle_common::nats::connect(&nats, "bench").await?,
        Duration::from_secs(2),
        vault.clone(),
    );
    let client = pinnacle_common::nats::connect(&nats, "bench-client").await?;
    wait_for_prices(&client).await?;

    let payload_bytes = Encoding::MsgPack
        .encode(&order_for(0, 1, 1, "b00000000-64-1999".into()).1)?
        .len();
    let body = Bytes::from(vec![0u8; payload_bytes]);
    let echo_task = start_echo(&client).await?;
    let js = baseline_stream(&client).await?;
    raw_db::create(&stack.db, &body).await?;

    let rows_of = ClientsRun {
        servers: Servers {
            nats: Some(server.pid()),
            postgres: stack.db.get_database_backend() == DbBackend::Postgres,
        },
        client: &client,
        js: &js,
        db: &stack.db,
        body: &body,
        requests: options.requests,
    };
    let mut rows: Vec<Measurement> = Vec::new();
    for &(clients, user_count) in &runs {
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let users = Arc::new(create_users(&stack.db, &vault, &audit, &run, user_count).await?);

        rows.extend(rows_of.measure(clients, user_count, users, run).await?);
    }
    echo_task.abort();
    raw_db::drop_table(&stack.db).await?;
    stack.stop().await?;
    drop(server);
    Ok(OrdersReport {
        backend,
        payload_bytes,
        paper_cash,
        rss_start_kib,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        machine: Machine::read(),
        rows,
        ceilings: Vec::new(),
    }
    .with_ceilings())
}

/// The stack under test: the paper broker with `paper_cash` per account, a simulated feed
/// that ticks whatever the hour, the user API on a free port.
fn stack_settings(
    nats: &NatsSettings,
    database: DatabaseSettings,
    vault: &Arc<Vault>,
    paper_cash: i64,
) -> StackSettings {
    StackSettings {
        nats: nats.clone(),
        database,
        vault: vault.clone(),
        sim: SimFeedSettings {
            symbols: SYMBOLS
                .iter()
                .map(|(symbol, price)| format!("NSE:{symbol}@{price}"))
                .collect::<Vec<_>>()
                .join(","),
            interval_ms: 100,
            depth: false,
            // The benchmark needs prices whatever the hour.
            hours: pinnacle_common::config::SimHours::Always,
            ..SimFeedSettings::default()
        },
        md: MarketDataSettings::default(),
        angel: Default::default(),
        worker: WorkerSettings {
            paper_cash,
            ..WorkerSettings::default()
        },
        api: UserApiSettings {
            bind: "127.0.0.1:0".into(),
            admin_token: None,
        },
        metrics: Default::default(),
    }
}

/// The JetStream context of the raw publish+ack baseline, with its stream created.
async fn baseline_stream(
    client: &async_nats::Client,
) -> anyhow::Result<async_nats::jetstream::Context> {
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: JS_STREAM.into(),
        subjects: vec![JS_SUBJECT.into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok(js)
}

/// What every measured row of a run shares.
struct ClientsRun<'a> {
    /// The servers whose CPU time every row accounts.
    servers: Servers,
    /// The benchmark's own connection.
    client: &'a async_nats::Client,
    /// JetStream on it, for the publish+ack baseline.
    js: &'a async_nats::jetstream::Context,
    /// The stack's database, for the raw read and write baselines.
    db: &'a sea_orm::DatabaseConnection,
    /// A payload the size of one order, for the baselines.
    body: &'a Bytes,
    /// Requests per row.
    requests: usize,
}

impl ClientsRun<'_> {
    /// The five rows at `clients` concurrency: the raw NATS echo, the raw JetStream
    /// publish+ack, the raw database read and write, and order place over `users` (`run`
    /// makes the client order ids and the written rows unique).
    async fn measure(
        &self,
        clients: usize,
        user_count: usize,
        users: Arc<Vec<BenchUser>>,
        run: String,
    ) -> anyhow::Result<Vec<Measurement>> {
        let mut out = Vec::new();
        let servers = self.servers;
        let raw = self.client.clone();
        let b = self.body.clone();
        out.push(
            measure(
                "raw NATS echo",
                servers,
                clients,
                0,
                self.requests,
                move |_| {
                    let (raw, b) = (raw.clone(), b.clone());
                    async move {
                        raw.request(ECHO_SUBJECT, b)
                            .await
                            .map(drop)
                            .map_err(|e| format!("NO_REPLY: {e}"))
                    }
                },
            )
            .await?,
        );
        let jetstream = self.js.clone();
        let b = self.body.clone();
        out.push(
            measure(
                "raw JetStream publish+ack",
                servers,
                clients,
                0,
                self.requests,
                move |_| {
                    let (jetstream, b) = (jetstream.clone(), b.clone());
                    async move {
                        let ack = jetstream
                            .publish(JS_SUBJECT, b)
                            .await
                            .map_err(|e| format!("PUBLISH: {e}"))?;
                        ack.await.map(drop).map_err(|e| format!("NO_ACK: {e}"))
                    }
                },
            )
            .await?,
        );
        let db = self.db.clone();
        out.push(
            measure(RAW_DB_READ, servers, clients, 0, self.requests, move |_| {
                let db = db.clone();
                async move { raw_db::read(&db).await }
            })
            .await?,
        );
        let writer = pinnacle_common::writes::Writer::new(self.db);
        let (b, written) = (self.body.clone(), run.clone());
        out.push(
            measure(RAW_DB_WRITE, servers, clients, 0, self.requests, move |i| {
                let (writer, b) = (writer.clone(), b.clone());
                let id = format!("{written}-{clients}-{i}");
                async move { raw_db::write(&writer, &id, &b).await }
            })
            .await?,
        );
        let orders = self.client.clone();
        let stored_before = stored_messages(self.js).await?;
        let mut placed = measure(
            "order place (paper)",
            servers,
            clients,
            user_count,
            self.requests,
            move |i| {
                let (orders, users) = (orders.clone(), users.clone());
                let (user, order) =
                    order_for(i, clients, users.len(), format!("b{run}-{clients}-{i}"));
                async move { place(&orders, &users[user], &order).await }
            },
        )
        .await?;
        let stored = settled_stored_messages(self.js).await?;
        placed.jetstream_messages_per_request =
            Some(stored.saturating_sub(stored_before) as f64 / self.requests.max(1) as f64);
        out.push(placed);
        Ok(out)
    }
}

/// The streams an order stores messages in: its audit event, and its lifecycle events.
const ORDER_STREAMS: [&str; 2] = [subjects::AUDIT_STREAM, subjects::ORDER_EVENTS_STREAM];

/// Messages ever stored in [`ORDER_STREAMS`] (their last sequences: limits and purges do
/// not lower them).
async fn stored_messages(js: &async_nats::jetstream::Context) -> anyhow::Result<u64> {
    let mut total = 0;
    for name in ORDER_STREAMS {
        let mut stream = js
            .get_stream(name)
            .await
            .with_context(|| format!("stream {name}"))?;
        total += stream.info().await?.state.last_sequence;
    }
    Ok(total)
}

/// [`stored_messages`] once it has stopped moving (the outbox relay publishes an order's
/// last events after its reply), within 5 s.
async fn settled_stored_messages(js: &async_nats::jetstream::Context) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = stored_messages(js).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = stored_messages(js).await?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Answers every request on [`ECHO_SUBJECT`] with its own payload.
async fn start_echo(client: &async_nats::Client) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut echo = client.subscribe(ECHO_SUBJECT).await?;
    client.flush().await?;
    let responder = client.clone();
    Ok(tokio::spawn(async move {
        while let Some(message) = echo.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, message.payload).await;
            }
        }
    }))
}
