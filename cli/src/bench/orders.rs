//! `pinnacle bench orders`: order round-trip latency and throughput on the paper broker,
//! measured side by side with a raw NATS request-reply echo in the same run.
//!
//! It starts its own nats-server and a throw-away SQLite (or `--database-url`) stack, so
//! nothing else shares the machine's NATS. This is a benchmark, not a test: it measures and
//! reports; it asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use futures::StreamExt;
use pinnacle_common::codec::Encoding;
use pinnacle_common::config::{
    DatabaseSettings, MarketDataSettings, NatsSettings, SimFeedSettings, UserApiSettings,
    WorkerSettings,
};
use pinnacle_common::crypto::Vault;
use pinnacle_common::entities::risk_limits;
use pinnacle_common::model::{OrderRequest, OrderType, Side};
use pinnacle_common::subjects::{self, headers, verbs};
use sea_orm::{ActiveModelTrait, IntoActiveModel};
use secrecy::ExposeSecret;

use super::{percentile, rss_kib};
use crate::nats_server::NatsServer;
use crate::stack::{Stack, StackSettings};

/// What to run.
#[derive(Debug, Clone)]
pub struct OrdersOptions {
    /// Requests per client count (the 64-client run sends this many in total too).
    pub requests: usize,
    /// Concurrency levels to measure.
    pub clients: Vec<usize>,
    /// Database; a temporary SQLite file when `None`.
    pub database_url: Option<String>,
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// What was measured.
    pub name: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests completed.
    pub requests: usize,
    /// Median round trip.
    pub p50: Duration,
    /// 99th percentile round trip.
    pub p99: Duration,
    /// Requests per second.
    pub throughput: f64,
}

/// Runs `total` requests split over `clients` tasks; `send(i)` performs request `i`.
async fn measure<F, Fut>(
    name: &str,
    clients: usize,
    total: usize,
    send: F,
) -> anyhow::Result<Measurement>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let send = Arc::new(send);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let send = send.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = client;
            while i < total {
                let t = Instant::now();
                send(i).await?;
                latencies.push(t.elapsed());
                i += clients;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(total);
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Measurement {
        name: name.to_string(),
        clients,
        requests: latencies.len(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
    })
}

/// Runs the benchmark and returns a Markdown report.
pub async fn run(options: OrdersOptions) -> anyhow::Result<String> {
    let dir = tempfile_dir()?;
    let binary = crate::nats_server::find_binary()?;
    let server = NatsServer::start(&binary, &dir.join("nats"), &[])?;
    let database_url = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()));
    let backend = database_url.split(':').next().unwrap_or("?").to_string();
    let vault = Arc::new(Vault::new(1, &[9u8; 32]));
    let rss_before = Some(rss_kib()).filter(|kib| *kib > 0);
    let stack = Stack::start(StackSettings {
        nats: NatsSettings::for_url(server.url()),
        database: DatabaseSettings {
            database_url,
            database_max_connections: 16,
        },
        vault: vault.clone(),
        sim: SimFeedSettings {
            interval_ms: 100,
            ..SimFeedSettings::default()
        },
        md: MarketDataSettings::default(),
        angel: Default::default(),
        worker: WorkerSettings::default(),
        api: UserApiSettings {
            bind: "127.0.0.1:0".into(),
            admin_token: None,
        },
        metrics: Default::default(),
    })
    .await?;
    let audit = pinnacle_common::audit::AuditLog::new(
        pinnacle_common::nats::connect(&NatsSettings::for_url(server.url()), "bench").await?,
        Duration::from_secs(2),
        vault.clone(),
    );
    let demo = crate::dev::ensure_demo_user(&stack.db, &vault, &audit).await?;
    // The benchmark measures the system, not Angel One's rate limit.
    risk_limits::Model {
        scope: demo.user_id.clone(),
        max_quantity: None,
        max_order_value: None,
        allowed_exchanges: None,
        allowed_symbols: None,
        max_orders_per_second: Some(1_000_000),
        kill_switch: false,
        updated_at: chrono::Utc::now(),
    }
    .into_active_model()
    .insert(&stack.db)
    .await?;
    let client =
        pinnacle_common::nats::connect(&NatsSettings::for_url(server.url()), "bench-client")
            .await?;
    // Wait for prices so the paper broker can fill.
    let mut ticks = client.subscribe(subjects::tick("NSE", "SBIN-EQ")).await?;
    tokio::time::timeout(Duration::from_secs(10), ticks.next())
        .await
        .context("no ticks")?;
    tokio::time::timeout(Duration::from_secs(10), ticks.next())
        .await
        .context("no ticks")?;

    let sample = OrderRequest {
        client_order_id: "bench-00000000-0000".into(),
        exchange: "NSE".into(),
        symbol: "SBIN-EQ".into(),
        side: Side::Buy,
        order_type: OrderType::Market,
        quantity: 1,
        price: None,
        trigger_price: None,
        product: Default::default(),
        account: None,
    };
    let payload_size = Encoding::MsgPack.encode(&sample)?.len();

    // Raw NATS echo on the same server, same payload size.
    let mut echo = client.subscribe("bench.echo").await?;
    let responder = client.clone();
    let echo_task = tokio::spawn(async move {
        while let Some(message) = echo.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, message.payload).await;
            }
        }
    });

    let mut results = Vec::new();
    let token = demo.token.expose_secret().to_string();
    for &clients in &options.clients {
        let raw = client.clone();
        let body = bytes::Bytes::from(vec![0u8; payload_size]);
        results.push(
            measure("raw NATS echo", clients, options.requests, move |_| {
                let raw = raw.clone();
                let body = body.clone();
                async move {
                    raw.request("bench.echo", body).await?;
                    Ok(())
                }
            })
            .await?,
        );
        let orders = client.clone();
        let token = token.clone();
        let subject = subjects::order(&demo.user_id, verbs::PLACE);
        let run = uuid::Uuid::new_v4().simple().to_string();
        let sample = sample.clone();
        results.push(
            measure("order place (paper)", clients, options.requests, move |i| {
                let orders = orders.clone();
                let mut hdrs = HeaderMap::new();
                hdrs.insert(headers::AUTHORIZATION, format!("Bearer {token}").as_str());
                let order = OrderRequest {
                    client_order_id: format!("b{}-{clients}-{i}", &run[..8]),
                    ..sample.clone()
                };
                let subject = subject.clone();
                async move {
                    let payload = Encoding::MsgPack.encode(&order)?;
                    let reply = orders.request_with_headers(subject, hdrs, payload).await?;
                    if reply
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(headers::ERROR_CODE))
                        .is_some()
                    {
                        anyhow::bail!(
                            "order refused: {:?}",
                            String::from_utf8_lossy(&reply.payload)
                        );
                    }
                    Ok(())
                }
            })
            .await?,
        );
    }
    let rss_after = Some(rss_kib()).filter(|kib| *kib > 0);
    echo_task.abort();
    stack.stop().await?;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report(
        &results,
        payload_size,
        &backend,
        rss_before,
        rss_after,
    ))
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("pinnacle-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn report(
    results: &[Measurement],
    payload: usize,
    backend: &str,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
) -> String {
    let mut out = format!(
        "Payload {payload} bytes (MessagePack order); database {backend}; one nats-server on loopback; \
         publisher, worker and user API in the benchmark's process.\n\n\
         | what | clients | requests | p50 | p99 | throughput (req/s) | p50 vs raw NATS |\n\
         |---|---:|---:|---:|---:|---:|---:|\n"
    );
    for m in results {
        let raw = results
            .iter()
            .find(|r| r.name.starts_with("raw") && r.clients == m.clients);
        let ratio = raw
            .filter(|r| r.p50 > Duration::ZERO)
            .map(|r| format!("{:.1}×", m.p50.as_secs_f64() / r.p50.as_secs_f64()))
            .unwrap_or_default();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} |\n",
            m.name,
            m.clients,
            m.requests,
            micros(m.p50),
            micros(m.p99),
            m.throughput,
            ratio
        ));
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        out.push_str(&format!(
            "\nResident memory of the whole process (stack + clients): {:.1} MiB before the stack started, {:.1} MiB after the runs.\n",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        ));
    }
    out
}
