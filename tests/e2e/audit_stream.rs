//! An audit stream that cannot be shortened unseen: `pinnacle audit verify` fails after a
//! `STREAM.UPDATE` with `max_msgs` (on an unauthenticated server, where anyone can send
//! it), after a chain's tail is dropped, and while a chain stays unsealed past its deadline;
//! writers seal their links on a timer without a further append and on a graceful stop;
//! with AUDIT gone the services refuse ("audit stream unavailable"), do not re-create it
//! over the lost history, and the loss stays visible after an operator re-creates it.

use std::time::Duration;

use async_nats::jetstream;
use pinnacle_cli::audit::{self as cli_audit, VerifyOptions};
use pinnacle_common::audit::stream_check::StreamProblemKind;
use pinnacle_common::audit::verify::{ProblemKind, Report};
use pinnacle_common::audit::{self, checkpoint, AuditError, AuditLog, CheckpointPolicy};
use pinnacle_common::config::DatabaseSettings;
use pinnacle_common::entities::audit_checkpoints;
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::subjects;
use pinnacle_tests::{eventually, market, TestDb, TestNats, TestStack};
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::audit_chain::{copy_of, read_all, scratch_stream};
use crate::each_backend;

/// How long a condition polled for may take.
const DEADLINE: Duration = Duration::from_secs(15);

fn event(user: &str, n: usize) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        ts_ms: chrono::Utc::now().timestamp_millis(),
        actor: "audit-stream-test".into(),
        token_id: None,
        user_id: user.to_string(),
        broker_account_id: "acc".into(),
        fields: vec!["api_key".into()],
        purpose: "test.seal".into(),
        request_id: n.to_string(),
        trace_id: None,
        outcome: AuditOutcome::Authorized,
        generation: None,
        reason: None,
    }
}

/// Verifies one user's chain on `stream` with the stack's database (or none).
async fn verify_user(
    client: &async_nats::Client,
    stack: &TestStack,
    with_db: bool,
    stream: &str,
    user: &str,
    max_unsealed: Duration,
) -> Report {
    let options = VerifyOptions {
        stream: stream.into(),
        user: Some(user.into()),
        check_orders: false,
        max_unsealed: Some(max_unsealed),
        ..VerifyOptions::default()
    };
    let db = with_db.then_some(&stack.db);
    cli_audit::verify(client.clone(), db, &stack.vault, &options)
        .await
        .expect("verify runs")
}

fn kinds(report: &Report) -> Vec<ProblemKind> {
    report.problems.iter().map(|p| p.kind).collect()
}

fn stream_kinds(report: &Report) -> Vec<StreamProblemKind> {
    report.stream_problems.iter().map(|p| p.kind).collect()
}

/// Polls until a checkpoint of `user`'s chain at `position` is in the database.
async fn until_checkpointed(stack: &TestStack, user: &str, position: u64) {
    let subject = subjects::audit_credential(user);
    let what = format!("a checkpoint of link {position}");
    eventually(DEADLINE, &what, || async {
        let stored = checkpoint::load(&stack.db, Some(&subject))
            .await
            .expect("load checkpoints");
        stored
            .iter()
            .any(|cp| cp.position == position)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_update_that_shortens_audit_fails_verification_for_good() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let alice = stack.trader("short-alice").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        for i in 0..5 {
            let reply = stack
                .place(&alice, &market(&format!("short-{i}"), "SBIN-EQ", 1))
                .await;
            assert!(reply.ok, "{reply:?}");
        }
        let options = VerifyOptions::default();
        let verify = || {
            cli_audit::verify(
                stack.client.clone(),
                Some(&stack.db),
                &stack.vault,
                &options,
            )
        };
        let report = verify().await.expect("verify runs");
        assert!(report.is_clean(), "before: {report}");

        // The test server has no authorization (like nats/dev.conf): anyone can do this.
        let js = jetstream::new(stack.client.clone());
        let mut stream = js.get_stream(subjects::AUDIT_STREAM).await.expect("AUDIT");
        let info = stream.info().await.expect("info").clone();
        assert!(info.state.messages >= 6, "{:?}", info.state);
        let mut config = info.config.clone();
        config.max_messages = 3;
        js.update_stream(config.clone())
            .await
            .expect("unauthenticated, the update goes through");
        let report = verify().await.expect("verify runs");
        eprintln!("shortened: {report}");
        assert!(!report.is_clean());
        let found = stream_kinds(&report);
        assert!(found.contains(&StreamProblemKind::Limit), "{report}");
        assert!(
            found.contains(&StreamProblemKind::HistoryDiscarded),
            "{report}"
        );
        assert!(report.to_string().contains("FAILED"), "{report}");

        // Lifting the limit again does not hide it: the first sequence stays above 1.
        config.max_messages = -1;
        js.update_stream(config).await.expect("limit lifted");
        let report = verify().await.expect("verify runs");
        assert_eq!(
            stream_kinds(&report),
            [StreamProblemKind::HistoryDiscarded],
            "{report}"
        );
        assert!(!report.is_clean());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_seal_on_a_timer_and_on_stop_and_unsealed_chains_are_reported() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let timeout = Duration::from_secs(5);
        let timed = AuditLog::new(stack.client.clone(), timeout, stack.vault.clone())
            .with_checkpoints(
                stack.db.clone(),
                CheckpointPolicy {
                    every_events: 1_000,
                    every: Duration::from_millis(300),
                },
            );
        for i in 0..3 {
            timed
                .record(&event("seal-timer", i))
                .await
                .expect("recorded");
        }
        // No further append: the timer alone seals link 3.
        until_checkpointed(&stack, "seal-timer", 3).await;
        let tight = Duration::from_millis(1);
        let report = verify_user(&stack.client, &stack, true, "AUDIT", "seal-timer", tight).await;
        assert!(report.is_clean(), "timer-sealed: {report}");

        // A graceful stop seals at once, long before the timer would.
        let slow = AuditLog::new(stack.client.clone(), timeout, stack.vault.clone())
            .with_checkpoints(
                stack.db.clone(),
                CheckpointPolicy {
                    every_events: 1_000,
                    every: Duration::from_secs(3600),
                },
            );
        for i in 0..2 {
            slow.record(&event("seal-stop", i)).await.expect("recorded");
        }
        assert_eq!(slow.checkpoint_now().await.expect("sealed"), 1);
        assert_eq!(slow.checkpoint_now().await.expect("nothing new"), 0);
        let report = verify_user(&stack.client, &stack, true, "AUDIT", "seal-stop", tight).await;
        assert!(report.is_clean(), "stop-sealed: {report}");

        // A writer that never seals (as one killed before its timer fired): once its last
        // link is older than the deadline, verify reports the chain from its first link.
        let bare = AuditLog::new(stack.client.clone(), timeout, stack.vault.clone());
        let first = bare.record(&event("seal-none", 0)).await.expect("recorded");
        bare.record(&event("seal-none", 1)).await.expect("recorded");
        let recent = verify_user(
            &stack.client,
            &stack,
            true,
            "AUDIT",
            "seal-none",
            Duration::from_secs(60),
        )
        .await;
        assert!(recent.is_clean(), "within the deadline: {recent}");
        let report = eventually(DEADLINE, "the chain reported unsealed", || async {
            let report = verify_user(
                &stack.client,
                &stack,
                true,
                "AUDIT",
                "seal-none",
                Duration::from_millis(200),
            )
            .await;
            (!report.problems.is_empty()).then_some(report)
        })
        .await;
        assert_eq!(kinds(&report), [ProblemKind::Unsealed], "{report}");
        assert_eq!(report.first_bad_seq, Some(first), "{report}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tail_is_reported_with_and_without_the_database() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let log = AuditLog::new(
            stack.client.clone(),
            Duration::from_secs(5),
            stack.vault.clone(),
        )
        .with_checkpoints(
            stack.db.clone(),
            CheckpointPolicy {
                every_events: 1_000,
                every: Duration::from_millis(300),
            },
        );
        let mut seqs = Vec::new();
        for i in 0..6 {
            seqs.push(log.record(&event("tail-drop", i)).await.expect("recorded"));
        }
        until_checkpointed(&stack, "tail-drop", 6).await;

        // The stream rebuilt without the chain's last two links (and what came after).
        let keep = seqs[3];
        let copies: Vec<_> = read_all(&stack)
            .await
            .iter()
            .filter(|m| m.sequence <= keep)
            .map(copy_of)
            .collect();
        let scratch_server = TestNats::start();
        let scratch = async_nats::connect(scratch_server.url())
            .await
            .expect("scratch");
        scratch_stream(&scratch, &copies).await;
        let long = Duration::from_secs(3600);
        let report = verify_user(&scratch, &stack, true, "SCRATCH", "tail-drop", long).await;
        eprintln!("tail dropped: {report}");
        assert_eq!(kinds(&report), [ProblemKind::Truncated], "{report}");
        assert_eq!(report.first_bad_seq, Some(keep + 1), "{report}");

        // Without the database the stream's own checkpoint went with the tail, so the
        // links left are unsealed past their deadline.
        let report = eventually(DEADLINE, "the chain reported unsealed", || async {
            let report = verify_user(
                &scratch,
                &stack,
                false,
                "SCRATCH",
                "tail-drop",
                Duration::from_millis(200),
            )
            .await;
            (!report.problems.is_empty()).then_some(report)
        })
        .await;
        assert_eq!(kinds(&report), [ProblemKind::Unsealed], "{report}");
        assert_eq!(report.first_bad_seq, Some(seqs[0]), "{report}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_audit_missing_services_refuse_and_never_recreate_it_in_silence() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.audit.checkpoint_secs = 1).await;
        let bob = stack.trader("gone-bob").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let reply = stack.place(&bob, &market("gone-1", "SBIN-EQ", 1)).await;
        assert!(reply.ok, "{reply:?}");
        until_checkpointed(&stack, &bob.id, 2).await;

        let js = jetstream::new(stack.client.clone());
        js.delete_stream(subjects::AUDIT_STREAM)
            .await
            .expect("delete AUDIT (no authorization here)");
        let reply = stack.place(&bob, &market("gone-2", "SBIN-EQ", 1)).await;
        let error = reply.error.expect("refused");
        assert_eq!(error.code.as_str(), "AUDIT_UNAVAILABLE");
        assert!(
            error.message.starts_with("audit stream unavailable:"),
            "{}",
            error.message
        );

        // What a restarting service does: it refuses to re-create AUDIT over lost history.
        let prepared = audit::prepare_stream(&js, &stack.db).await;
        assert!(
            matches!(&prepared, Err(AuditError::StreamUnavailable(m)) if m.contains("not re-created")),
            "{prepared:?}"
        );
        assert!(js.get_stream(subjects::AUDIT_STREAM).await.is_err(), "still missing");
        let report = cli_audit::verify(
            stack.client.clone(),
            Some(&stack.db),
            &stack.vault,
            &VerifyOptions::default(),
        )
        .await
        .expect("verify runs");
        assert_eq!(stream_kinds(&report), [StreamProblemKind::Missing], "{report}");
        assert!(!report.is_clean());

        // The operator re-creates it deliberately: trading resumes, and verify keeps
        // showing that the old history is gone (the stored checkpoints lie beyond it).
        audit::ensure_stream(&js).await.expect("re-created");
        let reply = stack.place(&bob, &market("gone-3", "SBIN-EQ", 1)).await;
        assert!(reply.ok, "{reply:?}");
        let report = cli_audit::verify(
            stack.client.clone(),
            Some(&stack.db),
            &stack.vault,
            &VerifyOptions {
                check_orders: false,
                ..VerifyOptions::default()
            },
        )
        .await
        .expect("verify runs");
        eprintln!("after re-creation: {report}");
        assert!(!report.problems.is_empty(), "{report}");
        assert!(
            report.problems.iter().all(|p| matches!(
                p.kind,
                ProblemKind::Truncated | ProblemKind::CheckpointMismatch
            )),
            "{report}"
        );

        // A fresh install (a database without checkpoints) is the one case a service
        // creates AUDIT itself.
        let fresh_store = TestDb::create(backend).await;
        let fresh_db = pinnacle_cli::stack::database(&DatabaseSettings {
            database_url: fresh_store.url.clone(),
            database_max_connections: 2,
        })
        .await
        .expect("migrated");
        let fresh = TestNats::start();
        let fresh_js = jetstream::new(async_nats::connect(fresh.url()).await.expect("fresh"));
        assert_eq!(
            audit_checkpoints::Entity::find().count(&fresh_db).await.expect("count"),
            0
        );
        let prepared = audit::prepare_stream(&fresh_js, &fresh_db).await.expect("created");
        assert_eq!(prepared, audit::Prepared::Created);
        let prepared = audit::prepare_stream(&fresh_js, &fresh_db).await.expect("found");
        assert_eq!(prepared, audit::Prepared::Found);
    })
    .await;
}
