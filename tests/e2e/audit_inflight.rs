//! Many events in flight on one user's chain: 64 concurrent appends from one process all
//! succeed and form one valid chain, also over a slow network (a proxy adding latency); a foreign writer appending in the middle is healed
//! (every append still succeeds, the chain still verifies); a stream that starts refusing
//! in the middle fails every append it did not store, and never reports one as recorded
//! that the stream lacks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use pinnacle_cli::audit::{self as cli_audit, VerifyOptions};
use pinnacle_common::audit::verify::Report;
use pinnacle_common::audit::{AuditChains, AuditError, AuditLog};
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::subjects;
use pinnacle_tests::TestStack;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::audit_chain::read_all;

/// Concurrent appends to one chain.
const CONCURRENT: usize = 64;

fn event(user: &str, n: usize) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        ts_ms: chrono::Utc::now().timestamp_millis(),
        actor: format!("inflight-{n}"),
        token_id: None,
        user_id: user.to_string(),
        broker_account_id: "acc".into(),
        fields: vec!["api_key".into()],
        purpose: "test.inflight".into(),
        request_id: n.to_string(),
        trace_id: None,
        outcome: AuditOutcome::Authorized,
        generation: None,
        reason: None,
    }
}

async fn verify_user(stack: &TestStack, user: &str) -> Report {
    let options = VerifyOptions {
        user: Some(user.into()),
        check_orders: false,
        ..VerifyOptions::default()
    };
    cli_audit::verify(
        stack.client.clone(),
        Some(&stack.db),
        &stack.vault,
        &options,
    )
    .await
    .expect("verify runs")
}

/// A writer of its own (its own connection and chain states: another process).
async fn writer(stack: &TestStack) -> AuditLog {
    let client = async_nats::connect(stack.nats.url())
        .await
        .expect("connect");
    AuditLog::new(client, Duration::from_secs(10), stack.vault.clone())
        .with_chains(AuditChains::default())
}

/// Records `events` all at once through `log`; each result with its event.
async fn record_all(
    log: &AuditLog,
    events: Vec<AuditEvent>,
) -> Vec<(AuditEvent, Result<u64, AuditError>)> {
    let appends = events.into_iter().map(|event| async move {
        let result = log.record(&event).await;
        (event, result)
    });
    futures::future::join_all(appends).await
}

/// Event id → stream sequence of every message on `subject`.
async fn stored_ids(stack: &TestStack, subject: &str) -> HashMap<String, u64> {
    read_all(stack)
        .await
        .into_iter()
        .filter(|m| m.subject.as_str() == subject)
        .filter_map(|m| {
            let id = m
                .headers
                .get(subjects::headers::NATS_MSG_ID)?
                .as_str()
                .to_string();
            Some((id, m.sequence))
        })
        .collect()
}

/// Every `Ok(seq)` is the stream's copy of that very event: no false success.
fn assert_acks_are_stored(
    results: &[(AuditEvent, Result<u64, AuditError>)],
    stored: &HashMap<String, u64>,
) {
    for (event, result) in results {
        match result {
            Ok(seq) => assert_eq!(
                stored.get(&event.event_id),
                Some(seq),
                "event {} acknowledged at {seq} but not stored there",
                event.event_id
            ),
            Err(error) => assert!(
                !stored.contains_key(&event.event_id),
                "event {} stored but its caller got {error}",
                event.event_id
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_chain_all_succeed_and_verify() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let log = writer(&stack).await;
    // A first append reads the tip; the measured burst starts from a known tip.
    log.record(&event("burst", 0)).await.expect("first append");
    for round in 0..3 {
        let events = (1..=CONCURRENT).map(|n| event("burst", round * 100 + n));
        let started = Instant::now();
        let results = record_all(&log, events.collect()).await;
        let elapsed = started.elapsed();
        let mut seqs: Vec<u64> = results
            .iter()
            .map(|(_, r)| *r.as_ref().expect("every append succeeds"))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), CONCURRENT, "each event stored once");
        eprintln!(
            "{CONCURRENT} concurrent appends to one chain: {elapsed:?} ({:.0} appends/s), \
             {} mispredicted, {} races",
            CONCURRENT as f64 / elapsed.as_secs_f64(),
            log.chains().mispredictions(),
            log.chains().races(),
        );
    }
    plain_publishes_for_comparison(&stack).await;
    let subject = subjects::audit_credential("burst");
    // Links chained after a link in flight carry its event id as the expected last one.
    let pipelined = read_all(&stack)
        .await
        .iter()
        .filter(|m| m.subject.as_str() == subject)
        .filter(|m| {
            m.headers
                .get(async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID)
                .is_some()
        })
        .count();
    eprintln!(
        "{pipelined} of {} links were sent before their predecessor's ack",
        3 * CONCURRENT
    );
    assert!(pipelined > 0, "no link was pipelined");
    let stored = stored_ids(&stack, &subject).await;
    assert_eq!(stored.len(), 1 + 3 * CONCURRENT);
    let report = verify_user(&stack, "burst").await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        (report.events, report.chains),
        (1 + 3 * CONCURRENT as u64, 1)
    );
    // One process, one writer: nothing else appended, so no race was lost.
    assert_eq!(log.chains().races(), 0);
}

/// A TCP proxy in front of `upstream` (`nats://host:port`) that delays every byte by
/// `delay` each way, like a network with a `2 × delay` round trip; returns its URL.
async fn slow_proxy(upstream: &str, delay: Duration) -> String {
    let upstream = upstream.rsplit('/').next().unwrap_or(upstream).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream)
                .await
                .expect("upstream");
            let ((client_read, client_write), (server_read, server_write)) =
                (client.into_split(), server.into_split());
            tokio::spawn(delayed(client_read, server_write, delay));
            tokio::spawn(delayed(server_read, client_write, delay));
        }
    });
    format!("nats://{addr}")
}

/// Copies `from` to `to`, each chunk `delay` after it was read (chunks keep flowing).
async fn delayed(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if tx
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_slow_network_concurrent_appends_cost_about_one_round_trip() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let url = slow_proxy(stack.nats.url(), Duration::from_millis(2)).await;
    let client = async_nats::connect(&url).await.expect("connect via proxy");
    let log = AuditLog::new(client, Duration::from_secs(10), stack.vault.clone());
    let started = Instant::now();
    log.record(&event("slow", 0)).await.expect("first append");
    eprintln!("one append over a 4 ms round trip: {:?}", started.elapsed());
    let events = (1..=CONCURRENT).map(|n| event("slow", n));
    let started = Instant::now();
    let results = record_all(&log, events.collect()).await;
    let elapsed = started.elapsed();
    assert!(
        results.iter().all(|(_, r)| r.is_ok()),
        "every append succeeds"
    );
    eprintln!(
        "{CONCURRENT} concurrent appends over a 4 ms round trip: {elapsed:?} ({:.0} appends/s)",
        CONCURRENT as f64 / elapsed.as_secs_f64()
    );
    let stored = stored_ids(&stack, &subjects::audit_credential("slow")).await;
    assert_acks_are_stored(&results, &stored);
    let report = verify_user(&stack, "slow").await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.events, 1 + CONCURRENT as u64);
}

/// The floor: 64 plain JetStream publishes (no chain), one after another and all at once.
async fn plain_publishes_for_comparison(stack: &TestStack) {
    let js = jetstream::new(stack.client.clone());
    let payload = bytes::Bytes::from_static(b"plain");
    let started = Instant::now();
    for _ in 0..CONCURRENT {
        let ack = js.publish("audit.bench.serial", payload.clone()).await;
        ack.expect("publish").await.expect("ack");
    }
    let serial = started.elapsed();
    let started = Instant::now();
    let mut acks = Vec::new();
    for _ in 0..CONCURRENT {
        let ack = js.publish("audit.bench.burst", payload.clone()).await;
        acks.push(ack.expect("publish"));
    }
    for ack in acks {
        ack.await.expect("ack");
    }
    eprintln!(
        "{CONCURRENT} plain publishes: {serial:?} one by one, {:?} all in flight",
        started.elapsed()
    );
}

/// The foreign writer's events are numbered from here (ours stay below).
const FOREIGN: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_writer_in_the_middle_is_healed_and_the_chain_verifies() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let (log, foreign) = (writer(&stack).await, writer(&stack).await);
    log.record(&event("mixed", 0)).await.expect("first append");
    // The foreign writer (another process) appends to the same chain and to another
    // user's, in the same stream, while ours are in flight: our links chained after one
    // it overtook, or after a sequence it took, must be refused and re-chained.
    let done = std::sync::atomic::AtomicBool::new(false);
    // At least four rounds, and more (up to 40) until the foreign writer has got in
    // between at least once: on a loaded machine the interleaving is up to the scheduler.
    let healed = || log.chains().mispredictions() + log.chains().races();
    let ours = async {
        let mut results = Vec::new();
        for round in 0..40 {
            let events = (1..=CONCURRENT).map(|n| event("mixed", round * 100 + n));
            results.extend(record_all(&log, events.collect()).await);
            if round >= 3 && healed() > 0 {
                break;
            }
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        results
    };
    let theirs = async {
        let mut results = Vec::new();
        for n in 0.. {
            if done.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
            let user = if n % 2 == 0 { "mixed" } else { "other" };
            results.extend(record_all(&foreign, vec![event(user, FOREIGN + n)]).await);
        }
        results
    };
    let (ours, theirs) = tokio::join!(ours, theirs);
    let results: Vec<_> = ours.into_iter().chain(theirs).collect();
    for (event, result) in &results {
        assert!(result.is_ok(), "{}: {result:?}", event.event_id);
    }
    let mixed: Vec<_> = results
        .into_iter()
        .filter(|(e, _)| e.user_id == "mixed")
        .collect();
    let stored = stored_ids(&stack, &subjects::audit_credential("mixed")).await;
    assert_acks_are_stored(&mixed, &stored);
    assert_eq!(stored.len(), 1 + mixed.len());
    for user in ["mixed", "other"] {
        let report = verify_user(&stack, user).await;
        assert!(report.is_clean(), "{report}");
    }
    let ours_count = mixed
        .iter()
        .filter(|(e, _)| e.request_id.parse().is_ok_and(|n: usize| n < FOREIGN))
        .count();
    eprintln!(
        "with a foreign writer ({} of its appends): {} mispredicted, {} races (ours), {} races (theirs)",
        mixed.len() - ours_count,
        log.chains().mispredictions(),
        log.chains().races(),
        foreign.chains().races()
    );
    assert!(
        healed() > 0,
        "the foreign writer never got in between in 40 rounds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_refuses_in_the_middle_fails_every_append_it_lacks() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let log = writer(&stack).await;
    log.record(&event("refused", 0))
        .await
        .expect("first append");
    // The stream takes 10 more messages, then refuses (discard new): appends in flight
    // after the tenth are refused by the server.
    let js = jetstream::new(stack.client.clone());
    let mut audit = js.get_stream(subjects::AUDIT_STREAM).await.expect("AUDIT");
    let mut config = audit.info().await.expect("info").config.clone();
    let before = audit.info().await.expect("info").state.messages;
    let lifted = config.clone();
    config.max_messages = i64::try_from(before).expect("count") + 10;
    config.discard = jetstream::stream::DiscardPolicy::New;
    js.update_stream(config).await.expect("limit set");

    let results = record_all(
        &log,
        (1..=CONCURRENT).map(|n| event("refused", n)).collect(),
    )
    .await;
    js.update_stream(lifted).await.expect("limit lifted");

    let acked = results.iter().filter(|(_, r)| r.is_ok()).count();
    assert_eq!(acked, 10, "exactly the stored appends succeed");
    for (_, result) in &results {
        if let Err(error) = result {
            assert!(
                matches!(error, AuditError::Publish(_)),
                "a refusal, not {error}"
            );
        }
    }
    let stored = stored_ids(&stack, &subjects::audit_credential("refused")).await;
    assert_acks_are_stored(&results, &stored);
    assert_eq!(stored.len(), 11);
    let report = verify_user(&stack, "refused").await;
    assert!(report.is_clean(), "{report}");

    // Once the stream takes messages again, the chain continues after its stored tip.
    let more = record_all(&log, (0..8).map(|n| event("refused", 500 + n)).collect()).await;
    assert!(more.iter().all(|(_, r)| r.is_ok()), "appends resume");
    let report = verify_user(&stack, "refused").await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.events, 19);
}
