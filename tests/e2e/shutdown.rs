//! Shutdown is bounded: every `pinnacle serve <service>` process (publisher, two order
//! workers, user API; the fault suite's deployment) exits within
//! [`SHUTDOWN_BOUND`](pinnacle_cli::stack::SHUTDOWN_BOUND) of SIGTERM, whatever the state of
//! NATS or the database: with everything up (and then cleanly, status 0), with the
//! nats-server killed at the same moment, and with the database stalled under an order in
//! flight.

use std::time::{Duration, Instant};

use pinnacle_cli::stack::SHUTDOWN_BOUND;
use pinnacle_tests::market;

use crate::each_backend;
use crate::faults::{Deployment, Topology};
use crate::processes::signal;

/// Room for a busy 2-core machine to schedule the exit, beyond the bound itself.
const SLACK: Duration = Duration::from_secs(2);

/// SIGTERMs every process at once; each one's (name, time to exit, success).
async fn terminate_all(deployment: &mut Deployment) -> Vec<(String, Duration, bool)> {
    let mut children: Vec<(String, tokio::process::Child)> = Vec::new();
    for (n, child) in deployment.services.drain(..).enumerate() {
        let name = if n == 0 { "user-api" } else { "publisher" };
        children.push((name.into(), child));
    }
    for (n, child) in deployment.workers.drain(..).enumerate() {
        children.push((format!("worker-{n}"), child));
    }
    let sent = Instant::now();
    for (_, child) in &children {
        signal(child, "TERM");
    }
    let waits = children.into_iter().map(|(name, mut child)| async move {
        let status = tokio::time::timeout(SHUTDOWN_BOUND + SLACK + SLACK, child.wait()).await;
        match status {
            Ok(Ok(status)) => (name, sent.elapsed(), status.success()),
            _ => panic!("{name} still running {:?} after SIGTERM", sent.elapsed()),
        }
    });
    futures::future::join_all(waits).await
}

fn check(case: &str, exits: &[(String, Duration, bool)], clean: bool, logs: &str) {
    for (name, took, success) in exits {
        eprintln!(
            "{case}: {name} exited after {:.2} s (success {success})",
            took.as_secs_f64()
        );
        assert!(
            *took <= SHUTDOWN_BOUND + SLACK,
            "{case}: {name} took {took:?} (bound {SHUTDOWN_BOUND:?})\n{logs}"
        );
        if clean {
            assert!(*success, "{case}: {name} did not stop cleanly\n{logs}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_stops_within_the_bound_whatever_nats_and_the_database_do() {
    each_backend(|backend| async move {
        // Everything up: a clean, quick stop.
        let mut deployment = Deployment::start(backend, Topology::Single).await;
        let user = deployment.trader("stop-up").await;
        let client = deployment.client().await;
        place_one(&client, &user).await;
        let exits = terminate_all(&mut deployment).await;
        check("everything up", &exits, true, &deployment.logs());

        // The nats-server dies at the moment SIGTERM arrives.
        let mut deployment = Deployment::start(backend, Topology::Single).await;
        let user = deployment.trader("stop-nats").await;
        let client = deployment.client().await;
        place_one(&client, &user).await;
        deployment.stop_nats();
        let exits = terminate_all(&mut deployment).await;
        check("NATS gone", &exits, false, &deployment.logs());

        // The database stalls with an order in flight.
        let mut deployment = Deployment::start(backend, Topology::Single).await;
        let user = deployment.trader("stop-db").await;
        let client = deployment.client().await;
        place_one(&client, &user).await;
        let url = deployment.db.url.clone();
        let stall = tokio::spawn(async move {
            pinnacle_tests::stall_database(&url, Duration::from_secs(30)).await
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let in_flight = tokio::spawn({
            let client = client.clone();
            let user = user.clone();
            async move {
                let payload = pinnacle_common::codec::Encoding::MsgPack
                    .encode(&market("stop-db-in-flight", "SBIN-EQ", 1))
                    .expect("encode");
                let mut hdrs = async_nats::HeaderMap::new();
                hdrs.insert(
                    pinnacle_common::subjects::headers::AUTHORIZATION,
                    format!("Bearer {}", user.1).as_str(),
                );
                let _ = client
                    .request_with_headers(
                        pinnacle_common::subjects::order(&user.0, "place"),
                        hdrs,
                        payload,
                    )
                    .await;
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let exits = terminate_all(&mut deployment).await;
        check("database stalled", &exits, false, &deployment.logs());
        in_flight.abort();
        stall.abort();
    })
    .await;
}

/// Places one order and waits for its answer, so every service has done real work.
async fn place_one(client: &async_nats::Client, user: &(String, String)) {
    use pinnacle_common::codec::Encoding;
    use pinnacle_common::model::{OrderReply, Reply};
    let payload = Encoding::MsgPack
        .encode(&market(
            &format!("stop-{}", uuid::Uuid::new_v4()),
            "SBIN-EQ",
            1,
        ))
        .expect("encode");
    pinnacle_tests::eventually(Duration::from_secs(30), "an order filled", || async {
        let mut hdrs = async_nats::HeaderMap::new();
        hdrs.insert(
            pinnacle_common::subjects::headers::AUTHORIZATION,
            format!("Bearer {}", user.1).as_str(),
        );
        let message = client
            .request_with_headers(
                pinnacle_common::subjects::order(&user.0, "place"),
                hdrs,
                payload.clone(),
            )
            .await
            .ok()?;
        let reply: Reply<OrderReply> = Encoding::MsgPack.decode(&message.payload).ok()?;
        reply.result.map(|_| ())
    })
    .await;
}

/// A service stopped while it is still starting (migrating, connecting to NATS, creating
/// its streams) stops cleanly too, within the bound: the stop signal is taken from the
/// moment the process runs, not only once it serves. The stop is sent as soon as the
/// worker logs its first line, and again a little later, so it lands at different points
/// of the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_stopped_while_it_starts_stops_cleanly() {
    each_backend(|backend| async move {
        let mut deployment = Deployment::start(backend, Topology::Single).await;
        for (attempt, delay) in [0, 20, 60].into_iter().enumerate() {
            let name = format!("worker-{}", 7 + attempt);
            let mut child = deployment.spawn_worker(7 + attempt);
            let began = Instant::now();
            while deployment.log(&name).is_empty() {
                assert!(
                    began.elapsed() < Duration::from_secs(10),
                    "{name} never logged"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let log = deployment.log(&name);
            signal(&child, "TERM");
            let sent = Instant::now();
            let status = tokio::time::timeout(SHUTDOWN_BOUND + SLACK, child.wait())
                .await
                .unwrap_or_else(|_| panic!("{name} still running after SIGTERM"))
                .expect("wait");
            eprintln!(
                "{name}: stopped {delay} ms after its first log line, exited after {:.2} s \
                 ({status}); it had logged:\n{log}",
                sent.elapsed().as_secs_f64()
            );
            assert!(
                status.success(),
                "{name} did not stop cleanly ({status})\n{}",
                deployment.log(&name)
            );
        }
        let exits = terminate_all(&mut deployment).await;
        check("after the starts", &exits, true, &deployment.logs());
    })
    .await;
}
