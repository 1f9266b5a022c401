//! Benchmarks that cannot rot: the real `pinnacle` binary runs every benchmark at a small
//! size, on SQLite and PostgreSQL, and must print every row with no failed request. No
//! timing is asserted; a benchmark that errors, refuses its own orders or measures nothing
//! fails the build.

use std::process::Output;
use std::time::Duration;

use pinnacle_tests::{Backend, TestDb};
use serde_json::Value;
use tokio::process::Command;

use crate::each_backend;

/// The rows `pinnacle bench orders` prints for each concurrency level.
const ORDER_ROWS: [&str; 5] = [
    "raw NATS echo",
    "raw JetStream publish+ack",
    pinnacle_cli::bench::orders::RAW_DB_READ,
    pinnacle_cli::bench::orders::RAW_DB_WRITE,
    "order place (paper)",
];

/// Runs `pinnacle <args>` with its own nats-server (no `NATS_URL`), at most 60 s.
async fn pinnacle(args: &[&str]) -> Output {
    let run = Command::new(env!("CARGO_BIN_EXE_pinnacle-under-test"))
        .args(args)
        .env_remove("NATS_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("pinnacle {args:?} did not finish within 60 s"))
        .expect("pinnacle runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("the output is UTF-8, not raw MessagePack")
}

/// `pinnacle bench orders --requests 200 --json` on `db` with `args`, which must succeed:
/// the report, and the output it was read from.
async fn orders_report(db: &TestDb, args: &[&str]) -> (Value, String) {
    let mut all = vec!["bench", "orders", "--requests", "200", "--json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--database-url", &db.url]);
    let out = pinnacle(&all).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "bench orders failed: {stderr}\n{stdout}"
    );
    let report = serde_json::from_str(&stdout).expect("--json prints JSON");
    (report, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_orders_runs_every_row_without_a_failure() {
    each_backend(|backend| async move {
        let db = TestDb::create(backend).await;
        let (report, stdout) = orders_report(&db, &["--clients", "1,16"]).await;
        let expected = if backend == Backend::Postgres {
            "postgres"
        } else {
            "sqlite"
        };
        assert_eq!(report["backend"], expected);
        let rows = report["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 10, "five rows per concurrency level: {stdout}");
        for clients in [1, 16] {
            for name in ORDER_ROWS {
                let row = rows
                    .iter()
                    .find(|r| r["name"] == name && r["clients"] == clients)
                    .unwrap_or_else(|| panic!("no `{name}` row at {clients} clients: {stdout}"));
                assert_eq!(row["requests"], 200, "{row}");
                assert_eq!(row["failed"], 0, "{row}");
                for measure in ["p50_us", "p99_us", "p999_us", "throughput"] {
                    assert!(row[measure].as_f64().is_some_and(|v| v > 0.0), "{row}");
                }
                assert!(row["cpu_per_request_us"].as_f64().is_some(), "{row}");
                assert!(
                    row["nats_server_cpu_per_request_us"]
                        .as_f64()
                        .is_some_and(|v| v >= 0.0),
                    "nats-server's CPU is accounted: {row}"
                );
                if backend == Backend::Sqlite {
                    assert!(
                        row["database_server_cpu_per_request_us"].is_null(),
                        "SQLite has no server: {row}"
                    );
                }
                assert!(row["peak_rss_kib"].as_u64().is_some_and(|v| v > 0), "{row}");
                if name.starts_with("order") {
                    assert_eq!(row["users"], clients, "one user per client: {row}");
                    // A filled paper MARKET order stores its audit event and its NEW,
                    // SUBMITTED and FILLED events, each once; the audit chains' signed
                    // checkpoints add a few per run.
                    let stored = row["jetstream_messages_per_request"].as_f64();
                    assert!(stored.is_some_and(|v| (4.0..4.5).contains(&v)), "{row}");
                }
            }
        }
        // The idle-CPU settings the latencies depend on, as this machine has them.
        let machine = pinnacle_cli::bench::machine::Machine::read();
        assert_eq!(
            report["machine"],
            serde_json::to_value(&machine).expect("serializes"),
            "{stdout}"
        );
        let ceilings = report["ceilings"].as_array().expect("ceilings");
        assert_eq!(ceilings.len(), 2, "one per concurrency level: {stdout}");
        for ceiling in ceilings {
            for figure in ["orders_per_second", "nats_only_orders_per_second"] {
                assert!(
                    ceiling[figure].as_f64().is_some_and(|v| v > 0.0),
                    "{ceiling}"
                );
            }
        }
    })
    .await;
}

/// Many clients on few users: a DELIVERY sell must never run ahead of the buy that
/// bought its share (it did, and was refused `INSUFFICIENT_HOLDINGS`, with `--users 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_orders_with_fewer_users_than_clients_refuses_nothing() {
    let db = TestDb::create(Backend::Sqlite).await;
    let (report, stdout) = orders_report(&db, &["--clients", "16", "--users", "2"]).await;
    let rows = report["rows"].as_array().expect("rows");
    let orders = rows
        .iter()
        .find(|r| r["name"] == "order place (paper)")
        .unwrap_or_else(|| panic!("no order row: {stdout}"));
    assert_eq!(
        (&orders["clients"], &orders["users"], &orders["failed"]),
        (&Value::from(16), &Value::from(2), &Value::from(0)),
        "{orders}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_orders_prints_a_table_and_fails_loudly_when_orders_fail() {
    // One paisa of cash: BUYs are refused for funds (until SELLs have raised some).
    let db = TestDb::create(Backend::Sqlite).await;
    let out = pinnacle(&[
        "bench",
        "orders",
        "--requests",
        "20",
        "--clients",
        "1",
        "--paper-cash",
        "1",
        "--database-url",
        &db.url,
    ])
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "refused orders must fail the run: {stdout}"
    );
    for name in ORDER_ROWS {
        assert!(
            stdout.contains(&format!("| {name} | 1 |")),
            "{name}: {stdout}"
        );
    }
    assert!(
        stdout.contains("FAILED: order place (paper) at 1 clients: "),
        "{stdout}"
    );
    assert!(stderr.contains("INSUFFICIENT_FUNDS: "), "{stderr}");
    assert!(!stderr.contains('\u{fffd}'), "no mojibake: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ticks_runs_every_mode_for_a_second() {
    let out = pinnacle(&[
        "bench",
        "ticks",
        "--symbols",
        "100",
        "--seconds",
        "1",
        "--rate",
        "2000",
    ])
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "bench ticks failed: {stderr}\n{stdout}"
    );
    for row in [
        "### Throughput: one subscriber on `md.tick.>`",
        "| published ticks/s |",
        "| received ticks/s |",
        "| publishing thread CPU per tick (µs) |",
        "### Fan-out: 10 subscribers, each on its own connection",
        "| `md.tick.NSE.>` |",
        "| `md.tick.*.SIM00001` |",
        "| `md.tick.BSE.SIM00002` |",
        "| `md.tick.NSE.SIM00006` |",
        "| deliveries/s, all subscribers |",
        "### Latency at 2000 ticks/s over 100 symbols",
        "| p50 |",
        "| p99 |",
        "| p99.9 |",
        "| max |",
        "| RSS before the simulator |",
        "| cached symbols | 100 |",
    ] {
        assert!(stdout.contains(row), "missing `{row}`: {stdout}");
    }
    // Every subscriber on its own connection had every tick it asked for, on both sides.
    let lost = stdout
        .lines()
        .filter(|line| line.starts_with("| lost |"))
        .collect::<Vec<_>>();
    assert_eq!(lost.len(), 2, "a loss row per run: {stdout}");
    for line in lost {
        let counts: Vec<&str> = line
            .split('|')
            .map(str::trim)
            .filter(|cell| cell.parse::<u64>().is_ok())
            .collect();
        assert!(
            !counts.is_empty() && counts.iter().all(|c| *c == "0"),
            "{line}\n{stdout}"
        );
    }
    // The latency runs received every tick they sent.
    let samples = stdout
        .lines()
        .find(|line| line.starts_with("| samples/sent |"))
        .unwrap_or_else(|| panic!("no samples row: {stdout}"));
    for cell in samples
        .split('|')
        .map(str::trim)
        .filter(|c| c.contains('/') && c.starts_with(|ch: char| ch.is_ascii_digit()))
    {
        let (got, sent) = cell.split_once('/').expect("got/sent");
        assert_eq!(got, sent, "{samples}");
        assert!(sent.parse::<u64>().is_ok_and(|n| n > 0), "{samples}");
    }
}
