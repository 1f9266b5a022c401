//! Prometheus metrics scraped over HTTP from a running stack: every family is there with
//! plausible values, and no label value is a user id, order id or client order id.
//!
//! The registry is process-wide and other tests in this binary run alongside, so counts
//! are checked as lower bounds.

use std::time::Duration;

use pinnacle_tests::promql::{parse_exposition, Sample};
use pinnacle_tests::{eventually, market, TestStack};

use crate::each_backend;

/// The sum of `name`'s samples whose labels include every pair in `with`.
fn total(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(stack: &TestStack) -> (String, Vec<Sample>) {
    let addr = stack.metrics_addr.expect("the stack serves metrics");
    let response = stack
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.expect("body");
    let samples = parse_exposition(&text);
    (text, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_exports_prometheus_metrics_without_identifiers() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| {
            s.metrics.addr = Some("127.0.0.1:0".into());
        })
        .await;
        let user = stack.trader("metered").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;

        let mut identifiers = vec![user.id.clone()];
        for i in 0..3 {
            let client_order_id = format!("metrics-ok-{i}-{}", uuid::Uuid::new_v4());
            let reply = stack
                .place(&user, &market(&client_order_id, "SBIN-EQ", 1))
                .await;
            let order = reply.result.expect("filled");
            identifiers.push(order.order_id);
            identifiers.push(client_order_id);
        }
        // Far beyond the paper account's cash: stored as REJECTED, answered with the code.
        let rejected_id = format!("metrics-rejected-{}", uuid::Uuid::new_v4());
        let rejected = stack
            .place(&user, &market(&rejected_id, "SBIN-EQ", 100_000))
            .await;
        let code = rejected.error.expect("rejected").code;
        identifiers.push(rejected_id);
        let rejected_label = code.as_str().to_ascii_lowercase();

        // Ticks keep flowing, so wait until the scrape shows some and a lag.
        let (text, samples) = eventually(Duration::from_secs(10), "ticks in metrics", || async {
            let (text, samples) = scrape(&stack).await;
            (total(&samples, "pinnacle_ticks_published_total", &[]) > 0.0)
                .then_some((text, samples))
        })
        .await;

        // The same listener serves the probes, naming every service's NATS connection.
        let addr = stack.metrics_addr.expect("the stack serves metrics");
        for probe in ["healthz", "readyz"] {
            let response = stack
                .http
                .get(format!("http://{addr}/{probe}"))
                .send()
                .await
                .expect("probe");
            assert_eq!(response.status().as_u16(), 200, "/{probe}");
            let body: serde_json::Value = response.json().await.expect("JSON probe");
            for service in [
                "pinnacle-order-worker",
                "pinnacle-publisher",
                "pinnacle-user-api",
            ] {
                assert_eq!(
                    body["nats"][service]["state"], "connected",
                    "/{probe}: {body}"
                );
            }
        }

        let place = [("verb", "place")];
        assert!(
            total(&samples, "pinnacle_order_latency_seconds_count", &place) >= 4.0,
            "{text}"
        );
        let bucket_100us = total(
            &samples,
            "pinnacle_order_latency_seconds_bucket",
            &[("verb", "place"), ("le", "0.0001")],
        );
        let bucket_inf = total(
            &samples,
            "pinnacle_order_latency_seconds_bucket",
            &[("verb", "place"), ("le", "+Inf")],
        );
        assert!(bucket_inf >= 4.0 && bucket_100us <= bucket_inf, "{text}");
        assert!(
            total(&samples, "pinnacle_order_latency_seconds_sum", &place) > 0.0,
            "{text}"
        );
        assert!(
            total(
                &samples,
                "pinnacle_orders_total",
                &[("verb", "place"), ("outcome", "filled")]
            ) >= 3.0,
            "{text}"
        );
        assert!(
            total(
                &samples,
                "pinnacle_orders_total",
                &[("verb", "place"), ("outcome", &rejected_label)]
            ) >= 1.0,
            "{text}"
        );
        assert!(
            total(
                &samples,
                "pinnacle_credential_decrypts_total",
                &[("outcome", "ok")]
            ) >= 4.0,
            "{text}"
        );
        assert!(
            samples
                .iter()
                .any(|s| s.name == "pinnacle_credential_decrypts_total"
                    && s.labels.get("outcome").map(String::as_str) == Some("failed")),
            "{text}"
        );
        let lag = total(&samples, "pinnacle_feed_lag_seconds", &[]);
        assert!((0.0..60.0).contains(&lag), "feed lag {lag}: {text}");
        assert!(
            samples
                .iter()
                .any(|s| s.name == "pinnacle_audit_publish_failures_total"),
            "{text}"
        );
        for service in [
            "pinnacle-order-worker",
            "pinnacle-publisher",
            "pinnacle-user-api",
        ] {
            assert!(
                samples
                    .iter()
                    .any(|s| s.name == "pinnacle_nats_reconnects_total"
                        && s.labels.get("service").map(String::as_str) == Some(service)),
                "{service}: {text}"
            );
        }
        assert!(
            total(
                &samples,
                "pinnacle_broker_requests_total",
                &[
                    ("broker", "paper"),
                    ("operation", "place_order"),
                    ("outcome", "ok")
                ]
            ) >= 3.0,
            "{text}"
        );

        // Labels come from closed sets only: no identifier ever appears as a value.
        for sample in samples.iter().filter(|s| s.name.starts_with("pinnacle_")) {
            for value in sample.labels.values() {
                assert!(
                    !identifiers.iter().any(|id| value.contains(id.as_str())),
                    "identifier as a label value: {sample:?}"
                );
            }
        }
        assert!(!identifiers.iter().any(|id| text.contains(id.as_str())));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nats_connection_that_comes_back_counts_one_reconnect() {
    use pinnacle_cli::nats_server::{find_binary, NatsServer};
    use pinnacle_common::config::NatsSettings;
    use pinnacle_common::metrics::metrics;

    let nats = pinnacle_tests::TestNats::start();
    let port = nats.server.port();
    // A connection name of its own, so no other test touches this series.
    let service = "pinnacle-reconnect-probe";
    let counter = metrics().nats_reconnects.with_label_values(&[service]);
    let client = pinnacle_common::nats::connect(&NatsSettings::for_url(nats.url()), service)
        .await
        .expect("connect");
    assert_eq!(counter.get(), 0, "the first connect is not a reconnect");

    drop(nats);
    let dir = tempfile::tempdir().expect("dir");
    let port_arg = port.to_string();
    let _restarted = NatsServer::start(
        &find_binary().expect("binary"),
        dir.path(),
        &["-p", port_arg.as_str()],
    )
    .expect("restart");
    eventually(
        Duration::from_secs(15),
        "the reconnect to be counted",
        || async { (counter.get() == 1).then_some(()) },
    )
    .await;
    client.flush().await.expect("connected again");
}
