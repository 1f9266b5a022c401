//! The credential vault end to end: key rotation under order load with zero failed
//! orders, refusing to retire a key in use, the per-key encryption budget, a ring that
//! disagrees with the database, and a whole envelope swapped into another user's row.

use pinnacle_common::config::DatabaseSettings;
use pinnacle_common::crypto::{RowIdentity, Vault};
use pinnacle_common::entities::broker_accounts;
use pinnacle_common::keystore::{self, KeyStoreError};
use pinnacle_tests::{audit_events, market, TestDb, TestStack};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use secrecy::SecretString;

use crate::each_backend;

/// Orders each trader places, back to back, while the rotation runs.
const ORDERS_PER_TRADER: usize = 40;

async fn rows_on(stack: &TestStack, key_id: i64) -> u64 {
    keystore::status(&stack.db)
        .await
        .expect("status")
        .into_iter()
        .find(|k| k.key_id == key_id)
        .map_or(0, |k| k.rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_order_load_fails_no_order_and_loses_no_write() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let traders = [
            stack.trader("rot1").await,
            stack.trader("rot2").await,
            stack.trader("rot3").await,
        ];
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        // This test is about rotation, not Angel One's 9 orders per second.
        stack
            .lift_order_rate(pinnacle_common::entities::risk_limits::GLOBAL, 100_000)
            .await;
        assert_eq!(rows_on(&stack, 1).await, 3);

        // The ring learns key 2 (as a reload would) and it becomes current.
        stack.vault.add_key(2, &[43u8; 32]);
        keystore::sync_ring(&stack.db, &stack.vault)
            .await
            .expect("sync");
        assert!(stack.vault.set_current(2));
        let refused = keystore::retire(&stack.db, &stack.vault, 1).await;
        assert!(
            matches!(refused, Err(KeyStoreError::InUse { key_id: 1, rows: 3 })),
            "{refused:?}"
        );

        // Orders from every trader and credential rewrites, all while the rewrap runs.
        let stack_ref = &stack;
        let done = std::sync::atomic::AtomicUsize::new(0);
        let done_ref = &done;
        // Three traders, each placing orders back to back for the whole rotation.
        let orders = traders.iter().map(|user| {
            let stack = stack_ref;
            async move {
                for i in 0..ORDERS_PER_TRADER {
                    let id = format!("rot-{}-{i}", user.id);
                    let reply = stack.place(user, &market(&id, "SBIN-EQ", 1)).await;
                    assert!(reply.ok, "order {id} failed during rotation: {reply:?}");
                    done_ref.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let rewrites = async {
            for _ in 0..3 {
                stack.put_paper_account(&traders[2], "paper").await;
            }
        };
        let rotation = async {
            // Rotate mid-load: once some orders are through, with most still to come.
            pinnacle_tests::eventually(
                std::time::Duration::from_secs(20),
                "first orders",
                || async { (done.load(std::sync::atomic::Ordering::SeqCst) >= 5).then_some(()) },
            )
            .await;
            let started = done.load(std::sync::atomic::Ordering::SeqCst);
            let report = keystore::rotate(&stack.db, &stack.vault, &audit_log(&stack))
                .await
                .expect("rotation");
            (report, started)
        };
        let orders = async {
            futures::future::join_all(orders).await;
        };
        let ((), (), (report, done_at_rotation)) = tokio::join!(orders, rewrites, rotation);
        assert!(
            done_at_rotation < 45,
            "orders were still flowing after the rewrap"
        );
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!(report.current_key_id, 2);

        assert_eq!(rows_on(&stack, 1).await, 0, "nothing left on key 1");
        assert_eq!(rows_on(&stack, 2).await, 3);
        keystore::retire(&stack.db, &stack.vault, 1)
            .await
            .expect("key 1 retires once unused");
        // Everyone still trades, now on key 2 only; the rewrites were not lost.
        for user in &traders {
            let reply = stack
                .place(user, &market(&format!("after-{}", user.id), "SBIN-EQ", 1))
                .await;
            assert!(reply.ok, "{reply:?}");
        }
        let rewritten = broker_accounts::Entity::find()
            .filter(broker_accounts::Column::UserId.eq(traders[2].id.as_str()))
            .one(&stack.db)
            .await
            .expect("query")
            .expect("row");
        assert_eq!(rewritten.generation, 4, "every rewrite kept");
        let purposes: Vec<_> = audit_events(&stack.client, &traders[0].id)
            .await
            .into_iter()
            .map(|(e, _)| e.purpose)
            .collect();
        assert!(
            purposes.iter().any(|p| p == "keys.rewrap"),
            "the rewrap is audited: {purposes:?}"
        );
    })
    .await;
}

fn audit_log(stack: &TestStack) -> pinnacle_common::audit::AuditLog {
    pinnacle_common::audit::AuditLog::new(
        stack.client.clone(),
        std::time::Duration::from_secs(5),
        stack.vault.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_refuses_wraps_past_its_budget_and_a_foreign_ring_is_refused() {
    each_backend(|backend| async move {
        let test_db = TestDb::create(backend).await;
        let db = pinnacle_cli::stack::database(&DatabaseSettings {
            database_url: test_db.url.clone(),
            database_max_connections: 2,
        })
        .await
        .expect("database");
        let vault = Vault::new(1, &[5u8; 32]).with_max_encryptions(3);
        keystore::sync_ring(&db, &vault).await.expect("sync");
        let secret = SecretString::from("1234");
        let row = |generation| RowIdentity {
            user_id: "u",
            account_id: "a",
            generation,
        };
        for generation in 1..=3 {
            keystore::seal_account(&db, &vault, row(generation), &[("secret", &secret)])
                .await
                .expect("within budget");
        }
        let exhausted = keystore::seal_account(&db, &vault, row(4), &[("secret", &secret)]).await;
        assert!(
            matches!(exhausted, Err(KeyStoreError::Exhausted(1))),
            "{exhausted:?}"
        );
        vault.add_key(2, &[6u8; 32]);
        vault.set_current(2);
        keystore::sync_ring(&db, &vault).await.expect("sync key 2");
        let sealed = keystore::seal_account(&db, &vault, row(4), &[("secret", &secret)])
            .await
            .expect("a fresh key has budget");
        assert_eq!(sealed.master_key_id, 2);
        let status = keystore::status(&db).await.expect("status");
        assert_eq!(status[0].encryptions, 3);

        // Different material under a known id is refused at startup.
        let impostor = Vault::new(1, &[7u8; 32]);
        assert!(matches!(
            keystore::sync_ring(&db, &impostor).await,
            Err(KeyStoreError::FingerprintMismatch(1))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_envelope_copied_into_another_row_does_not_decrypt() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let alice = stack.trader("alice").await;
        let eve = stack.trader("eve").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let a = stack.broker_account(&alice.id).await;
        let e = stack.broker_account(&eve.id).await;
        // Eve copies Alice's data key, key id, generation and every field.
        let mut stolen: broker_accounts::ActiveModel = e.into();
        stolen.data_key_enc = Set(a.data_key_enc.clone());
        stolen.master_key_id = Set(a.master_key_id);
        stolen.generation = Set(a.generation);
        stolen.api_key_enc = Set(a.api_key_enc.clone());
        stolen.client_code_enc = Set(a.client_code_enc.clone());
        stolen.secret_enc = Set(a.secret_enc.clone());
        stolen.update(&stack.db).await.expect("tamper");
        let reply = stack.place(&eve, &market("env-1", "SBIN-EQ", 1)).await;
        let error = reply.error.expect("refused");
        assert_eq!(error.code.as_str(), "CREDENTIAL_UNAVAILABLE");
        assert_eq!(error.message, "credential could not be decrypted");
    })
    .await;
}

#[test]
fn keys_add_appends_to_a_key_file_that_loads_as_a_ring() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("master.keys");
    assert_eq!(pinnacle_cli::keys::add_to_file(&path).expect("add"), 1);
    assert_eq!(pinnacle_cli::keys::add_to_file(&path).expect("add"), 2);
    let settings = pinnacle_common::config::VaultSettings {
        master_key: None,
        master_key_file: Some(path.display().to_string()),
        ..pinnacle_common::config::VaultSettings::single(SecretString::from(""), 1)
    };
    let vault = Vault::from_settings(&settings).expect("ring loads");
    assert_eq!(vault.current_key_id(), 2);
    assert_eq!(vault.key_fingerprints().len(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is private");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_skips_and_audits_a_data_key_that_does_not_decrypt() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let good = stack.trader("good").await;
        let bad = stack.trader("bad").await;
        let row = broker_accounts::Entity::find()
            .filter(broker_accounts::Column::UserId.eq(bad.id.as_str()))
            .one(&stack.db)
            .await
            .expect("query")
            .expect("row");
        let mut broken: broker_accounts::ActiveModel = row.clone().into();
        broken.generation = Set(row.generation + 7);
        broken.update(&stack.db).await.expect("tamper");

        stack.vault.add_key(2, &[45u8; 32]);
        keystore::sync_ring(&stack.db, &stack.vault)
            .await
            .expect("sync");
        stack.vault.set_current(2);
        let report = keystore::rotate(&stack.db, &stack.vault, &audit_log(&stack))
            .await
            .expect("rotation finishes");
        assert_eq!(report.rewrapped, 1);
        assert_eq!(report.failed, vec![row.id.clone()]);
        assert_eq!(
            rows_on(&stack, 1).await,
            1,
            "the broken row stays as it was"
        );
        let outcomes: Vec<_> = audit_events(&stack.client, &bad.id)
            .await
            .into_iter()
            .filter(|(e, _)| e.purpose == "keys.rewrap")
            .map(|(e, _)| e.outcome)
            .collect();
        assert_eq!(
            outcomes,
            [
                pinnacle_common::model::AuditOutcome::Authorized,
                pinnacle_common::model::AuditOutcome::DecryptFailed
            ]
        );
        assert!(!audit_events(&stack.client, &good.id).await.is_empty());
    })
    .await;
}
