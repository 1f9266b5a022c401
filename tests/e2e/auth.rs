//! Authentication: the token must resolve to the user named in the subject, carry the
//! trade scope and be unexpired; stored credentials bound to one row do not work in another.

use chrono::{Duration, Utc};
use pinnacle_common::entities::{api_tokens, broker_accounts, orders};
use pinnacle_common::model::AuditOutcome;
use pinnacle_tests::{audit_events, market, TestStack, ADMIN_TOKEN};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use crate::each_backend;

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
        assert_eq!(stack.order_count(&victim.id).await, 0);
        assert_eq!(stack.order_count(&mallory.id).await, 0);
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
        assert_eq!(stack.order_count(&user.id).await, 0);
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
        assert_eq!(stack.order_count(&eve.id).await, 0);
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

/// Sends `payload` on `subject` with `headers`, and returns the error code of the reply.
async fn refusal(
    stack: &TestStack,
    subject: String,
    hdrs: async_nats::HeaderMap,
    payload: bytes::Bytes,
) -> String {
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stack
            .client
            .request_with_headers(subject.clone(), hdrs, payload),
    )
    .await
    .expect("a reply within 10 s")
    .expect("request succeeds");
    let body: serde_json::Value = rmp_serde::from_slice(&reply.payload).expect("reply decodes");
    assert_eq!(body["ok"], false, "{subject}: {body}");
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn bearer(token: &str) -> async_nats::HeaderMap {
    let mut hdrs = async_nats::HeaderMap::new();
    hdrs.insert("Authorization", format!("Bearer {token}").as_str());
    hdrs
}

/// `orders.<id>.place` with the user's own token but any spelling of the id other than
/// the canonical one (`~62` for `b`, lower-case hex, case changes, look-alikes, padding) is
/// refused exactly like another user's id: `FORBIDDEN`, and no credential is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_canonical_spelling_of_the_user_id_is_accepted() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("spelling").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let id = user.id.clone();
        let escape = |i: usize, lower: bool| {
            let byte = id.as_bytes()[i];
            let hex = if lower {
                format!("~{byte:02x}")
            } else {
                format!("~{byte:02X}")
            };
            format!("{}{hex}{}", &id[..i], &id[i + 1..])
        };
        let letter = id
            .find(|c: char| c.is_ascii_lowercase())
            .expect("a hex letter");
        let mut spellings = vec![
            escape(0, false),
            escape(letter, false),
            escape(letter, true),
            escape(id.len() - 1, false),
            id.replacen('-', "~2D", 1),
            id.replacen('-', "~2d", 1),
            id.to_ascii_uppercase(),
            format!("{id}~20"),
            format!("~20{id}"),
            format!("{id}~00"),
            id.replacen('-', "%2D", 1),
            pinnacle_common::subjects::escape_token(&id.replacen('a', "\u{430}", 1)),
            pinnacle_common::subjects::escape_token(&format!("{id}\u{200b}")),
            format!("{id}~"),
        ];
        spellings.retain(|s| s != &id);
        let order = rmp_serde::to_vec_named(&market("spell-1", "SBIN-EQ", 1)).expect("encode");
        for spelling in &spellings {
            let subject = format!("orders.{spelling}.place");
            let code = refusal(
                &stack,
                subject.clone(),
                bearer(&user.token),
                order.clone().into(),
            )
            .await;
            assert_eq!(code, "FORBIDDEN", "{subject}");
        }
        assert_eq!(stack.order_count(&id).await, 0);
        assert!(
            audit_events(&stack.client, &id)
                .await
                .iter()
                .all(|(e, _)| e.purpose != "order.place"),
            "no credential was read for a refused spelling"
        );
        // The canonical spelling works.
        assert!(
            stack
                .place(&user, &market("spell-2", "SBIN-EQ", 1))
                .await
                .ok
        );
    })
    .await;
}

/// Two `Authorization` headers (in one spelling or two), a comma-joined value or odd
/// whitespace are `UNAUTHENTICATED` on the order path, even when one of them is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_or_folded_authorization_headers_are_refused_on_orders() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let user = stack.trader("doubled").await;
    let other = stack.trader("other").await;
    stack.wait_for_ticks("SBIN-EQ", 2).await;
    let order = rmp_serde::to_vec_named(&market("dup-1", "SBIN-EQ", 1)).expect("encode");
    let subject = pinnacle_common::subjects::order(&user.id, "place");
    let valid = format!("Bearer {}", user.token);
    let mut cases: Vec<(&str, async_nats::HeaderMap)> = Vec::new();
    let mut twice = async_nats::HeaderMap::new();
    twice.append("Authorization", valid.as_str());
    twice.append("Authorization", valid.as_str());
    cases.push(("the same header twice", twice));
    let mut two_names = async_nats::HeaderMap::new();
    two_names.insert("Authorization", valid.as_str());
    two_names.insert("authorization", format!("Bearer {}", other.token).as_str());
    cases.push(("two spellings of the name", two_names));
    for (name, value) in [
        ("folded", format!("{valid}, Bearer {}", other.token)),
        ("folded without a space", format!("{valid},{valid}")),
        ("double space", format!("Bearer  {}", user.token)),
        ("tab", format!("Bearer\t{}", user.token)),
        ("no-break space", format!("Bearer\u{a0}{}", user.token)),
    ] {
        let mut hdrs = async_nats::HeaderMap::new();
        hdrs.insert("Authorization", value.as_str());
        cases.push((name, hdrs));
    }
    for (name, hdrs) in cases {
        let code = refusal(&stack, subject.clone(), hdrs, order.clone().into()).await;
        assert_eq!(code, "UNAUTHENTICATED", "{name}");
    }
    assert_eq!(stack.order_count(&user.id).await, 0);
    assert!(stack.place(&user, &market("dup-2", "SBIN-EQ", 1)).await.ok);
}

/// A valid order request published without a reply subject is dropped before anything
/// is read: no order, no audit event (no credential access). The request right behind it
/// is served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_request_without_a_reply_subject_touches_nothing() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("silent").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let before = audit_events(&stack.client, &user.id).await.len();
        let order = rmp_serde::to_vec_named(&market("silent-1", "SBIN-EQ", 1)).expect("encode");
        for _ in 0..3 {
            stack
                .client
                .publish_with_headers(
                    pinnacle_common::subjects::order(&user.id, "place"),
                    bearer(&user.token),
                    order.clone().into(),
                )
                .await
                .expect("publish");
        }
        stack.client.flush().await.expect("flush");
        // Requests are taken in order; by the time these two are answered, the three
        // before them have been taken (and, had they been served, have been audited).
        assert!(stack.place(&user, &market("loud-1", "SBIN-EQ", 1)).await.ok);
        assert!(stack.place(&user, &market("loud-2", "SBIN-EQ", 1)).await.ok);
        let placed: Vec<String> = orders::Entity::find()
            .filter(orders::Column::UserId.eq(user.id.as_str()))
            .all(&stack.db)
            .await
            .expect("orders")
            .into_iter()
            .map(|o| o.client_order_id)
            .collect();
        assert!(!placed.iter().any(|id| id == "silent-1"), "{placed:?}");
        assert_eq!(placed.len(), 2, "{placed:?}");
        let accesses = audit_events(&stack.client, &user.id).await.len() - before;
        assert_eq!(
            accesses, 2,
            "one credential access per answered order, none for the silent ones"
        );
    })
    .await;
}
