//! One order is one trace, seen by a real OTLP receiver: the `pinnacle` binary runs as its
//! own process (`pinnacle dev`) exporting OTLP/HTTP to `tests/python/tools/otlp_receiver.py`
//! (built on opentelemetry-proto from PyPI), and the test sends a request carrying its own
//! `traceparent`, as an instrumented client would.
//!
//! Checked in the receiver: client parent → `order.request` (server, messaging attributes)
//! → database client spans, `audit.publish` (producer, messaging attributes) and
//! `broker.place_order` (client, with the paper ledger's query below it); the audit publish
//! ends before the broker is called; the order's lifecycle events carry a `traceparent` of
//! the same trace (an `order.event.publish` producer span); sampled ticks carry their
//! context to a consumer span; each component's spans carry its own `service.name`. Every
//! span of a listed kind has exactly the attribute names `tests/data/span_attributes.json`
//! allows ([`Conventions`]).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use pinnacle_common::subjects::{self, headers, verbs};
use pinnacle_tests::{audit_events, eventually, TestDb, TestNats};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::each_backend;
use pinnacle_tests::python;

/// The attribute names each kind of span may carry, as `tests/data/span_attributes.json`
/// lists them.
pub(crate) struct Conventions(Value);

impl Conventions {
    pub(crate) fn load() -> Self {
        let text = include_str!("../data/span_attributes.json");
        Self(serde_json::from_str(text).expect("span_attributes.json parses"))
    }

    fn names<'a>(&'a self, kind: &str, list: &str) -> Vec<&'a str> {
        self.0["kinds"][kind][list]
            .as_array()
            .unwrap_or_else(|| panic!("{kind}.{list} in span_attributes.json"))
            .iter()
            .filter_map(Value::as_str)
            .collect()
    }

    /// The kind of `span` in the list (`http.server`, `messaging.send`, …), if it is one.
    pub(crate) fn kind_of(span: &Value) -> Option<&'static str> {
        let attrs = &span["attributes"];
        if attrs.get("http.request.method").is_some() && field(span, "kind") == "SERVER" {
            Some("http.server")
        } else if attrs.get("db.system.name").is_some() {
            Some("db.client")
        } else {
            match attr(span, "messaging.operation.type") {
                "send" => Some("messaging.send"),
                "process" => Some("messaging.process"),
                _ => None,
            }
        }
    }

    /// Checks `span` against its kind's list: the span kind, every required name present,
    /// nothing unlisted, nothing forbidden; a failed span has status ERROR with `error.type`.
    /// Returns the kind.
    pub(crate) fn check(&self, span: &Value) -> Option<&'static str> {
        let attrs = span["attributes"].as_object().expect("attributes");
        for forbidden in self.0["forbidden"].as_array().expect("forbidden") {
            let name = forbidden.as_str().unwrap_or_default();
            assert!(!attrs.contains_key(name), "{name} is forbidden: {span}");
        }
        let kind = Self::kind_of(span)?;
        let span_kinds = self.0["kinds"][kind]["span_kind"]
            .as_array()
            .expect("span_kind");
        assert!(
            span_kinds.iter().any(|k| k == &span["kind"]),
            "{kind} span of kind {}: {span}",
            span["kind"]
        );
        let required = self.names(kind, "required");
        let mut allowed = required.clone();
        allowed.extend(self.names(kind, "optional"));
        allowed.extend(
            self.0["every_span"]
                .as_array()
                .expect("every_span")
                .iter()
                .filter_map(Value::as_str),
        );
        for name in &required {
            assert!(
                attrs.contains_key(*name),
                "{kind} span lacks {name}: {span}"
            );
        }
        for name in attrs.keys() {
            assert!(
                allowed.contains(&name.as_str()),
                "{kind} span has unlisted attribute {name}: {span}"
            );
        }
        let failed = field(span, "status") == "ERROR";
        assert_eq!(
            failed,
            attrs.contains_key("error.type"),
            "status ERROR goes with error.type: {span}"
        );
        Some(kind)
    }
}

/// Starts `pinnacle dev` in `dir/data`, logging to `dir/pinnacle.log` and exporting its
/// spans to the receiver on `port`, with `env` on top.
pub(crate) fn start_dev(
    dir: &Path,
    nats: &TestNats,
    db: &TestDb,
    port: u16,
    env: &[(&str, &str)],
) -> Child {
    let log = std::fs::File::create(dir.join("pinnacle.log")).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_pinnacle-under-test"))
        .args(["dev", "--api-bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .env_remove("OTEL_SERVICE_NAME")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .envs(env.iter().copied())
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_TRACES_SAMPLER")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("pinnacle dev starts")
}

/// Starts the receiver on a free loopback port; returns it and the port.
pub(crate) async fn start_receiver(out: &Path) -> (Child, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/tools/otlp_receiver.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("OTLP receiver starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the receiver binds within 10 s")
        .expect("read")
        .expect("a line");
    let port = line
        .strip_prefix("listening on ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected receiver output: {line}"));
    (child, port)
}

/// Every span the receiver has written so far.
pub(crate) fn spans(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

pub(crate) fn attr<'a>(span: &'a Value, key: &str) -> &'a str {
    span["attributes"][key].as_str().unwrap_or_default()
}

pub(crate) fn field<'a>(span: &'a Value, key: &str) -> &'a str {
    span[key].as_str().unwrap_or_default()
}

/// The headers of a JSON order request from `token`'s owner, inside the client span
/// `span_id` of trace `trace_id`, as an instrumented client would send them.
fn traced_json_request(trace_id: &str, span_id: &str, token: &str) -> HeaderMap {
    let mut hdrs = HeaderMap::new();
    hdrs.insert(
        "traceparent",
        format!("00-{trace_id}-{span_id}-01").as_str(),
    );
    hdrs.insert(headers::AUTHORIZATION, format!("Bearer {token}").as_str());
    hdrs.insert(headers::CONTENT_TYPE, "application/json");
    hdrs
}

/// Reads `KEY=value` lines once `pinnacle dev` has written every key the test needs.
pub(crate) fn dev_env(path: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let env: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (env.contains_key("DEMO_USER_ID")
        && env.contains_key("DEMO_API_TOKEN")
        && env.contains_key("PINNACLE_API_ADMIN_TOKEN"))
    .then_some(env)
}

/// The spans below `parent`, indented, for the test's output.
pub(crate) fn tree(trace: &[Value], parent: &str, depth: usize) -> String {
    let mut out = String::new();
    for span in trace
        .iter()
        .filter(|s| field(s, "parent_span_id") == parent)
    {
        out.push_str(&format!(
            "{}{} [{}]\n",
            "  ".repeat(depth),
            field(span, "name"),
            field(span, "kind")
        ));
        out.push_str(&tree(trace, field(span, "span_id"), depth + 1));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_from_client_to_audit_in_a_real_otlp_receiver() {
    each_backend(|backend| async move {
        let nats = TestNats::start();
        let db = TestDb::create(backend).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("spans.jsonl");
        let (_receiver, port) = start_receiver(&out).await;

        let _pinnacle = start_dev(
            dir.path(),
            &nats,
            &db,
            port,
            &[
                ("PINNACLE_SIM_INTERVAL_MS", "20"),
                ("PINNACLE_MD_TICK_TRACE_RATIO", "0.05"),
            ],
        );
        let env_file = dir.path().join("data/dev.env");
        let env = eventually(
            Duration::from_secs(20),
            "pinnacle dev's env file",
            || async { dev_env(&env_file) },
        )
        .await;
        let user_id = env["DEMO_USER_ID"].clone();

        // A tick first, so the paper broker has a price to fill at.
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let mut ticks = client
            .subscribe(subjects::tick("NSE", "SBIN-EQ"))
            .await
            .expect("subscribe");
        tokio::time::timeout(Duration::from_secs(10), ticks.next())
            .await
            .expect("a tick within 10 s");
        // An events consumer, as a client would follow its orders.
        let mut events = client
            .subscribe(subjects::order_events(&user_id))
            .await
            .expect("subscribe to events");

        // The client's own span, as an instrumented client would inject it.
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let client_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let hdrs = traced_json_request(&trace_id, &client_span, &env["DEMO_API_TOKEN"]);
        let body = serde_json::json!({
            "client_order_id": format!("traced-{}", uuid::Uuid::new_v4()),
            "exchange": "NSE", "symbol": "SBIN-EQ", "side": "BUY",
            "order_type": "MARKET", "quantity": 1,
        });
        let subject = subjects::order(&user_id, verbs::PLACE);
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            client.request_with_headers(subject.clone(), hdrs, body.to_string().into()),
        )
        .await
        .expect("reply within 10 s")
        .expect("request");
        let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
        assert_eq!(reply["ok"], true, "{reply}");

        // Everything the worker did for this request, exported in batches.
        let expected = [
            "order.request",
            "SELECT api_tokens",
            "SELECT orders",
            "INSERT orders",
            "UPDATE orders",
            "SELECT broker_accounts",
            "audit.publish",
            "broker.place_order",
            "order.event.publish",
        ];
        let trace = eventually(Duration::from_secs(15), "the order's spans", || async {
            let trace: Vec<Value> = spans(&out)
                .into_iter()
                .filter(|s| field(s, "trace_id") == trace_id)
                .collect();
            expected
                .iter()
                .all(|name| trace.iter().any(|s| field(s, "name") == *name))
                .then_some(trace)
        })
        .await;
        eprintln!("trace {trace_id}:\n{}", tree(&trace, &client_span, 1));
        let by_name = |name: &str| -> Vec<&Value> {
            trace.iter().filter(|s| field(s, "name") == name).collect()
        };
        let one = |name: &str| -> &Value {
            let found = by_name(name);
            assert!(!found.is_empty(), "no {name} span in {trace:#?}");
            found[0]
        };

        let request = one("order.request");
        assert_eq!(field(request, "parent_span_id"), client_span, "{request}");
        assert_eq!(field(request, "kind"), "SERVER");
        assert_eq!(field(request, "status"), "UNSET", "{request}");
        assert_eq!(attr(request, "messaging.system"), "nats");
        assert_eq!(attr(request, "messaging.operation.type"), "process");
        assert_eq!(attr(request, "messaging.destination.name"), subject);
        assert_eq!(
            attr(request, "pinnacle.client_order_id"),
            body["client_order_id"].as_str().unwrap_or_default()
        );
        let request_id = field(request, "span_id");

        for name in [
            "SELECT api_tokens",
            "SELECT broker_accounts",
            "INSERT orders",
            "UPDATE orders",
        ] {
            let span = one(name);
            assert_eq!(field(span, "parent_span_id"), request_id, "{span}");
            assert_eq!(field(span, "kind"), "CLIENT", "{span}");
            let system = attr(span, "db.system.name");
            assert!(system == "sqlite" || system == "postgresql", "{span}");
            assert!(!attr(span, "db.collection.name").is_empty(), "{span}");
        }

        let audit = one("audit.publish");
        assert_eq!(field(audit, "parent_span_id"), request_id, "{audit}");
        assert_eq!(field(audit, "kind"), "PRODUCER");
        assert_eq!(attr(audit, "messaging.system"), "nats");
        assert_eq!(attr(audit, "messaging.operation.type"), "send");
        assert_eq!(
            attr(audit, "messaging.destination.name"),
            subjects::audit_credential(&user_id)
        );

        let broker = one("broker.place_order");
        assert_eq!(field(broker, "parent_span_id"), request_id, "{broker}");
        assert_eq!(field(broker, "kind"), "CLIENT");
        assert_eq!(attr(broker, "pinnacle.broker"), "paper");
        // The paper broker's own statement (its cash reservation) hangs below the broker span.
        let broker_id = field(broker, "span_id");
        assert!(
            by_name("UPDATE paper_funds")
                .iter()
                .any(|s| field(s, "parent_span_id") == broker_id),
            "no ledger query under the broker span: {trace:#?}"
        );
        // Audit before access: the event was stored before the broker was called.
        let ns = |span: &Value, key: &str| span[key].as_u64().unwrap_or(u64::MAX);
        assert!(
            ns(audit, "end_ns") <= ns(broker, "start_ns"),
            "{audit} {broker}"
        );
        // Every span of the trace hangs, through its parents, from the client's span.
        let ids: HashMap<&str, &str> = trace
            .iter()
            .map(|s| (field(s, "span_id"), field(s, "parent_span_id")))
            .collect();
        for span in &trace {
            let mut at = field(span, "span_id");
            let mut hops = 0;
            while let Some(parent) = ids.get(at) {
                at = parent;
                hops += 1;
                assert!(hops < 16, "parent cycle at {span}");
            }
            assert_eq!(at, client_span, "{span} is not under the client span");
        }
        // Each span has its kind's attribute names, and the worker's service name (in
        // `pinnacle dev`, where every component shares the process).
        let conventions = Conventions::load();
        let mut kinds = std::collections::BTreeSet::new();
        for span in &trace {
            kinds.extend(conventions.check(span));
            assert_eq!(field(span, "service"), "pinnacle-order-worker", "{span}");
        }
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["db.client", "messaging.process", "messaging.send"]
        );

        // Every lifecycle event of the order carries a traceparent of the same trace, whose
        // span is an `order.event.publish` producer span of the trace.
        for publish in by_name("order.event.publish") {
            assert_eq!(field(publish, "kind"), "PRODUCER", "{publish}");
            assert_eq!(
                attr(publish, "messaging.destination.name"),
                subjects::order_events(&user_id)
            );
        }
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an order event within 10 s")
            .expect("an event");
        let event_headers = event.headers.as_ref().expect("event headers");
        let traceparent = event_headers
            .get("traceparent")
            .map(|v| v.as_str().to_string())
            .expect("the event carries traceparent");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[1], trace_id, "{traceparent}");
        let publish = eventually(
            Duration::from_secs(10),
            "the event's publish span",
            || async {
                spans(&out)
                    .into_iter()
                    .find(|s| field(s, "span_id") == parts[2])
            },
        )
        .await;
        assert_eq!(field(&publish, "name"), "order.event.publish", "{publish}");
        assert_eq!(field(&publish, "trace_id"), trace_id, "{publish}");
        assert!(
            event_headers.get("tracestate").is_none(),
            "no empty tracestate"
        );

        // The stored audit event names the same trace.
        let events = audit_events(&client, &user_id).await;
        assert!(
            events
                .iter()
                .any(|(e, _)| e.trace_id.as_deref() == Some(trace_id.as_str())),
            "no audit event in trace {trace_id}"
        );

        // Reading the events back: the page is read in an `order.events.read` client span
        // under the request's server span, and each entry keeps its stored trace context.
        eventually(
            Duration::from_secs(10),
            "the order's events stored",
            || async {
                let stored = pinnacle_tests::order_events(&client, &user_id).await;
                let filled = pinnacle_common::model::OrderStatus::Filled;
                stored
                    .iter()
                    .any(|e| e.order.status == filled)
                    .then_some(())
            },
        )
        .await;
        let read_trace = uuid::Uuid::new_v4().simple().to_string();
        let hdrs = traced_json_request(&read_trace, &client_span, &env["DEMO_API_TOKEN"]);
        let reply = client
            .request_with_headers(subjects::order(&user_id, verbs::EVENTS), hdrs, "{}".into())
            .await
            .expect("an events page");
        let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
        let entries = reply["result"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            entries.iter().any(|e| e["traceparent"]
                .as_str()
                .is_some_and(|t| t.contains(&trace_id))),
            "the order's events keep its trace: {reply}"
        );
        let read = eventually(Duration::from_secs(15), "the page's spans", || async {
            let all = spans(&out);
            let request = all
                .iter()
                .find(|s| {
                    field(s, "trace_id") == read_trace && field(s, "name") == "order.request"
                })?
                .clone();
            let read = all.into_iter().find(|s| {
                field(s, "trace_id") == read_trace && field(s, "name") == "order.events.read"
            })?;
            (field(&read, "parent_span_id") == field(&request, "span_id")).then_some(read)
        })
        .await;
        assert_eq!(field(&read, "kind"), "CLIENT", "{read}");
        assert_eq!(attr(&read, "messaging.operation.type"), "receive", "{read}");
        let count = &read["attributes"]["messaging.batch.message_count"];
        assert_eq!(
            count.to_string().trim_matches('"'),
            entries.len().to_string(),
            "{read}"
        );

        // Sampled ticks: a producer span whose context reaches a consumer (the paper broker).
        eventually(Duration::from_secs(10), "a traced tick", || async {
            let all = spans(&out);
            let producers: Vec<&Value> = all
                .iter()
                .filter(|s| field(s, "name") == "md.tick.publish")
                .collect();
            let linked = all.iter().any(|s| {
                field(s, "name") == "md.tick.process"
                    && field(s, "kind") == "CONSUMER"
                    && field(s, "service") == "pinnacle-order-worker"
                    && conventions.check(s) == Some("messaging.process")
                    && producers.iter().any(|p| {
                        field(p, "span_id") == field(s, "parent_span_id")
                            && field(p, "trace_id") == field(s, "trace_id")
                            && field(p, "kind") == "PRODUCER"
                            && field(p, "service") == "pinnacle-publisher"
                            && conventions.check(p) == Some("messaging.send")
                            && attr(p, "messaging.destination.name").starts_with("md.tick.")
                    })
            });
            linked.then_some(())
        })
        .await;
    })
    .await;
}

/// A `md.req.*` request carrying the caller's `traceparent` is handled in an `md.request`
/// server span of the same trace, whose parent is the caller's span, for a success and a
/// failure alike (market data touches no database, so SQLite alone is enough).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_data_requests_continue_the_callers_trace() {
    let nats = TestNats::start();
    let db = TestDb::create(pinnacle_tests::Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("spans.jsonl");
    let (_receiver, port) = start_receiver(&out).await;
    let _pinnacle = start_dev(dir.path(), &nats, &db, port, &[]);
    let client = async_nats::connect(nats.url()).await.expect("connect");
    market_data_traces(&client, &out, "pinnacle-publisher").await;
}

/// `pinnacle serve publisher` names its spans `pinnacle-publisher` by default, and
/// `OTEL_SERVICE_NAME` overrides that; its `md.request` spans continue the caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinnacle_serve_names_its_spans_after_the_service() {
    for (env, expected) in [(None, "pinnacle-publisher"), (Some("md-east"), "md-east")] {
        let nats = TestNats::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("spans.jsonl");
        let (_receiver, port) = start_receiver(&out).await;
        let log = std::fs::File::create(dir.path().join("serve.log")).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_pinnacle-under-test"));
        command
            .args(["serve", "publisher"])
            .env("NATS_URL", nats.url())
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_TRACES_SAMPLER")
            .env_remove("PINNACLE_METRICS_ADDR")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(name) = env {
            command.env("OTEL_SERVICE_NAME", name);
        }
        let _publisher = command.spawn().expect("pinnacle serve publisher starts");
        let client = async_nats::connect(nats.url()).await.expect("connect");
        market_data_traces(&client, &out, expected).await;
    }
}

/// Asks for candles, a snapshot and an unknown symbol's last tick, each with its own
/// `traceparent`, and checks each `md.request` span in the receiver.
async fn market_data_traces(client: &async_nats::Client, out: &Path, service: &str) {
    let conventions = Conventions::load();
    let asks = [
        (
            subjects::md::CANDLES,
            r#"{"exchange":"NSE","symbol":"SBIN-EQ","interval":"ONE_DAY","from":"2026-11-02 09:15","to":"2026-11-06 15:30"}"#,
            None,
        ),
        (
            subjects::md::SNAPSHOT,
            r#"{"subject":"md.tick.NSE.*"}"#,
            None,
        ),
        (
            subjects::md::LAST,
            r#"{"exchange":"NSE","symbol":"NOPE-EQ"}"#,
            Some("UNKNOWN_SYMBOL"),
        ),
    ];
    for (subject, body, error) in asks {
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let client_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let request = || {
            let mut hdrs = HeaderMap::new();
            let parent = format!("00-{trace_id}-{client_span}-01");
            hdrs.insert("traceparent", parent.as_str());
            hdrs.insert(headers::CONTENT_TYPE, "application/json");
            client.request_with_headers(subject, hdrs, body.into())
        };
        // The first request may come before `pinnacle dev` serves; ask until it answers.
        let reply = eventually(Duration::from_secs(20), "a market-data reply", || async {
            let reply = tokio::time::timeout(Duration::from_secs(2), request()).await;
            reply.ok().and_then(Result::ok)
        })
        .await;
        let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
        assert_eq!(reply["ok"], error.is_none(), "{subject}: {reply}");
        let span = eventually(Duration::from_secs(15), "the md.request span", || async {
            spans(out)
                .into_iter()
                .find(|s| field(s, "trace_id") == trace_id && field(s, "name") == "md.request")
        })
        .await;
        assert_eq!(field(&span, "parent_span_id"), client_span, "{span}");
        assert_eq!(field(&span, "kind"), "SERVER", "{span}");
        assert_eq!(field(&span, "service"), service, "{span}");
        assert_eq!(conventions.check(&span), Some("messaging.process"));
        assert_eq!(attr(&span, "messaging.system"), "nats");
        assert_eq!(attr(&span, "messaging.operation.type"), "process");
        assert_eq!(attr(&span, "messaging.destination.name"), subject);
        assert_eq!(attr(&span, "error.type"), error.unwrap_or(""), "{span}");
        let status = if error.is_some() { "ERROR" } else { "UNSET" };
        assert_eq!(field(&span, "status"), status, "{span}");
    }
}
