//! The tamper-evident audit log: after a run with many orders every chain and checkpoint
//! verifies and every order has its audit event; concurrent writers on one chain stay
//! consistent; and each kind of tampering (applied to a copy of the stream on a scratch
//! server, since AUDIT itself refuses deletes) is reported at exactly its first bad
//! sequence. `audit tail --user` shows only that user's events.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::StreamMessage, stream};
use async_nats::HeaderMap;
use futures::StreamExt as _;
use pinnacle_cli::audit::{self as cli_audit, TailOptions, VerifyOptions};
use pinnacle_common::audit::chain::Link;
use pinnacle_common::audit::verify::{ProblemKind, Report};
use pinnacle_common::audit::{checkpoint, AuditChains, AuditLog, Checkpoint};
use pinnacle_common::codec::Encoding;
use pinnacle_common::entities::audit_checkpoints;
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::subjects::{self, headers};
use pinnacle_tests::{market, TestNats, TestStack};
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::each_backend;

const TRADERS: usize = 4;
const ORDERS_PER_TRADER: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_verify_and_every_tampering_is_located() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.audit.checkpoint_every = 50).await;
        let mut traders = Vec::new();
        for i in 0..TRADERS {
            let trader = stack.trader(&format!("chain-{i}")).await;
            stack.lift_order_rate(&trader.id, 1_000_000).await;
            traders.push(trader);
        }
        stack.wait_for_ticks("SBIN-EQ", 2).await;

        let started = Instant::now();
        let stack_ref = &stack;
        let replies: Vec<bool> = futures::stream::iter(
            (0..ORDERS_PER_TRADER).flat_map(|n| traders.iter().map(move |t| (n, t))),
        )
        .map(|(n, trader)| async move {
            let order = market(&format!("chain-{n}"), "SBIN-EQ", 1);
            stack_ref.place(trader, &order).await.ok
        })
        .buffer_unordered(16)
        .collect()
        .await;
        let elapsed = started.elapsed();
        assert!(replies.iter().all(|ok| *ok), "every order is placed");
        eprintln!(
            "{} orders in {elapsed:?} ({:.0}/s) with the audit chain",
            replies.len(),
            replies.len() as f64 / elapsed.as_secs_f64()
        );

        // Checkpoints are stored in the background: wait for the workers' 5 per trader.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stored = audit_checkpoints::Entity::find()
                .count(&stack.db)
                .await
                .expect("count");
            if stored >= (TRADERS * ORDERS_PER_TRADER / 50) as u64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {stored} checkpoints stored"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let started = Instant::now();
        let report = verify(&stack, &VerifyOptions::default()).await;
        eprintln!("verify took {:?}: {report}", started.elapsed());
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.chains, TRADERS);
        assert_eq!(report.events, (TRADERS * (ORDERS_PER_TRADER + 1)) as u64);
        assert_eq!(report.orders_checked, TRADERS * ORDERS_PER_TRADER);
        assert!(report.checkpoints >= TRADERS * ORDERS_PER_TRADER / 50);

        tampering_is_located(&stack).await;
    })
    .await;
}

async fn verify(stack: &TestStack, options: &VerifyOptions) -> Report {
    cli_audit::verify(stack.client.clone(), Some(&stack.db), &stack.vault, options)
        .await
        .expect("verify runs")
}

/// Every message of AUDIT, in order.
pub(crate) async fn read_all(stack: &TestStack) -> Vec<StreamMessage> {
    let js = jetstream::new(stack.client.clone());
    let mut audit = js.get_stream(subjects::AUDIT_STREAM).await.expect("AUDIT");
    let last = audit.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        out.push(audit.get_raw_message(seq).await.expect("no gaps in AUDIT"));
    }
    out
}

/// What a copy keeps of a message: subject, the Pinnacle and content-type headers (never
/// JetStream's, which would re-apply de-duplication and expected sequences), payload.
#[derive(Clone)]
pub(crate) struct Copy {
    pub(crate) subject: String,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: bytes::Bytes,
}

pub(crate) fn copy_of(message: &StreamMessage) -> Copy {
    let mut hdrs = HeaderMap::new();
    for (name, values) in message.headers.iter() {
        let name = name.to_string();
        if name.starts_with("Pinnacle-") || name == headers::CONTENT_TYPE {
            for value in values {
                hdrs.append(name.clone(), value.as_str());
            }
        }
    }
    Copy {
        subject: message.subject.to_string(),
        headers: hdrs,
        payload: message.payload.clone(),
    }
}

/// Writes `messages` into a fresh `SCRATCH` stream on `scratch`, defined like AUDIT.
pub(crate) async fn scratch_stream(
    scratch: &async_nats::Client,
    messages: &[Copy],
) -> stream::Stream {
    scratch_stream_with(scratch, messages, false).await
}

/// [`scratch_stream`], allowing message deletion when `deletable` (verify then reports
/// the stream's `deny_delete` being off too).
async fn scratch_stream_with(
    scratch: &async_nats::Client,
    messages: &[Copy],
    deletable: bool,
) -> stream::Stream {
    let js = jetstream::new(scratch.clone());
    // A scratch server without authorization: the test drops its own copy (`deny_delete`
    // refuses message deletes, not deleting the stream).
    let _ = js.delete_stream("SCRATCH").await;
    let stream = js
        .create_stream(stream::Config {
            name: "SCRATCH".into(),
            deny_delete: !deletable,
            ..pinnacle_common::audit::stream_config(1)
        })
        .await
        .expect("scratch stream");
    for m in messages {
        js.publish_with_headers(m.subject.clone(), m.headers.clone(), m.payload.clone())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    stream
}

async fn verify_scratch(stack: &TestStack, scratch: &async_nats::Client) -> Report {
    let options = VerifyOptions {
        stream: "SCRATCH".into(),
        check_orders: false,
        ..VerifyOptions::default()
    };
    cli_audit::verify(scratch.clone(), Some(&stack.db), &stack.vault, &options)
        .await
        .expect("verify runs")
}

fn link_of(copy: &Copy) -> Option<Link> {
    Link::from_headers(Some(&copy.headers)).ok()
}

/// Indexes (0-based; seq = index + 1) of consecutive links of one chain, mid-stream.
fn consecutive_links(messages: &[Copy]) -> (usize, usize) {
    let start = messages.len() / 2;
    let first = (start..messages.len())
        .find(|&i| link_of(&messages[i]).is_some())
        .expect("a link");
    let second = (first + 1..messages.len())
        .find(|&i| messages[i].subject == messages[first].subject)
        .expect("its successor");
    (first, second)
}

async fn tampering_is_located(stack: &TestStack) {
    let original: Vec<Copy> = read_all(stack).await.iter().map(copy_of).collect();
    let scratch_server = TestNats::start();
    let scratch = async_nats::connect(scratch_server.url())
        .await
        .expect("scratch");
    let (a, b) = consecutive_links(&original);
    let seq_a = a as u64 + 1;

    // An untouched copy verifies (sequence numbers are preserved).
    scratch_stream(&scratch, &original).await;
    let report = verify_scratch(stack, &scratch).await;
    assert!(report.is_clean(), "copy: {report}");

    // Edited: another purpose in the same event.
    let mut edited = original.clone();
    let mut event: AuditEvent = Encoding::MsgPack.decode(&edited[a].payload).expect("event");
    event.purpose = "order.cancel".into();
    edited[a].payload = Encoding::MsgPack.encode(&event).expect("encode");
    scratch_stream(&scratch, &edited).await;
    expect_first_bad(stack, &scratch, seq_a, "edited").await;

    // Deleted (the stream keeps the gap).
    let copy = scratch_stream_with(&scratch, &original, true).await;
    assert!(copy.delete_message(seq_a).await.expect("delete"));
    expect_first_bad(stack, &scratch, seq_a, "deleted").await;

    // Reordered: two consecutive links of one chain swap places.
    let mut swapped = original.clone();
    swapped.swap(a, b);
    scratch_stream(&scratch, &swapped).await;
    expect_first_bad(stack, &scratch, seq_a, "swapped").await;

    // Inserted: a replayed copy of an earlier link of the same chain, after `a`.
    let mut inserted = original.clone();
    let earlier = (0..a)
        .find(|&i| inserted[i].subject == inserted[a].subject)
        .expect("an earlier link");
    inserted.insert(a + 1, inserted[earlier].clone());
    scratch_stream(&scratch, &inserted).await;
    expect_first_bad(stack, &scratch, seq_a + 1, "inserted").await;

    // Truncated tail: checkpoint the newest link, then drop it (and everything after).
    let last = (0..original.len())
        .rev()
        .find(|&i| link_of(&original[i]).is_some())
        .expect("a link");
    let link = link_of(&original[last]).expect("link");
    let cp = Checkpoint::sign(
        &stack.vault,
        &original[last].subject,
        &link.tip_at(last as u64 + 1),
        chrono::Utc::now().timestamp_millis(),
    )
    .expect("sign");
    checkpoint::store(&stack.db, &cp).await.expect("store");
    scratch_stream(&scratch, &original[..last]).await;
    let report = expect_first_bad(stack, &scratch, last as u64 + 1, "truncated").await;
    assert_eq!(report.problems[0].kind, ProblemKind::Truncated);
}

async fn expect_first_bad(
    stack: &TestStack,
    scratch: &async_nats::Client,
    seq: u64,
    what: &str,
) -> Report {
    let report = verify_scratch(stack, scratch).await;
    eprintln!("{what}: {report}");
    assert_eq!(report.first_bad_seq, Some(seq), "{what}: {report}");
    report
}

fn event(user: &str, n: usize) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        ts_ms: chrono::Utc::now().timestamp_millis(),
        actor: format!("writer-{n}"),
        token_id: None,
        user_id: user.to_string(),
        broker_account_id: "acc".into(),
        fields: vec!["api_key".into()],
        purpose: "test.concurrent".into(),
        request_id: n.to_string(),
        trace_id: None,
        outcome: AuditOutcome::Authorized,
        generation: None,
        reason: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_chain_stay_consistent_and_the_chain_costs_little() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let mut logs = Vec::new();
    for _ in 0..2 {
        let client = async_nats::connect(stack.nats.url())
            .await
            .expect("connect");
        logs.push(AuditLog::new(
            client,
            Duration::from_secs(10),
            stack.vault.clone(),
        ));
    }
    // Each writer appends from 4 tasks at once: 2 × 4 × 50 events on one subject.
    let mut tasks = tokio::task::JoinSet::new();
    for (w, log) in logs.iter().enumerate() {
        for t in 0..4 {
            let log = log.clone();
            tasks.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    seqs.push(
                        log.record(&event("shared", w * 1000 + t * 100 + i))
                            .await
                            .expect("recorded"),
                    );
                }
                seqs
            });
        }
    }
    let mut seqs: Vec<u64> = tasks.join_all().await.into_iter().flatten().collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 400, "every event stored once");
    let report = verify(
        &stack,
        &VerifyOptions {
            user: Some("shared".into()),
            check_orders: false,
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(report.is_clean(), "{report}");
    assert_eq!((report.events, report.chains), (400, 1));

    // The cost: sequential appends through the chain vs plain acked publishes.
    let log = &logs[0];
    let js = jetstream::new(stack.client.clone());
    let n = 300;
    let started = Instant::now();
    for i in 0..n {
        log.record(&event("bench", i)).await.expect("recorded");
    }
    let chained = started.elapsed();
    let payload = Encoding::MsgPack
        .encode(&event("plain", 0))
        .expect("encode");
    let started = Instant::now();
    for _ in 0..n {
        js.publish("audit.bench.plain", payload.clone())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let plain = started.elapsed();
    eprintln!(
        "audit append: chained {:?}/event, plain JetStream publish {:?}/event",
        chained / n as u32,
        plain / n as u32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_for_one_user_shows_only_their_events() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let alice = stack.trader("tail-alice").await;
    let bob = stack.trader("tail-bob").await;
    stack.wait_for_ticks("SBIN-EQ", 2).await;
    for (i, user) in [&alice, &bob, &alice, &bob, &alice].into_iter().enumerate() {
        let reply = stack
            .place(user, &market(&format!("tail-{i}"), "SBIN-EQ", 1))
            .await;
        assert!(reply.ok, "{reply:?}");
    }
    // Alice: one credentials.write and three order.place events.
    let mut out = Vec::new();
    let options = TailOptions {
        user: Some(alice.id.clone()),
        since_seq: Some(1),
        json: true,
        count: Some(4),
    };
    let shown = tokio::time::timeout(
        Duration::from_secs(10),
        cli_audit::tail(
            stack.client.clone(),
            subjects::AUDIT_STREAM,
            &options,
            &mut out,
        ),
    )
    .await
    .expect("four events in time")
    .expect("tail runs");
    assert_eq!(shown, 4);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines.iter().all(|l| l["user_id"] == alice.id.as_str()),
        "{lines:?}"
    );
    let purposes: Vec<_> = lines
        .iter()
        .map(|l| l["purpose"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        purposes,
        [
            "credentials.write",
            "order.place",
            "order.place",
            "order.place"
        ]
    );

    // A live tail sees a new event of hers, and none of Bob's.
    let mut live = Vec::new();
    let options = TailOptions {
        since_seq: None,
        count: Some(1),
        ..options
    };
    let client = stack.client.clone();
    let follow = tokio::spawn(async move {
        cli_audit::tail(client, subjects::AUDIT_STREAM, &options, &mut live)
            .await
            .map(|_| live)
    });
    // The consumer starts at "new": keep placing until the tail has seen one of Alice's.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while !follow.is_finished() {
        assert!(Instant::now() < deadline, "the live tail saw nothing");
        let reply = stack
            .place(&bob, &market(&format!("live-b{n}"), "SBIN-EQ", 1))
            .await;
        assert!(reply.ok);
        let reply = stack
            .place(&alice, &market(&format!("live-a{n}"), "SBIN-EQ", 1))
            .await;
        assert!(reply.ok);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live = follow.await.expect("joins").expect("tail runs");
    let line: serde_json::Value = serde_json::from_slice(live.trim_ascii()).expect("one JSON line");
    assert_eq!(line["user_id"], alice.id.as_str());
}

/// Two components of one process (each with its own connection, as the worker and the user
/// API have) share the process's chains: appending to one user's chain at once, they never
/// lose the expected-sequence check to each other, and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_of_one_process_share_one_writer_per_chain_without_races() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let chains = AuditChains::default();
    let mut logs = Vec::new();
    for _ in 0..2 {
        let client = async_nats::connect(stack.nats.url())
            .await
            .expect("connect");
        logs.push(
            AuditLog::new(client, Duration::from_secs(10), stack.vault.clone())
                .with_checkpoints(
                    stack.db.clone(),
                    pinnacle_common::config::AuditSettings::default().policy(),
                )
                .with_chains(chains.clone()),
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (w, log) in logs.iter().enumerate() {
        for t in 0..4 {
            let log = log.clone();
            tasks.spawn(async move {
                for i in 0..25 {
                    log.record(&event("one-process", w * 1000 + t * 100 + i))
                        .await
                        .expect("recorded");
                }
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("writer task");
    }
    assert_eq!(chains.races(), 0, "writers of one process raced each other");
    assert_eq!(logs[0].chains().races(), 0);
    let report = verify(
        &stack,
        &VerifyOptions {
            user: Some("one-process".into()),
            check_orders: false,
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.events, 200);

    // Two processes (separate chains) do race: the counter sees it, so the zero above
    // means something. Re-reads are expected between processes, not counted as failures.
    let (a, b) = (AuditChains::default(), AuditChains::default());
    let mut tasks = tokio::task::JoinSet::new();
    for (w, chains) in [a.clone(), b.clone()].into_iter().enumerate() {
        let client = async_nats::connect(stack.nats.url())
            .await
            .expect("connect");
        let log =
            AuditLog::new(client, Duration::from_secs(10), stack.vault.clone()).with_chains(chains);
        for t in 0..4 {
            let log = log.clone();
            tasks.spawn(async move {
                for i in 0..25 {
                    log.record(&event("two-processes", w * 1000 + t * 100 + i))
                        .await
                        .expect("recorded");
                }
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("writer task");
    }
    assert!(a.races() + b.races() > 0, "separate writers never raced");
}

/// The chain map stays bounded: past its cap, idle chains are dropped (and their tip read
/// again when next used), and the chains still verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_of_chains_stays_bounded() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let chains = AuditChains::new(4);
    let log = AuditLog::new(
        stack.client.clone(),
        Duration::from_secs(10),
        stack.vault.clone(),
    )
    .with_chains(chains.clone());
    for round in 0..2 {
        for user in 0..20 {
            log.record(&event(&format!("bounded-{user}"), round * 100 + user))
                .await
                .expect("recorded");
            assert!(chains.len() <= 5, "{} chains kept", chains.len());
        }
    }
    assert_eq!(chains.races(), 0, "a dropped tip is re-read, not raced");
    let report = verify(
        &stack,
        &VerifyOptions {
            check_orders: false,
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(report.is_clean(), "{report}");
    assert!(report.chains >= 20, "{report}");
}
