//! `/readyz` says ready only once a `pinnacle serve` process can serve: not while it is
//! still migrating its database or connecting (the probe is served from its first
//! moments). Polled every 2 ms from the process's start, the first `200` must find the
//! user API accepting connections and answering.

use std::time::{Duration, Instant};

use pinnacle_tests::{TestDb, TestNats};

use crate::each_backend;
use crate::processes::Services;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_service_is_not_ready_until_it_serves() {
    each_backend(|backend| async move {
        let nats = TestNats::start();
        let db = TestDb::create(backend).await;
        let services = Services::new(nats.url(), &db.url, &[]);
        let _api = services.serve("user-api", "user-api", &[]);
        let (_, _, metrics) = services.metrics_targets().remove(0);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .expect("client");
        let started = Instant::now();
        let mut starting_seen = false;
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never ready\n{}",
                services.logs(&["user-api"], 40)
            );
            if let Ok(response) = http.get(format!("http://{metrics}/readyz")).send().await {
                let ok = response.status().is_success();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                starting_seen |= body["starting"] == true;
                if ok {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Ready: the API listens and answers at once.
        let health = http
            .get(format!("{}/healthz", services.api_url))
            .send()
            .await
            .expect("the user API answers as soon as /readyz says ready");
        assert!(health.status().is_success(), "{}", health.status());
        eprintln!(
            "{backend:?}: ready after {:?} (\"starting\" seen: {starting_seen})",
            started.elapsed()
        );
    })
    .await;
}
