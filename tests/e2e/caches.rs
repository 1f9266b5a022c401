//! The order workers' account and limits cache (`order-worker/src/engine/cache.rs`): a
//! change made through the user API applies to the very next order, on every worker; a
//! write straight to the database within the cache's one-second lifetime; and a cached
//! account row that a credential write superseded, its announcement lost, is never the
//! one opened.

use std::time::{Duration, Instant};

use pinnacle_common::entities::{orders, risk_limits};
use pinnacle_common::model::{AuditOutcome, OrderReply, OrderRequest, Reply};
use pinnacle_order_worker::engine::CACHE_TTL;
use pinnacle_tests::{audit_events, market, no_limits, TestStack, TestUser, ADMIN_TOKEN};
use sea_orm::EntityTrait;
use secrecy::SecretString;
use serde_json::json;

use crate::each_backend;

fn code(reply: &Reply<OrderReply>) -> Option<&str> {
    reply.error.as_ref().map(|e| e.code.as_str())
}

/// A market order of one SBIN-EQ through the account labelled `account` (`None`: the default).
fn via(id: &str, account: Option<&str>) -> OrderRequest {
    OrderRequest {
        account: account.map(str::to_string),
        ..market(id, "SBIN-EQ", 1)
    }
}

/// The label of the account `reply`'s order was placed through.
/// The broker account id of the order `reply` placed.
async fn account_id(stack: &TestStack, reply: &Reply<OrderReply>) -> String {
    let order_id = &reply.result.as_ref().expect("placed").order_id;
    orders::Entity::find_by_id(order_id.clone())
        .one(&stack.db)
        .await
        .expect("query")
        .expect("stored")
        .broker_account_id
}

async fn account_of(stack: &TestStack, reply: &Reply<OrderReply>) -> String {
    let account_id = account_id(stack, reply).await;
    pinnacle_common::entities::broker_accounts::Entity::find_by_id(account_id)
        .one(&stack.db)
        .await
        .expect("query")
        .expect("account")
        .label
}

/// Sets `user`'s limits through the user API, as the admin.
async fn put_limits(stack: &TestStack, user: &TestUser, body: serde_json::Value) {
    let path = format!("/v1/users/{}/risk-limits", user.id);
    let (status, reply) = stack.api_put(&path, ADMIN_TOKEN, &body).await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_changed_through_the_api_applies_to_the_next_order() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("cached-limits").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        // Cached now: the limits in force (none of the user's own) and the account.
        assert!(stack.place(&user, &market("l-1", "SBIN-EQ", 5)).await.ok);

        put_limits(&stack, &user, json!({ "max_quantity": 3 })).await;
        let refused = stack.place(&user, &market("l-2", "SBIN-EQ", 5)).await;
        assert_eq!(code(&refused), Some("RISK_MAX_QUANTITY"));

        put_limits(&stack, &user, json!({ "kill_switch": true })).await;
        let refused = stack.place(&user, &market("l-3", "SBIN-EQ", 1)).await;
        assert_eq!(code(&refused), Some("KILL_SWITCH"), "the very next order");

        put_limits(&stack, &user, json!({ "kill_switch": false })).await;
        assert!(stack.place(&user, &market("l-4", "SBIN-EQ", 1)).await.ok);

        // The global row, and clearing the user's row.
        let (status, body) = stack
            .api_put(
                "/v1/risk-limits/global",
                ADMIN_TOKEN,
                &json!({ "kill_switch": true }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let refused = stack.place(&user, &market("l-5", "SBIN-EQ", 1)).await;
        assert_eq!(code(&refused), Some("KILL_SWITCH"));
        let (status, body) = stack
            .api_put(
                "/v1/risk-limits/global",
                ADMIN_TOKEN,
                &json!({ "kill_switch": false }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let refused = stack.place(&user, &market("l-6", "SBIN-EQ", 5)).await;
        assert_eq!(
            code(&refused),
            Some("RISK_MAX_QUANTITY"),
            "the user's row stands"
        );
        let (status, body) = stack
            .api_send(
                reqwest::Method::DELETE,
                &format!("/v1/users/{}/risk-limits", user.id),
                ADMIN_TOKEN,
                &json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(stack.place(&user, &market("l-7", "SBIN-EQ", 5)).await.ok);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_written_straight_to_the_database_bites_within_the_cache_lifetime() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("direct-kill").await;
        // Polling must not trip the rate limit.
        let fast = risk_limits::Model {
            max_orders_per_second: Some(10_000),
            ..no_limits(&user.id)
        };
        stack.set_limits(fast.clone()).await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        assert!(stack.place(&user, &market("d-0", "SBIN-EQ", 1)).await.ok);
        // Nobody announces this write.
        stack
            .set_limits_quietly(risk_limits::Model {
                kill_switch: true,
                ..fast
            })
            .await;
        let written = Instant::now();
        let mut n = 0;
        loop {
            n += 1;
            let reply = stack
                .place(&user, &market(&format!("d-{n}"), "SBIN-EQ", 1))
                .await;
            if code(&reply) == Some("KILL_SWITCH") {
                break;
            }
            assert!(reply.ok, "{:?}", reply.error);
            assert!(
                written.elapsed() < CACHE_TTL + Duration::from_millis(500),
                "the kill switch did not bite within the cache lifetime"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // And it stays on.
        let reply = stack.place(&user, &market("d-after", "SBIN-EQ", 1)).await;
        assert_eq!(code(&reply), Some("KILL_SWITCH"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_changes_through_the_api_are_seen_at_once() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("accounts-cached").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let only = stack.place(&user, &via("a-1", None)).await;
        assert_eq!(account_of(&stack, &only).await, "paper");

        // Added: two accounts and no default is ambiguous at once; the new one is usable.
        stack.put_paper_account(&user, "alt").await;
        let ambiguous = stack.place(&user, &via("a-2", None)).await;
        assert_eq!(code(&ambiguous), Some("AMBIGUOUS_ACCOUNT"));
        let alt = stack.place(&user, &via("a-3", Some("alt"))).await;
        assert_eq!(account_of(&stack, &alt).await, "alt");

        // Default changed.
        let path = format!("/v1/users/{}/default-account", user.id);
        let (status, body) = stack
            .api_put(&path, &user.token, &json!({ "label": "alt" }))
            .await;
        assert_eq!(status, 200, "{body}");
        let default = stack.place(&user, &via("a-4", None)).await;
        assert_eq!(account_of(&stack, &default).await, "alt");
        let (status, body) = stack
            .api_put(&path, &user.token, &json!({ "label": "paper" }))
            .await;
        assert_eq!(status, 200, "{body}");
        let default = stack.place(&user, &via("a-5", None)).await;
        assert_eq!(account_of(&stack, &default).await, "paper");

        // Relabelled (there is no rename: stored under a new label, the old one deleted;
        // no order used it, so its row goes).
        stack.put_paper_account(&user, "old-name").await;
        assert!(stack.place(&user, &via("a-6", Some("paper"))).await.ok);
        stack.put_paper_account(&user, "new-name").await;
        delete(&stack, &user, "old-name").await;
        let gone = stack.place(&user, &via("a-7", Some("old-name"))).await;
        assert_eq!(code(&gone), Some("NO_BROKER_ACCOUNT"), "removed at once");
        let renamed = stack.place(&user, &via("a-8", Some("new-name"))).await;
        assert_eq!(account_of(&stack, &renamed).await, "new-name");

        // Removed while orders refer to it: the row stays for them, erased, and is no
        // longer one of the user's accounts. The cached copy (credentials still sealed in
        // it) is never opened: nothing is accessed at all.
        let accesses = |events: &[(pinnacle_common::model::AuditEvent, bytes::Bytes)]| {
            events
                .iter()
                .filter(|(e, _)| e.outcome == AuditOutcome::Authorized)
                .count()
        };
        let before = accesses(&audit_events(&stack.client, &user.id).await);
        delete(&stack, &user, "alt").await;
        let erased = stack.place(&user, &via("a-9", Some("alt"))).await;
        assert_eq!(
            code(&erased),
            Some("NO_BROKER_ACCOUNT"),
            "{:?}",
            erased.error
        );
        let events = audit_events(&stack.client, &user.id).await;
        assert_eq!(accesses(&events), before, "an erased account was accessed");
        // It no longer counts: `new-name` and `paper` are left, `paper` the default.
        let default = stack.place(&user, &via("a-10", None)).await;
        assert_eq!(account_of(&stack, &default).await, "paper");
        let (status, listed) = stack
            .api_get(
                &format!("/v1/users/{}/broker-accounts", user.id),
                &user.token,
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        let labels: Vec<&str> = listed
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|a| a["label"].as_str())
            .collect();
        assert_eq!(labels, ["new-name", "paper"], "{listed}");
        let path = format!("/v1/users/{}/broker-accounts/alt", user.id);
        let (status, _) = stack.api_get(&path, &user.token).await;
        assert_eq!(status, 404, "a deleted account is not found");
        // Writing its label again revives it, on the same row (its orders keep it).
        stack.put_paper_account(&user, "alt").await;
        let revived = stack.place(&user, &via("a-11", Some("alt"))).await;
        assert_eq!(account_of(&stack, &revived).await, "alt");
        assert_eq!(
            account_id(&stack, &revived).await,
            account_id(&stack, &alt).await,
            "the same row"
        );
    })
    .await;
}

/// Deletes `user`'s account `label` through the user API.
async fn delete(stack: &TestStack, user: &TestUser, label: &str) {
    let path = format!("/v1/users/{}/broker-accounts/{label}", user.id);
    let (status, body) = stack
        .api_send(reqwest::Method::DELETE, &path, &user.token, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_drops_its_entry_when_a_change_is_announced() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("two-workers").await;
        put_limits(&stack, &user, json!({ "max_orders_per_second": 10_000 })).await;
        let (mut second, stop) = stack.second_worker(pinnacle_tests::worker_settings()).await;
        stack.wait_for_ticks("SBIN-EQ", 3).await;
        // The queue group spreads these over both workers: each caches the limits.
        let burst = |prefix: &'static str| {
            let stack = &stack;
            let user = &user;
            futures::future::join_all((0..12).map(move |i| async move {
                stack
                    .place(user, &market(&format!("{prefix}-{i}"), "SBIN-EQ", 1))
                    .await
            }))
        };
        for reply in burst("before").await {
            assert!(reply.ok, "{:?}", reply.error);
        }
        put_limits(&stack, &user, json!({ "kill_switch": true })).await;
        // All at once, well inside the cache lifetime: a worker that missed the
        // announcement would still accept.
        let sent = Instant::now();
        let after = burst("after").await;
        assert!(
            sent.elapsed() < CACHE_TTL,
            "the burst took too long to prove anything"
        );
        for reply in after {
            assert_eq!(code(&reply), Some("KILL_SWITCH"));
        }
        stop.cancel();
        while second.join_next().await.is_some() {}
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_row_superseded_by_an_unannounced_write_is_never_opened() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("superseded").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        assert!(stack.place(&user, &via("s-1", None)).await.ok);
        let cached = stack.broker_account(&user.id).await;
        assert_eq!(cached.generation, 1);

        // A credential write whose announcement is lost: the register moves to 2.
        let audit = pinnacle_common::audit::AuditLog::new(
            stack.client.clone(),
            Duration::from_secs(5),
            stack.vault.clone(),
        );
        let register =
            pinnacle_common::keystore::Register::new(stack.client.clone(), Duration::from_secs(5));
        let writer = pinnacle_user_api::accounts::Writer {
            actor: "test".into(),
            token_id: None,
            request_id: uuid::Uuid::now_v7().to_string(),
        };
        let body = pinnacle_user_api::accounts::PutAccount::basic(
            "paper",
            SecretString::from("new-api-key"),
            SecretString::from("NEWCLIENT"),
            SecretString::from("1111"),
        );
        let store = pinnacle_user_api::accounts::CredentialStore {
            db: &stack.db,
            vault: &stack.vault,
            audit: &audit,
            register: &register,
        };
        let written =
            pinnacle_user_api::accounts::write_account(store, &writer, &user.id, "paper", &body)
                .await
                .expect("written");
        assert_eq!(written.generation, 2);

        // Nothing announced the write; the register did, to every worker's watch within
        // milliseconds. From the first order that sees it on, generation 2 is the one
        // audited and opened: the cached generation-1 row is dropped before the audit
        // event, never refused as rolled back, and never comes back.
        let written_at = Instant::now();
        let mut n = 0;
        loop {
            n += 1;
            assert!(stack.place(&user, &via(&format!("t-{n}"), None)).await.ok);
            let events = audit_events(&stack.client, &user.id).await;
            let (last, _) = events.last().expect("events");
            assert_eq!(
                (last.outcome, last.purpose.as_str()),
                (AuditOutcome::Authorized, "order.place")
            );
            if last.generation == Some(2) {
                break;
            }
            assert!(
                written_at.elapsed() < CACHE_TTL,
                "the superseded row was still opened after the cache lifetime"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for m in 0..3 {
            assert!(
                stack
                    .place(&user, &via(&format!("s-after-{m}"), None))
                    .await
                    .ok
            );
        }
        let events: Vec<_> = audit_events(&stack.client, &user.id)
            .await
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        let after_write: Vec<_> = events
            .iter()
            .skip_while(|e| e.outcome != AuditOutcome::Written || e.generation != Some(2))
            .filter(|e| e.purpose == "order.place")
            .map(|e| e.generation)
            .collect();
        let first_new = after_write
            .iter()
            .position(|g| *g == Some(2))
            .expect("opened");
        assert!(
            after_write[first_new..].iter().all(|g| *g == Some(2)),
            "generation 1 came back: {after_write:?}"
        );
        assert!(
            events
                .iter()
                .all(|e| e.outcome != AuditOutcome::DecryptFailed),
            "no refused or failed decrypt: {events:?}"
        );
    })
    .await;
}
