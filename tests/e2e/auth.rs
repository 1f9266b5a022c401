//! Authentication: the token must resolve to the user named in the subject, carry the
//! trade scope and be unexpired; stored credentials bound to one row do not work in another.

use chrono::{Duration, Utc};
use pinnacle_common::entities::{api_tokens, broker_accounts, orders};
use pinnacle_common::model::AuditOutcome;
use pinnacle_tests::{audit_events, market, TestStack, ADMIN_TOKEN};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

use crate::each_backend;

async fn order_count(stack: &TestStack, user_id: &str) -> u64 {
    orders::Entity::find()
        .filter(orders::Column::UserId.eq(user_id))
        .count(&stack.db)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_token_is_refused_on_this_users_subject() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let victim = stack.trader("victim").await;
        let mallory = stack.trader("mallory").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let intruder = pinnacle_tests::TestUser {
            id: victim.id.clone(),
            token: mallory.token.clone(),
        };
        let reply = stack
            .place(&intruder, &market("steal-1", "SBIN-EQ", 1))
            .await;
        assert_eq!(reply.error.expect("refused").code.as_str(), "FORBIDDEN");
        assert_eq!(order_count(&stack, &victim.id).await, 0);
        assert_eq!(order_count(&stack, &mallory.id).await, 0);
        let victim_events = audit_events(&stack.client, &victim.id).await;
        assert!(
            victim_events
                .iter()
                .all(|(e, _)| e.purpose != "order.place"),
            "the victim's credentials were never accessed"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_garbage_expired_and_read_only_tokens_are_refused() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("gina").await;
        let order = market("tok-1", "SBIN-EQ", 1);
        for token in [
            None,
            Some("garbage"),
            Some("pnk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ] {
            let probe = pinnacle_tests::TestUser {
                id: user.id.clone(),
                token: token.unwrap_or("").into(),
            };
            let reply = if token.is_some() {
                stack.place(&probe, &order).await
            } else {
                let payload = pinnacle_common::codec::Encoding::MsgPack
                    .encode(&order)
                    .expect("encode");
                let raw = stack
                    .request(
                        pinnacle_common::subjects::order(&user.id, "place"),
                        None,
                        pinnacle_common::codec::Encoding::MsgPack,
                        payload,
                    )
                    .await;
                pinnacle_common::codec::Encoding::MsgPack
                    .decode(&raw.payload)
                    .expect("decodes")
            };
            assert_eq!(
                reply.error.expect("refused").code.as_str(),
                "UNAUTHENTICATED",
                "{token:?}"
            );
        }

        // A read-only token may not trade.
        let (status, issued) = stack
            .api_post(
                &format!("/v1/users/{}/tokens", user.id),
                ADMIN_TOKEN,
                &serde_json::json!({"scopes": ["read"], "expires_in_secs": 3600}),
            )
            .await;
        assert_eq!(status, 201);
        let reader = pinnacle_tests::TestUser {
            id: user.id.clone(),
            token: issued["token"].as_str().expect("token").into(),
        };
        assert_eq!(
            stack
                .place(&reader, &order)
                .await
                .error
                .expect("refused")
                .code
                .as_str(),
            "FORBIDDEN"
        );

        // Expiry is honoured (a changed row within the token cache's second).
        let row = api_tokens::Entity::find_by_id(issued["id"].as_str().expect("id").to_string())
            .one(&stack.db)
            .await
            .expect("query")
            .expect("row");
        let mut row: api_tokens::ActiveModel = row.into();
        row.scopes = Set("trade,read".into());
        row.expires_at = Set(Some(Utc::now() - Duration::seconds(1)));
        row.update(&stack.db).await.expect("expire");
        // Written behind the user API's back: workers see it once their cached row (at
        // most a second old) lapses.
        tokio::time::sleep(pinnacle_common::auth::TOKEN_CACHE_TTL).await;
        assert_eq!(
            stack
                .place(&reader, &order)
                .await
                .error
                .expect("refused")
                .code
                .as_str(),
            "UNAUTHENTICATED"
        );
        assert_eq!(order_count(&stack, &user.id).await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_swapped_into_another_users_row_does_not_decrypt() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let alice = stack.trader("alice").await;
        let eve = stack.trader("eve").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let alice_account = stack.broker_account(&alice.id).await;
        let eve_account = stack.broker_account(&eve.id).await;
        // Eve, with database access, copies Alice's sealed credentials into her own row.
        let mut stolen: broker_accounts::ActiveModel = eve_account.into();
        stolen.api_key_enc = Set(alice_account.api_key_enc.clone());
        stolen.client_code_enc = Set(alice_account.client_code_enc.clone());
        stolen.secret_enc = Set(alice_account.secret_enc.clone());
        stolen.update(&stack.db).await.expect("tamper");

        let reply = stack.place(&eve, &market("swap-1", "SBIN-EQ", 1)).await;
        let error = reply.error.expect("refused");
        assert_eq!(error.code.as_str(), "CREDENTIAL_UNAVAILABLE");
        assert_eq!(
            error.message, "credential could not be decrypted",
            "one opaque error"
        );
        assert_eq!(order_count(&stack, &eve.id).await, 0);
        let outcomes: Vec<_> = audit_events(&stack.client, &eve.id)
            .await
            .into_iter()
            .map(|(e, _)| e.outcome)
            .collect();
        assert_eq!(
            outcomes,
            [
                AuditOutcome::Written,
                AuditOutcome::Authorized,
                AuditOutcome::DecryptFailed
            ]
        );
        // Alice is unaffected.
        assert!(
            stack
                .place(&alice, &market("swap-2", "SBIN-EQ", 1))
                .await
                .ok
        );
    })
    .await;
}
