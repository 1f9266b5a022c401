//! The user API: admin-only user creation, write-only credentials, per-user isolation,
//! and JSON errors (never a 5xx) for bad input.

use pinnacle_common::entities::broker_accounts;
use pinnacle_common::keystore;
use pinnacle_tests::{TestStack, ADMIN_TOKEN};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;

use crate::each_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_stored_encrypted_and_never_returned() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let ivy = stack.create_user("ivy").await;
        let body = stack.put_paper_account(&ivy, "main").await;
        assert_eq!(
            body["fields_set"],
            serde_json::json!(["api_key", "client_code", "secret"])
        );
        assert!(
            !body.to_string().contains("SECRET-"),
            "response leaks: {body}"
        );

        let listed = stack
            .http
            .get(format!(
                "{}/v1/users/{}/broker-accounts",
                stack.api_url, ivy.id
            ))
            .bearer_auth(&ivy.token)
            .send()
            .await
            .expect("GET");
        assert_eq!(listed.status(), 200);
        let listed = listed.text().await.expect("body");
        assert!(listed.contains("\"label\":\"main\""), "{listed}");
        assert!(!listed.contains("SECRET-"), "listing leaks: {listed}");

        let row = broker_accounts::Entity::find()
            .filter(broker_accounts::Column::UserId.eq(ivy.id.as_str()))
            .one(&stack.db)
            .await
            .expect("query")
            .expect("row");
        let sealed = row.api_key_enc.clone().expect("api key stored");
        assert!(sealed.starts_with("pnk1:1:") && !sealed.contains("SECRET-"));
        let wrapped = row.data_key_enc.clone().expect("data key stored");
        assert!(wrapped.starts_with("pnk1:1:") && row.master_key_id == Some(1));
        let opened = keystore::open_account(&stack.vault, &row).expect("decrypts for its own row");
        assert_eq!(
            opened["api_key"].expose_secret(),
            format!("SECRET-apikey-{}", ivy.id)
        );

        // Rewriting bumps the generation: restoring the old ciphertexts no longer opens.
        stack.put_paper_account(&ivy, "main").await;
        let newer = broker_accounts::Entity::find_by_id(row.id.clone())
            .one(&stack.db)
            .await
            .expect("query")
            .expect("row");
        assert_eq!(newer.generation, row.generation + 1);
        assert_ne!(
            newer.data_key_enc, row.data_key_enc,
            "a fresh data key per write"
        );
        let rolled_back = broker_accounts::Model {
            api_key_enc: row.api_key_enc.clone(),
            ..newer.clone()
        };
        assert!(
            keystore::open_account(&stack.vault, &rolled_back).is_err(),
            "field rollback detected"
        );
        let rolled_back = broker_accounts::Model {
            data_key_enc: row.data_key_enc.clone(),
            ..newer
        };
        assert!(
            keystore::open_account(&stack.vault, &rolled_back).is_err(),
            "data key rollback detected"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_reach_only_their_own_resources_and_only_admins_create_users() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let jay = stack.create_user("jay").await;
        let kim = stack.create_user("kim").await;
        let (status, body) = stack
            .api_post("/v1/users", &jay.token, &serde_json::json!({"name": "x"}))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("FORBIDDEN"))
        );
        let (status, _) = stack
            .api_put(
                &format!("/v1/users/{}/broker-accounts/main", kim.id),
                &jay.token,
                &serde_json::json!({"broker": "paper", "client_code": "X"}),
            )
            .await;
        assert_eq!(status, 403, "jay cannot write kim's credentials");
        let (status, _) = stack
            .api_post(
                &format!("/v1/users/{}/tokens", kim.id),
                &jay.token,
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 403, "jay cannot mint kim's tokens");
        let (status, body) = stack
            .api_post(
                "/v1/users",
                ADMIN_TOKEN,
                &serde_json::json!({"name": "jay"}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("CONFLICT"))
        );
        let (status, body) = stack
            .api_post(
                "/v1/users",
                "wrong-token",
                &serde_json::json!({"name": "y"}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_a_json_body() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let lee = stack.create_user("lee").await;
        let account = format!("{}/v1/users/{}/broker-accounts/main", stack.api_url, lee.id);
        let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
            (
                "broken JSON",
                stack
                    .http
                    .put(&account)
                    .bearer_auth(&lee.token)
                    .header("content-type", "application/json")
                    .body("{\"broker\":"),
            ),
            (
                "wrong type",
                stack
                    .http
                    .put(&account)
                    .bearer_auth(&lee.token)
                    .json(&serde_json::json!({"broker": 5})),
            ),
            (
                "unknown broker",
                stack
                    .http
                    .put(&account)
                    .bearer_auth(&lee.token)
                    .json(&serde_json::json!({"broker": "robinhood"})),
            ),
            (
                "unknown field",
                stack
                    .http
                    .put(&account)
                    .bearer_auth(&lee.token)
                    .json(&serde_json::json!({"broker": "paper", "password": "x"})),
            ),
            (
                "empty secret",
                stack
                    .http
                    .put(&account)
                    .bearer_auth(&lee.token)
                    .json(&serde_json::json!({"broker": "paper", "api_key": ""})),
            ),
            (
                "oversized body",
                stack.http.put(&account).bearer_auth(&lee.token).json(
                    &serde_json::json!({"broker": "paper", "api_key": "k".repeat(64 * 1024)}),
                ),
            ),
            (
                "SQL-like label",
                stack
                    .http
                    .put(format!(
                        "{}/v1/users/{}/broker-accounts/x';DROP TABLE users;--",
                        stack.api_url, lee.id
                    ))
                    .bearer_auth(&lee.token)
                    .json(&serde_json::json!({"broker": "paper"})),
            ),
            (
                "unicode name",
                stack
                    .http
                    .post(format!("{}/v1/users", stack.api_url))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&serde_json::json!({"name": "\u{202e}💥\u{0}"})),
            ),
            (
                "missing name",
                stack
                    .http
                    .post(format!("{}/v1/users", stack.api_url))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&serde_json::json!({})),
            ),
            (
                "no such user",
                stack
                    .http
                    .post(format!("{}/v1/users/nobody/tokens", stack.api_url))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&serde_json::json!({})),
            ),
            (
                "bad scope",
                stack
                    .http
                    .post(format!("{}/v1/users/{}/tokens", stack.api_url, lee.id))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&serde_json::json!({"scopes": ["root"]})),
            ),
            (
                "absurd expiry",
                stack
                    .http
                    .post(format!("{}/v1/users/{}/tokens", stack.api_url, lee.id))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&serde_json::json!({"expires_in_secs": -1})),
            ),
            (
                "no route",
                stack.http.get(format!("{}/v1/nope", stack.api_url)),
            ),
            (
                "wrong method",
                stack.http.delete(format!("{}/v1/users", stack.api_url)),
            ),
            (
                "wrong method on a probe",
                stack.http.post(format!("{}/healthz", stack.api_url)),
            ),
            (
                "wrong method on the other probe",
                stack.http.delete(format!("{}/readyz", stack.api_url)),
            ),
            (
                "no auth",
                stack.http.get(format!(
                    "{}/v1/users/{}/broker-accounts",
                    stack.api_url, lee.id
                )),
            ),
        ];
        for (name, request) in cases {
            // The server may close the connection while an oversized body is still being
            // written; that is a transport race, not an answer, so send again.
            let mut attempts = 0;
            let response = loop {
                let attempt = request.try_clone().expect("request without a stream body");
                match attempt.send().await {
                    Ok(response) => break response,
                    Err(e) if attempts < 5 && (e.is_request() || e.is_body()) => attempts += 1,
                    Err(e) => panic!("{name}: {e}"),
                }
            };
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
            assert!((400..500).contains(&status), "{name}: status {status}");
            assert!(
                body["error"]["code"].is_string(),
                "{name}: JSON error body, got {body}"
            );
        }
        // An unknown user's tokens or audit trail are not an empty list or a clean
        // verdict: the user is not found, as for the user's other collections.
        let unknown = "/v1/users/00000000-0000-7000-8000-000000000000";
        for path in [
            format!("{unknown}/tokens"),
            format!("{unknown}/broker-accounts"),
            format!("{unknown}/audit"),
            format!("{unknown}/audit/verify"),
        ] {
            let response = stack
                .http
                .get(format!("{}{path}", stack.api_url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("the user API answers");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (404, Some("NOT_FOUND")),
                "{path}: {body}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cannot_mint_or_write_beyond_its_own_scopes_and_expiry() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.create_user("scoped").await;
        let tokens = format!("/v1/users/{}/tokens", user.id);
        let (status, reader) = stack
            .api_post(
                &tokens,
                ADMIN_TOKEN,
                &serde_json::json!({"scopes": ["read"], "expires_in_secs": 3600}),
            )
            .await;
        assert_eq!(status, 201);
        let reader = reader["token"].as_str().expect("token").to_string();

        // A read-only token cannot mint, write credentials, or escalate.
        for body in [
            serde_json::json!({}),
            serde_json::json!({"scopes": ["trade"]}),
        ] {
            let (status, reply) = stack.api_post(&tokens, &reader, &body).await;
            assert_eq!(
                (status, reply["error"]["code"].as_str()),
                (403, Some("FORBIDDEN")),
                "{body}"
            );
        }
        let (status, _) = stack
            .api_put(
                &format!("/v1/users/{}/broker-accounts/main", user.id),
                &reader,
                &serde_json::json!({"broker": "paper", "client_code": "X"}),
            )
            .await;
        assert_eq!(status, 403, "read-only tokens cannot write credentials");
        let listed = stack
            .http
            .get(format!(
                "{}/v1/users/{}/broker-accounts",
                stack.api_url, user.id
            ))
            .bearer_auth(&reader)
            .send()
            .await
            .expect("GET");
        assert_eq!(listed.status(), 200, "but they can read");

        // A trade token mints no more than it holds, and nothing that outlives it.
        let (_, short) = stack
            .api_post(
                &tokens,
                ADMIN_TOKEN,
                &serde_json::json!({"scopes": ["trade", "read"], "expires_in_secs": 600}),
            )
            .await;
        let short_token = short["token"].as_str().expect("token");
        let (status, child) = stack
            .api_post(
                &tokens,
                short_token,
                &serde_json::json!({"expires_in_secs": 86_400}),
            )
            .await;
        assert_eq!(status, 201, "{child}");
        assert_eq!(
            child["expires_at"], short["expires_at"],
            "capped at the parent's expiry"
        );
        assert_eq!(child["scopes"], serde_json::json!(["read", "trade"]));
    })
    .await;
}
