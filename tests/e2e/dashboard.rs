//! The Grafana dashboard against a running deployment of separate processes (`pinnacle
//! serve` publisher, two order workers, user API; as in the fault suite): every process
//! is scraped the way `deploy/prometheus/prometheus.yml` scrapes it, and every PromQL
//! query in `deploy/grafana/dashboards/pinnacle.json` is evaluated over the scrapes
//! ([`pinnacle_tests::promql`]) and must return data. Then the metrics must tell the truth
//! when the feed stops: each process exports only its own families, the publisher's feed
//! lag grows while no tick goes out (its NATS server gone), and once the publisher is
//! stopped no other process reports a feed lag.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use pinnacle_common::codec::Encoding;
use pinnacle_common::metrics::{owners, Component};
use pinnacle_common::model::{OrderReply, Reply};
use pinnacle_common::subjects::{self, headers};
use pinnacle_tests::promql::{parse_exposition, Tsdb};
use pinnacle_tests::{eventually, market};

use crate::each_backend;
use crate::faults::{Deployment, Topology};
use crate::processes::signal;

/// Every PromQL expression in the shipped dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/dashboards/pinnacle.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expr").to_string();
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            queries.push((title, expr));
        }
    }
    queries
}

/// The component a Prometheus job runs.
fn component(job: &str) -> Component {
    match job {
        "publisher" => Component::Publisher,
        "order-worker" => Component::OrderWorker,
        "user-api" => Component::UserApi,
        other => panic!("unknown job {other}"),
    }
}

/// One scrape of every target: (job, instance, body or `None` when it did not answer).
async fn scrape_all(
    http: &reqwest::Client,
    targets: &[(String, String, String)],
) -> Vec<(String, String, Option<String>)> {
    let mut round = Vec::new();
    for (job, _, addr) in targets {
        let body = match http
            .get(format!("http://{addr}/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => response.text().await.ok(),
            _ => None,
        };
        round.push((job.clone(), addr.clone(), body));
    }
    round
}

fn add(tsdb: &mut Tsdb, started: Instant, round: &[(String, String, Option<String>)]) {
    let targets: Vec<(&str, &str, Option<&str>)> = round
        .iter()
        .map(|(job, instance, body)| (job.as_str(), instance.as_str(), body.as_deref()))
        .collect();
    tsdb.add_round(started.elapsed().as_secs_f64(), &targets);
}

/// The family a sample belongs to (`…_bucket`, `…_sum`, `…_count` folded).
fn family(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if !owners(base).is_empty() {
                return base;
            }
        }
    }
    name
}

/// Places one order as `token` (the wrong token gives `UNAUTHENTICATED`); the error code,
/// if any, or `None` when no worker answered in time.
async fn try_place(
    client: &async_nats::Client,
    user: &str,
    token: &str,
    symbol: &str,
) -> Option<Option<String>> {
    let id = format!("dash-{}", uuid::Uuid::new_v4());
    let payload = Encoding::MsgPack
        .encode(&market(&id, symbol, 1))
        .expect("encode");
    let mut hdrs = HeaderMap::new();
    hdrs.insert(headers::AUTHORIZATION, format!("Bearer {token}").as_str());
    let message = tokio::time::timeout(
        Duration::from_secs(10),
        client.request_with_headers(subjects::order(user, "place"), hdrs, payload),
    )
    .await
    .ok()?
    .ok()?;
    let reply: Reply<OrderReply> = Encoding::MsgPack
        .decode(&message.payload)
        .expect("reply decodes");
    Some(reply.error.map(|e| e.code.as_str().to_string()))
}

/// [`try_place`], which must be answered.
async fn place(
    client: &async_nats::Client,
    user: &str,
    token: &str,
    symbol: &str,
) -> Option<String> {
    try_place(client, user, token, symbol)
        .await
        .expect("a worker answers")
}

/// One successful order and two failures.
async fn traffic(client: &async_nats::Client, user: &(String, String)) {
    assert_eq!(place(client, &user.0, &user.1, "SBIN-EQ").await, None);
    let unauthenticated = place(client, &user.0, "pnk_nobody_wrong", "SBIN-EQ").await;
    assert_eq!(unauthenticated.as_deref(), Some("UNAUTHENTICATED"));
    let unknown = place(client, &user.0, &user.1, "NO-SUCH-SYMBOL").await;
    assert!(unknown.is_some(), "an unknown symbol is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_has_data_and_feed_lag_tells_the_truth() {
    each_backend(|backend| async move {
        let mut deployment = Deployment::start(backend, Topology::Single).await;
        let user = deployment.trader("dashboard").await;
        let client = deployment.client().await;
        let http = reqwest::Client::new();
        let targets = deployment.metrics_targets();
        assert_eq!(targets.len(), 4, "{targets:?}");
        eventually(Duration::from_secs(30), "every /metrics", || async {
            scrape_all(&http, &targets)
                .await
                .iter()
                .all(|(_, _, body)| body.is_some())
                .then_some(())
        })
        .await;

        // Every series the second round rates must exist in the first: warm up first.
        eventually(Duration::from_secs(30), "a first order", || async {
            (try_place(&client, &user.0, &user.1, "SBIN-EQ").await == Some(None)).then_some(())
        })
        .await;
        traffic(&client, &user).await;
        let started = Instant::now();
        let mut tsdb = Tsdb::new();
        add(&mut tsdb, started, &scrape_all(&http, &targets).await);
        for _ in 0..3 {
            traffic(&client, &user).await;
        }
        // Past the relay's backlog count (1 s) and enough ticks for a rate.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let round = scrape_all(&http, &targets).await;
        add(&mut tsdb, started, &round);

        // Each process exports only its own components' families.
        for (job, instance, body) in &round {
            let body = body.as_deref().unwrap_or_else(|| panic!("{job} {instance} answered"));
            for sample in parse_exposition(body) {
                let family = family(&sample.name);
                assert!(
                    owners(family).contains(&component(job)),
                    "{job} exports {family}, which is not its own"
                );
            }
        }

        let mut empty = Vec::new();
        for (title, expr) in dashboard_queries() {
            let result = tsdb
                .query(&expr)
                .unwrap_or_else(|e| panic!("{title}: {expr}: {e}"));
            if !result.iter().any(|(_, value)| value.is_finite()) {
                empty.push(format!("{title}: {expr} → {result:?}"));
            }
        }
        assert!(
            empty.is_empty(),
            "dashboard queries without data:\n{}\n{}",
            empty.join("\n"),
            deployment.logs()
        );
        // The failure panels show the failures.
        let errors = tsdb
            .query("sum by (code) (increase(pinnacle_order_errors_total[1m]))")
            .expect("query");
        // (A worker whose first failure came after the first round has no increase yet,
        // as in Prometheus: the codes are there, the counts are lower bounds.)
        let codes: Vec<&str> = errors.iter().map(|(l, _)| l["code"].as_str()).collect();
        assert_eq!(codes, ["unauthenticated", "unknown_symbol"], "{errors:?}");
        let decrypts = tsdb
            .query("sum by (outcome) (rate(pinnacle_credential_decrypts_total[1m]))")
            .expect("query");
        let outcomes: Vec<&str> = decrypts.iter().map(|(l, _)| l["outcome"].as_str()).collect();
        assert_eq!(outcomes, ["failed", "ok"], "{decrypts:?}");
        let reconnects = tsdb
            .query("sum by (service) (increase(pinnacle_nats_reconnects_total[$__range]))")
            .expect("query");
        let services: Vec<&str> = reconnects.iter().map(|(l, _)| l["service"].as_str()).collect();
        assert_eq!(
            services,
            [
                "pinnacle-order-worker",
                "pinnacle-order-worker-intake",
                "pinnacle-publisher",
                "pinnacle-publisher-intake",
                "pinnacle-user-api"
            ],
            "{reconnects:?}"
        );

        // The feed stops (the publisher's NATS is gone): its lag grows at every scrape.
        let publisher = targets
            .iter()
            .find(|(job, _, _)| job == "publisher")
            .expect("the publisher")
            .2
            .clone();
        let lag = |body: Option<String>| {
            parse_exposition(&body.expect("the publisher answers"))
                .into_iter()
                .find(|s| s.name == "pinnacle_feed_lag_seconds")
                .map(|s| s.value)
                .expect("the publisher exports its feed lag")
        };
        let scrape_publisher = || async {
            http.get(format!("http://{publisher}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
        };
        let before = lag(scrape_publisher().await);
        assert!(before < 5.0, "a flowing feed lags little: {before}");
        deployment.stop_nats();
        let stopped = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let first = lag(scrape_publisher().await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = lag(scrape_publisher().await);
        eprintln!(
            "feed lag: {before:.3} s flowing; {first:.3} s and {second:.3} s, {:.1} s after NATS stopped",
            stopped.elapsed().as_secs_f64()
        );
        assert!(first >= 2.5, "the lag grows with no tick: {first}");
        assert!(second >= first + 0.9, "and keeps growing: {first} → {second}");

        // The publisher stopped: nobody reports a healthy feed lag in its place.
        let publisher_process = deployment.services.remove(1);
        signal(&publisher_process, "TERM");
        let mut publisher_process = publisher_process;
        tokio::time::timeout(Duration::from_secs(15), publisher_process.wait())
            .await
            .expect("the publisher stops")
            .expect("wait");
        add(&mut tsdb, started, &scrape_all(&http, &targets).await);
        let lag = tsdb.query("max(pinnacle_feed_lag_seconds)").expect("query");
        assert_eq!(lag, vec![], "a feed lag with the publisher down");
        let up = tsdb
            .query(r#"up{job=~"publisher|order-worker|user-api"}"#)
            .expect("query");
        for (labels, value) in up {
            let expected = if labels["job"] == "publisher" { 0.0 } else { 1.0 };
            assert_eq!(value, expected, "{labels:?}");
        }
    })
    .await;
}
