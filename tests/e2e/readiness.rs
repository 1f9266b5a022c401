//! `/readyz` says ready only once a `pinnacle serve` process can serve: not while it is
//! still migrating its database or connecting (the probe is served from its first
//! moments). Polled every 2 ms from the process's start, the first `200` must find the
//! user API accepting connections and answering.

use std::time::{Duration, Instant};

use pinnacle_tests::{eventually, free_port, Backend, TestDb, TestNats};

use crate::each_backend;
use crate::processes::{signal, Services};

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

/// A service started before its PostgreSQL (a host booting, `docker compose up`) waits for
/// it: alive, not ready, saying so in its log without the URL's password. Once the server
/// can be reached (here a proxy opens on the port the service was given) it migrates,
/// becomes ready and serves, without a restart. A stop ends the wait at once; a database
/// that does not exist is a setting to fix, and fails the start at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_before_its_database_waits_for_it_and_then_serves() {
    if !pinnacle_tests::backends().contains(&Backend::Postgres) {
        return;
    }
    let nats = TestNats::start();
    let db = TestDb::create(Backend::Postgres).await;
    let real = reqwest::Url::parse(&db.url).expect("database URL");
    let server = format!(
        "{}:{}",
        real.host_str().expect("host"),
        real.port().unwrap_or(5432)
    );
    let port = free_port();
    let mut proxied = real.clone();
    proxied.set_host(Some("127.0.0.1")).expect("host");
    proxied.set_port(Some(port)).expect("port");
    // A password in the URL, to prove it never reaches the log (the test server trusts).
    proxied
        .set_password(Some("pw-never-logged"))
        .expect("password");

    let services = Services::new(nats.url(), proxied.as_str(), &[]);
    let mut api = services.serve("user-api", "user-api", &[]);
    let (_, _, metrics) = services.metrics_targets().remove(0);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    eventually(
        Duration::from_secs(30),
        "two waits for the database",
        || async {
            (services
                .log("user-api")
                .matches("waiting for the database")
                .count()
                >= 2)
                .then_some(())
        },
    )
    .await;
    assert!(api.try_wait().expect("status").is_none(), "it waits, alive");
    let probe = http
        .get(format!("http://{metrics}/readyz"))
        .send()
        .await
        .expect("/readyz is served while it waits");
    assert_eq!(probe.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);

    // The database comes up.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the service's database port");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&server).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    eventually(
        Duration::from_secs(60),
        "ready once the database is",
        || async {
            let ready = http.get(format!("http://{metrics}/readyz")).send().await;
            ready.ok().filter(|r| r.status().is_success()).map(|_| ())
        },
    )
    .await;
    let health = http
        .get(format!("{}/healthz", services.api_url))
        .send()
        .await
        .expect("the user API serves");
    assert!(health.status().is_success(), "{}", health.status());
    let log = services.log("user-api");
    assert!(!log.contains("pw-never-logged"), "{log}");
    drop(api);

    // A stop while it waits ends the start, cleanly and at once.
    let nowhere = Services::new(
        nats.url(),
        &format!("postgres://postgres@127.0.0.1:{}/none", free_port()),
        &[],
    );
    let mut waiting = nowhere.serve("user-api", "user-api", &[]);
    eventually(
        Duration::from_secs(30),
        "a wait for the database",
        || async {
            nowhere
                .log("user-api")
                .contains("waiting for the database")
                .then_some(())
        },
    )
    .await;
    signal(&waiting, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), waiting.wait())
        .await
        .expect("a stop ends the wait within 10 s")
        .expect("status");
    assert!(
        status.success(),
        "{status}\n{}",
        nowhere.logs(&["user-api"], 20)
    );

    // A database that does not exist will not appear by waiting.
    let mut missing = real.clone();
    missing.set_path("/no_such_database_here");
    let misnamed = Services::new(nats.url(), missing.as_str(), &[]);
    let mut failing = misnamed.serve("user-api", "user-api", &[]);
    let status = tokio::time::timeout(Duration::from_secs(30), failing.wait())
        .await
        .expect("a missing database fails the start at once")
        .expect("status");
    let log = misnamed.log("user-api");
    assert!(!status.success(), "{log}");
    assert!(!log.contains("waiting for the database"), "{log}");
}
