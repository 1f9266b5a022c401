//! Whole-row rollback of broker credentials: a row saved earlier (every sealed field, its
//! data key, master key id and generation) and written back after a newer write is
//! self-consistent and would decrypt, so the generation register outside the database
//! (`pinnacle_common::keystore::generations`) refuses it. Also: the writers that bump a
//! generation (the user API, the worker's SmartAPI session save) never trip the check, a
//! register left behind by a crash between commit and advance refuses nothing, and an
//! erased account cannot be brought back from a copy.

use std::time::Duration;

use pinnacle_cli::audit::{self as cli_audit, VerifyOptions};
use pinnacle_common::audit::generations::Witness;
use pinnacle_common::entities::broker_accounts;
use pinnacle_common::keystore::{self, generations, Register};
use pinnacle_common::model::{AuditOutcome, DecryptReason};
use pinnacle_common::subjects;
use pinnacle_order_worker::engine::CACHE_TTL;
use pinnacle_tests::angel::AngelStack;
use pinnacle_tests::{audit_events, eventually, market, TestStack};
use sea_orm::ActiveModelTrait;
use secrecy::SecretString;
use serde_json::json;

use crate::each_backend;

/// Writes `saved` back over its row, every column, as someone with only database access.
/// Nobody announces such a write, so it returns once the workers' cached copy of the
/// account (at most `CACHE_TTL` old) has lapsed and the next order reads the row.
async fn write_back(stack: &TestStack, saved: &broker_accounts::Model) {
    let row: broker_accounts::ActiveModel = saved.clone().into();
    row.reset_all()
        .update(&stack.db)
        .await
        .expect("write the saved row back");
    let now = stack.broker_account(&saved.user_id).await;
    assert_eq!(&now, saved, "the whole row is the saved one again");
    tokio::time::sleep(CACHE_TTL).await;
}

/// The register's generation for `account_id`, read from the bucket.
async fn register_of(stack: &TestStack, account_id: &str) -> Option<i64> {
    let register = Register::new(stack.client.clone(), Duration::from_secs(5));
    let store = register.store().await.expect("bucket");
    generations::read(store, account_id).await.expect("read")
}

async fn verify(stack: &TestStack, user_id: &str) -> pinnacle_common::audit::verify::Report {
    cli_audit::verify(
        stack.client.clone(),
        Some(&stack.db),
        &stack.vault,
        &VerifyOptions {
            user: Some(user_id.to_string()),
            ..Default::default()
        },
    )
    .await
    .expect("verify runs")
}

/// The last audit event is a `decrypt_failed` for `generation` naming `rolled_back`,
/// after the `authorized` event for the same access.
async fn assert_refusal_audited(stack: &TestStack, user_id: &str, generation: i64) {
    let events: Vec<_> = audit_events(&stack.client, user_id)
        .await
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    let [.., authorized, failed] = events.as_slice() else {
        panic!("too few audit events: {events:?}");
    };
    assert_eq!(
        (authorized.outcome, authorized.generation, authorized.reason),
        (AuditOutcome::Authorized, Some(generation), None)
    );
    assert_eq!(
        (failed.outcome, failed.generation, failed.reason),
        (
            AuditOutcome::DecryptFailed,
            Some(generation),
            Some(DecryptReason::RolledBack)
        )
    );
    assert_eq!(failed.request_id, authorized.request_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_row_rollback_is_refused_audited_and_reported() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let mallory = stack.trader("mallory").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        assert!(
            stack
                .place(&mallory, &market("rb-1", "SBIN-EQ", 1))
                .await
                .ok
        );

        // Save the whole row at generation 1; the owner then updates the credentials.
        let saved = stack.broker_account(&mallory.id).await;
        assert_eq!(saved.generation, 1);
        let updated = stack.put_paper_account(&mallory, "paper").await;
        assert_eq!(updated["generation"], 2);
        assert_eq!(register_of(&stack, &saved.id).await, Some(2));
        let newer = stack.broker_account(&mallory.id).await;
        assert!(
            stack
                .place(&mallory, &market("rb-2", "SBIN-EQ", 1))
                .await
                .ok
        );

        // The attack: the saved row goes back, whole. Nothing in the row gives it away...
        write_back(&stack, &saved).await;
        assert!(
            keystore::open_account(&stack.vault, &saved).is_ok(),
            "the restored row is self-consistent: only the register can tell"
        );
        // ...but the next order is refused, opaquely, before any broker call.
        let reply = stack.place(&mallory, &market("rb-3", "SBIN-EQ", 1)).await;
        let error = reply.error.expect("refused");
        assert_eq!(error.code.as_str(), "CREDENTIAL_UNAVAILABLE");
        assert_eq!(error.message, "credential could not be decrypted");
        assert_eq!(stack.order_count(&mallory.id).await, 2, "no order, no fill");
        assert_refusal_audited(&stack, &mallory.id, 1).await;

        // `pinnacle audit verify` names the row and fails.
        let report = verify(&stack, &mallory.id).await;
        assert!(!report.is_clean(), "{report}");
        assert!(
            report.problems.is_empty(),
            "the chain itself is fine: {report}"
        );
        assert_eq!(report.accounts_checked, 1);
        let [row] = report.accounts_rolled_back.as_slice() else {
            panic!("one rolled-back row: {report}");
        };
        assert_eq!(
            (
                row.account_id.as_str(),
                row.row_generation,
                row.written_generation
            ),
            (saved.id.as_str(), 1, 2)
        );
        assert_eq!(row.witness, Witness::Register);
        assert!(report.to_string().contains("rolled back"), "{report}");

        // Putting the newer row back restores service, and verify passes again.
        write_back(&stack, &newer).await;
        assert!(
            stack
                .place(&mallory, &market("rb-4", "SBIN-EQ", 1))
                .await
                .ok
        );
        let report = verify(&stack, &mallory.id).await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.accounts_checked, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_left_behind_by_a_crash_refuses_nothing_and_catches_up() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let trent = stack.trader("trent").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        assert!(stack.place(&trent, &market("lag-1", "SBIN-EQ", 1)).await.ok);
        let saved = stack.broker_account(&trent.id).await;
        assert_eq!(register_of(&stack, &saved.id).await, Some(1));

        // A writer commits generation 2 and dies before advancing the register: the
        // database write alone, as `reseal_account` does it for the session store.
        let open = keystore::open_account(&stack.vault, &saved).expect("opens");
        let values: Vec<(&'static str, SecretString)> = open.into_iter().collect();
        let refs: Vec<(&'static str, &SecretString)> =
            values.iter().map(|(f, v)| (*f, v)).collect();
        let newer = keystore::reseal_account(&stack.db, &stack.vault, &saved, &refs, None)
            .await
            .expect("reseal")
            .expect("no race");
        assert_eq!(newer.generation, 2);
        assert_eq!(register_of(&stack, &saved.id).await, Some(1), "lagging");
        // A writer that died announced nothing either: workers read the row once their
        // cached copy lapses.
        tokio::time::sleep(CACHE_TTL).await;

        // The newer row is accepted, and the reader advances the register itself.
        assert!(stack.place(&trent, &market("lag-2", "SBIN-EQ", 1)).await.ok);
        eventually(
            Duration::from_secs(5),
            "the register catches up",
            || async { (register_of(&stack, &saved.id).await == Some(2)).then_some(()) },
        )
        .await;
        // So the old row is refused from now on.
        write_back(&stack, &saved).await;
        let reply = stack.place(&trent, &market("lag-3", "SBIN-EQ", 1)).await;
        assert_eq!(
            reply.error.expect("refused").code.as_str(),
            "CREDENTIAL_UNAVAILABLE"
        );
        assert_refusal_audited(&stack, &trent.id, 1).await;

        // A forged higher generation never decrypts, so it cannot push the register on.
        let forged = broker_accounts::Model {
            generation: 7,
            ..newer.clone()
        };
        write_back(&stack, &forged).await;
        let reply = stack.place(&trent, &market("lag-4", "SBIN-EQ", 1)).await;
        assert_eq!(
            reply.error.expect("refused").code.as_str(),
            "CREDENTIAL_UNAVAILABLE"
        );
        let events = audit_events(&stack.client, &trent.id).await;
        let (last, _) = events.last().expect("events");
        assert_eq!(last.reason, Some(DecryptReason::Undecryptable));
        assert_eq!(register_of(&stack, &saved.id).await, Some(2));
        write_back(&stack, &newer).await;
        assert!(stack.place(&trent, &market("lag-5", "SBIN-EQ", 1)).await.ok);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_angel_one_row_rolled_back_past_a_session_save_never_reaches_the_broker() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("rolled", 30, json!({})).await;
        let (_, rests) = angel.prices();
        let row = stack.broker_account(&user.id).await;
        assert_eq!(row.generation, 1);

        // The first order logs in; the worker saves the session at generation 2 and
        // advances the register: its own write is not mistaken for anything.
        let first = stack
            .call(&user, "place", AngelStack::limit("ar-1", "BUY", 1, rests))
            .await;
        assert_eq!(first["result"]["status"], "OPEN", "{first}");
        let saved = stack.broker_account(&user.id).await;
        assert_eq!(saved.generation, 2, "the session save is a new generation");
        assert!(saved.jwt_token_enc.is_some());
        eventually(Duration::from_secs(5), "the worker advances", || async {
            (register_of(stack, &row.id).await == Some(2)).then_some(())
        })
        .await;

        // The owner rewrites the credentials (generation 3); the next order logs in again
        // and the worker saves that session (generation 4).
        assert_eq!(
            angel.put_angel_account(&user, &account, json!({})).await,
            200
        );
        let second = stack
            .call(&user, "place", AngelStack::limit("ar-2", "BUY", 1, rests))
            .await;
        assert_eq!(second["result"]["status"], "OPEN", "{second}");
        assert_eq!(angel.sim.login_count(&account.client_code), 2);
        assert_eq!(stack.broker_account(&user.id).await.generation, 4);
        eventually(
            Duration::from_secs(5),
            "the worker advances again",
            || async { (register_of(stack, &row.id).await == Some(4)).then_some(()) },
        )
        .await;

        // The saved generation-2 row (credentials and session) goes back.
        write_back(stack, &saved).await;
        // What the refused order would send: a login with the old secrets or the order.
        // (The order-update follower may read the order book meanwhile with the session it
        // holds in memory; that is not a use of the rolled-back row.)
        let credential_calls = || {
            angel
                .sim
                .requests()
                .into_iter()
                .filter(|r| r.path.ends_with("/placeOrder") || r.path.ends_with("/loginByPassword"))
                .map(|r| r.path)
                .collect::<Vec<_>>()
        };
        let calls = credential_calls();
        let refused = stack
            .call(&user, "place", AngelStack::limit("ar-3", "BUY", 1, rests))
            .await;
        assert_eq!(
            refused["error"]["code"], "CREDENTIAL_UNAVAILABLE",
            "{refused}"
        );
        assert_eq!(
            refused["error"]["message"],
            "credential could not be decrypted"
        );
        assert_eq!(credential_calls(), calls, "no call reached the broker");
        assert_eq!(angel.sim.orders(&account.client_code).len(), 2);
        assert_refusal_audited(stack, &user.id, 2).await;
        let report = verify(stack, &user.id).await;
        assert_eq!(
            report
                .accounts_rolled_back
                .iter()
                .map(|r| (r.row_generation, r.written_generation))
                .collect::<Vec<_>>(),
            [(2, 4)],
            "{report}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_account_restored_from_a_copy_is_refused() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let oscar = stack.trader("oscar").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        assert!(stack.place(&oscar, &market("er-1", "SBIN-EQ", 1)).await.ok);
        let saved = stack.broker_account(&oscar.id).await;

        // The order keeps the row: deleting erases the credentials at the next generation.
        let (status, body) = stack
            .api_send(
                reqwest::Method::DELETE,
                &format!("/v1/users/{}/broker-accounts/paper", oscar.id),
                &oscar.token,
                &json!({}),
            )
            .await;
        assert_eq!((status, &body["deleted"]), (200, &json!(false)), "{body}");
        assert_eq!(body["account"]["generation"], 2);
        assert_eq!(body["account"]["fields_set"], json!([]));
        assert_eq!(register_of(&stack, &saved.id).await, Some(2));

        // Bringing the erased credentials back from a copy does not bring them back to use.
        write_back(&stack, &saved).await;
        let reply = stack.place(&oscar, &market("er-2", "SBIN-EQ", 1)).await;
        assert_eq!(
            reply.error.expect("refused").code.as_str(),
            "CREDENTIAL_UNAVAILABLE"
        );
        assert_refusal_audited(&stack, &oscar.id, 1).await;
        assert_eq!(stack.order_count(&oscar.id).await, 1);
    })
    .await;
}

/// A register that cannot be reached is a passing outage, not a verdict on the row: the
/// order is refused with the retryable `AUDIT_UNAVAILABLE` (never the opaque
/// `CREDENTIAL_UNAVAILABLE`, which a client must not retry), nothing is stored, the refusal
/// is audited with its reason, and a retry of the same client order id is placed once the
/// register is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_out_of_reach_refuses_for_now_and_the_retry_is_placed() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let ruth = stack.trader("ruth").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        // The workers' register is open and watching.
        assert!(stack.place(&ruth, &market("ru-1", "SBIN-EQ", 1)).await.ok);

        let js = async_nats::jetstream::new(stack.client.clone());
        js.delete_stream(format!("KV_{}", subjects::CREDENTIAL_GENERATIONS_BUCKET))
            .await
            .expect("delete the register's stream");
        // A new account: no worker has its generation, so the bucket must be read.
        let rhea = stack.trader("rhea").await;
        let order = market("ru-2", "SBIN-EQ", 1);
        let error = stack
            .place(&rhea, &order)
            .await
            .error
            .expect("refused while the register is gone");
        assert_eq!(error.code.as_str(), "AUDIT_UNAVAILABLE", "{error:?}");
        assert!(error.message.contains("register"), "{error:?}");
        assert_eq!(stack.order_count(&rhea.id).await, 0, "nothing stored");
        let events = audit_events(&stack.client, &rhea.id).await;
        let (last, _) = events.last().expect("the access was audited");
        assert_eq!(
            (last.outcome, last.reason),
            (
                AuditOutcome::DecryptFailed,
                Some(DecryptReason::RegisterUnavailable)
            )
        );

        // An operator re-creates the bucket: the same client order id is placed, once.
        generations::open_bucket(&js)
            .await
            .expect("re-create the register");
        let retried = stack.place(&rhea, &order).await;
        assert!(retried.ok, "{:?}", retried.error);
        assert_eq!(stack.order_count(&rhea.id).await, 1);
        let account = stack.broker_account(&rhea.id).await;
        eventually(
            Duration::from_secs(5),
            "the reader advances the register",
            || async {
                (register_of(&stack, &account.id).await == Some(account.generation)).then_some(())
            },
        )
        .await;
    })
    .await;
}
