//! `pinnacle bench orders`: order round-trip latency and throughput on the paper broker,
//! measured side by side with a raw NATS request-reply echo and a raw JetStream
//! publish+ack in the same run, at the same concurrency, with the same payload size.
//!
//! It starts its own nats-server and stack (publisher, order worker, user API) in this
//! process on a throw-away SQLite file or `--database-url`. Each concurrency level gets its
//! own fresh users ([`super::users`]), so no run inherits another's order history, and
//! every paper account starts with enough cash for every order it will be sent
//! ([`paper_cash_for`]). Orders are realistic: per user they alternate a BUY and a SELL
//! MARKET order of one share on the same simulated symbol, cycling over [`SYMBOLS`].
//!
//! Every request must succeed: an error reply is decoded to `CODE: message`, counted, and
//! makes the command exit non-zero once the report is printed ([`OrdersReport::check`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use pinnacle_common::codec::{self, Encoding};
use pinnacle_common::config::{
    DatabaseSettings, MarketDataSettings, NatsSettings, SimFeedSettings, UserApiSettings,
    WorkerSettings,
};
use pinnacle_common::crypto::Vault;
use pinnacle_common::model::{OrderReply, OrderRequest, OrderStatus, OrderType, Side, Tick};
use pinnacle_common::subjects::{self, headers};
use serde::Deserialize;

use super::measure::{measure, Measurement};
use super::process::rss_kib;
use super::report::OrdersReport;
use super::users::{create_users, BenchUser};
use crate::nats_server::NatsServer;
use crate::stack::{Stack, StackSettings};

/// The simulated NSE equities orders go to, with their starting prices in rupees.
pub const SYMBOLS: [(&str, &str); 3] = [
    ("SBIN-EQ", "820.50"),
    ("INFY-EQ", "1530.25"),
    ("TCS-EQ", "3410"),
];

/// Cash is sized as if every order were a BUY at this price (paise): ₹10,000, about three
/// times the dearest starting price above. The run checks the live prices against it.
pub const PRICE_CEILING: i64 = 10_000 * 100;

/// Shares per order.
pub const QUANTITY: i64 = 1;

/// The raw baselines' subjects.
const ECHO_SUBJECT: &str = "bench.echo";
const JS_STREAM: &str = "BENCH";
const JS_SUBJECT: &str = "bench.js.publish";

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

/// Cash every paper account needs so that no order fails for funds: as if each of the
/// most orders one user receives in a run were a BUY at [`PRICE_CEILING`].
pub fn paper_cash_for(requests: usize, runs: &[(usize, usize)]) -> i64 {
    let per_user = runs
        .iter()
        .map(|&(_, users)| requests.div_ceil(users.max(1)))
        .max()
        .unwrap_or(0);
    (per_user as i64)
        .saturating_mul(QUANTITY)
        .saturating_mul(PRICE_CEILING)
        .max(WorkerSettings::default().paper_cash)
}

/// Order `i` of a run over `users` users: user `i % users`, whose `k`-th order is a BUY
/// when `k` is even and the matching SELL when it is odd.
pub fn order_for(i: usize, users: usize, client_order_id: String) -> OrderRequest {
    let k = i / users.max(1);
    let (symbol, _) = SYMBOLS[(k / 2) % SYMBOLS.len()];
    OrderRequest {
        client_order_id,
        exchange: "NSE".into(),
        symbol: symbol.into(),
        side: if k % 2 == 0 { Side::Buy } else { Side::Sell },
        order_type: OrderType::Market,
        quantity: QUANTITY,
        price: None,
        trigger_price: None,
        product: Default::default(),
        account: None,
    }
}

/// A reply's envelope (`Reply<T>` on the wire), with the error read without assuming its
/// code is one this build knows.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error: Option<ErrorReply>,
}

/// An error reply's body.
#[derive(Debug, Deserialize)]
struct ErrorReply {
    code: String,
    message: String,
}

/// A readable reason for a failed reply: `CODE: message`, whatever the encoding; the raw
/// text (lossy) only when the body cannot be decoded at all.
pub fn describe_error(message: &async_nats::Message) -> String {
    let code = codec::header(message.headers.as_ref(), headers::ERROR_CODE).unwrap_or("ERROR");
    let encoding = Encoding::from_headers(message.headers.as_ref());
    match encoding.decode::<Envelope<serde::de::IgnoredAny>>(&message.payload) {
        Ok(Envelope {
            error: Some(body), ..
        }) => format!("{}: {}", body.code, body.message),
        _ => format!(
            "{code}: undecodable reply ({} bytes): {}",
            message.payload.len(),
            String::from_utf8_lossy(&message.payload)
        ),
    }
}

/// Places one order and checks the reply; `Err` says why it failed.
async fn place(
    client: &async_nats::Client,
    user: &BenchUser,
    order: &OrderRequest,
) -> Result<(), String> {
    let payload = Encoding::MsgPack
        .encode(order)
        .map_err(|e| format!("ENCODE: {e}"))?;
    let reply = client
        .request_with_headers(user.place_subject.clone(), user.headers.clone(), payload)
        .await
        .map_err(|e| format!("NO_REPLY: {e}"))?;
    if codec::header(reply.headers.as_ref(), headers::ERROR_CODE).is_some() {
        return Err(describe_error(&reply));
    }
    let envelope: Envelope<OrderReply> = Encoding::from_headers(reply.headers.as_ref())
        .decode(&reply.payload)
        .map_err(|_| describe_error(&reply))?;
    let placed = match envelope {
        Envelope {
            ok: true,
            result: Some(placed),
            ..
        } => placed,
        _ => return Err(describe_error(&reply)),
    };
    match placed.status {
        OrderStatus::Rejected | OrderStatus::Cancelled | OrderStatus::Unknown => Err(format!(
            "{}: {}",
            placed.status,
            placed.reject_reason.unwrap_or_default()
        )),
        _ => Ok(()),
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
    let stack = Stack::start(StackSettings {
        nats: nats.clone(),
        database: DatabaseSettings {
            database_url,
            database_max_connections: 16,
        },
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
    })
    .await?;
    let audit = pinnacle_common::audit::AuditLog::new(
        pinnacle_common::nats::connect(&nats, "bench").await?,
        Duration::from_secs(2),
        vault.clone(),
    );
    let client = pinnacle_common::nats::connect(&nats, "bench-client").await?;
    wait_for_prices(&client).await?;

    let payload_bytes = Encoding::MsgPack
        .encode(&order_for(0, 1, "b00000000-64-1999".into()))?
        .len();
    let body = Bytes::from(vec![0u8; payload_bytes]);
    let echo_task = start_echo(&client).await?;
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: JS_STREAM.into(),
        subjects: vec![JS_SUBJECT.into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;

    let mut rows: Vec<Measurement> = Vec::new();
    for &(clients, user_count) in &runs {
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let users = Arc::new(create_users(&stack.db, &vault, &audit, &run, user_count).await?);

        let raw = client.clone();
        let b = body.clone();
        rows.push(
            measure("raw NATS echo", clients, 0, options.requests, move |_| {
                let (raw, b) = (raw.clone(), b.clone());
                async move {
                    raw.request(ECHO_SUBJECT, b)
                        .await
                        .map(drop)
                        .map_err(|e| format!("NO_REPLY: {e}"))
                }
            })
            .await?,
        );
        let jetstream = js.clone();
        let b = body.clone();
        rows.push(
            measure(
                "raw JetStream publish+ack",
                clients,
                0,
                options.requests,
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
        let orders = client.clone();
        rows.push(
            measure(
                "order place (paper)",
                clients,
                user_count,
                options.requests,
                move |i| {
                    let (orders, users) = (orders.clone(), users.clone());
                    let order = order_for(i, users.len(), format!("b{run}-{clients}-{i}"));
                    async move { place(&orders, &users[i % users.len()], &order).await }
                },
            )
            .await?,
        );
    }
    echo_task.abort();
    stack.stop().await?;
    drop(server);
    Ok(OrdersReport {
        backend,
        payload_bytes,
        paper_cash,
        rss_start_kib,
        rows,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_alternates_buy_and_sell_on_one_symbol() {
        let users = 4;
        let of_user_1: Vec<_> = (0..16)
            .filter(|i| i % users == 1)
            .map(|i| order_for(i, users, format!("c{i}")))
            .collect();
        assert_eq!(of_user_1[0].side, Side::Buy);
        assert_eq!(of_user_1[1].side, Side::Sell);
        assert_eq!(of_user_1[0].symbol, of_user_1[1].symbol);
        assert_eq!(of_user_1[2].side, Side::Buy);
        assert_ne!(of_user_1[2].symbol, of_user_1[0].symbol);
    }

    #[test]
    fn cash_covers_every_order_as_a_buy_at_the_ceiling() {
        // 2,000 orders on one user: ₹2 crore at ₹10,000 a share.
        assert_eq!(
            paper_cash_for(2_000, &[(1, 1), (64, 64)]),
            2_000 * PRICE_CEILING
        );
        // Never below the worker's default.
        assert_eq!(
            paper_cash_for(10, &[(64, 64)]),
            WorkerSettings::default().paper_cash
        );
    }
}
