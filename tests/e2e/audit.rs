//! Audit before access: every credential use is stored in JetStream first, holds no
//! secret, and when the audit stream is unavailable the order is refused (fail closed).

use pinnacle_common::model::AuditOutcome;
use pinnacle_common::subjects;
use pinnacle_tests::{audit_events, market, TestStack};

use crate::each_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_leaves_an_audit_event_without_secrets() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let alice = stack.trader("alice").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let reply = stack.place(&alice, &market("aud-1", "SBIN-EQ", 1)).await;
        assert!(reply.ok, "{reply:?}");

        let events = audit_events(&stack.client, &alice.id).await;
        let purposes: Vec<_> = events.iter().map(|(e, _)| e.purpose.as_str()).collect();
        assert_eq!(purposes, ["credentials.write", "order.place"]);
        let (access, raw) = &events[1];
        assert_eq!(access.outcome, AuditOutcome::Authorized);
        assert_eq!(access.actor, alice.id);
        assert_eq!(access.user_id, alice.id);
        assert!(access.token_id.is_some());
        assert_eq!(access.fields, ["api_key", "client_code", "secret"]);
        assert!(access.trace_id.as_deref().is_some_and(|t| t.len() == 32));
        for (_, raw) in &events {
            let text = String::from_utf8_lossy(raw);
            assert!(
                !text.contains("SECRET-"),
                "an audit event holds a secret: {text}"
            );
            assert!(
                !text.contains(&alice.token),
                "an audit event holds the API token"
            );
        }
        assert!(!raw.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_audit_stream_gone_orders_are_refused_and_credentials_untouched() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let bob = stack.trader("bob").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let js = async_nats::jetstream::new(stack.client.clone());
        js.delete_stream(subjects::AUDIT_STREAM)
            .await
            .expect("delete stream");

        let reply = stack.place(&bob, &market("noaudit-1", "SBIN-EQ", 1)).await;
        let error = reply.error.expect("refused");
        assert_eq!(error.code.as_str(), "AUDIT_UNAVAILABLE");
        let stored = stack.order_count(&bob.id).await;
        assert_eq!(stored, 0, "no order without an audit trail");

        // Once the stream is back, the same client order id goes through.
        pinnacle_common::audit::ensure_stream(&js)
            .await
            .expect("recreate");
        let reply = stack.place(&bob, &market("noaudit-1", "SBIN-EQ", 1)).await;
        assert!(reply.ok, "{reply:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_stream_refuses_message_deletion_and_purge() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let alice = stack.trader("alice").await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let mut stream = js.get_stream(subjects::AUDIT_STREAM).await.expect("stream");
    let info = stream.info().await.expect("info").clone();
    assert!(info.config.deny_delete && info.config.deny_purge && !info.config.allow_rollup);
    assert!(
        stream.delete_message(1).await.is_err(),
        "message delete is denied"
    );
    assert!(stream.purge().await.is_err(), "purge is denied");
    assert_eq!(audit_events(&stack.client, &alice.id).await.len(), 1);
}
