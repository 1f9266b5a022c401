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

/// Sends raw bytes to the user API and returns the status line and the body.
async fn raw_http(stack: &TestStack, request: String) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = stack.api_url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        socket.read_to_end(&mut answer),
    )
    .await
    .expect("answered within 10 s")
    .expect("read");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// Exactly one `Authorization: Bearer <token>`: two headers (even both valid, or one valid
/// and one not), a comma-joined value, or odd whitespace between scheme and token is 401
/// with the usual JSON error, the same shape as a bad token; an obsolete folded header
/// line never reaches Pinnacle (the HTTP layer answers 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_or_folded_authorization_headers_get_401() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let user = stack.create_user("dora").await;
    let url = format!("{}/v1/users/{}/tokens", stack.api_url, user.id);
    let valid = format!("Bearer {}", user.token);
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let plain = |value: &str| {
        stack.http.get(&url).header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()).expect("value"),
        )
    };
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "the same valid header twice",
            plain(&valid).header("Authorization", valid.as_str()),
        ),
        (
            "the user's and the admin's",
            plain(&valid).header("Authorization", admin.as_str()),
        ),
        (
            "a valid one and junk",
            plain("Bearer junk").header("Authorization", valid.as_str()),
        ),
        ("folded", plain(&format!("{valid}, {admin}"))),
        ("folded without a space", plain(&format!("{valid},{admin}"))),
        ("double space", plain(&format!("Bearer  {}", user.token))),
        ("tab", plain(&format!("Bearer\t{}", user.token))),
        (
            "no-break space",
            plain(&format!("Bearer\u{a0}{}", user.token)),
        ),
        ("no scheme", plain(&user.token)),
        ("basic", plain(&format!("Basic {}", user.token))),
    ];
    let (status, expected) = {
        let response = stack
            .http
            .get(&url)
            .bearer_auth("pnk_nope")
            .send()
            .await
            .expect("send");
        (
            response.status().as_u16(),
            response.json::<serde_json::Value>().await.expect("json"),
        )
    };
    assert_eq!(status, 401);
    for (name, request) in cases {
        let response = request.send().await.expect("send");
        assert_eq!(response.status().as_u16(), 401, "{name}");
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        assert_eq!(
            body["error"]["code"], expected["error"]["code"],
            "{name}: {body}"
        );
        assert!(body["error"]["message"].is_string(), "{name}: {body}");
        assert_eq!(
            body.as_object().map(|o| o.keys().collect::<Vec<_>>()),
            expected.as_object().map(|o| o.keys().collect::<Vec<_>>()),
            "{name}: the same shape as any other auth failure"
        );
    }
    // Obsolete line folding (a continuation line starting with a space).
    let path = url.trim_start_matches(&stack.api_url);
    let (status, _) = raw_http(
        &stack,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n {}\r\nConnection: close\r\n\r\n", user.token),
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    // The token itself still works, sent once, plainly.
    let response = plain(&valid).send().await.expect("send");
    assert_eq!(response.status().as_u16(), 200);
}

/// The rules `/openapi.json` states are the server's: lengths in characters (not bytes),
/// a body must be a JSON object (an array of the right values is 422, not a write), and
/// an integer may be written `2101.0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_lengths_follow_the_document() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let user = stack.create_user("ella").await;
    let account = format!("/v1/users/{}/broker-accounts/main", user.id);
    // 1024 characters of 2 bytes each: within the limit as the document counts it.
    let (status, body) = stack
        .api_put(
            &account,
            &user.token,
            &serde_json::json!({"broker": "paper", "api_key": "é".repeat(1024)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = stack
        .api_put(
            &account,
            &user.token,
            &serde_json::json!({"broker": "paper", "api_key": "é".repeat(1025)}),
        )
        .await;
    assert_eq!(status, 400);
    // A password of 12 characters but more bytes is long enough; 11 are not.
    let (status, body) = stack
        .api_post(
            "/v1/users",
            ADMIN_TOKEN,
            &serde_json::json!({"name": "pw-ok", "password": "ü".repeat(12)}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = stack
        .api_post(
            "/v1/users",
            ADMIN_TOKEN,
            &serde_json::json!({"name": "pw-short", "password": "ü".repeat(11)}),
        )
        .await;
    assert_eq!(status, 400);
    // Not an object: nothing is written.
    let (status, body) = stack
        .api_put(&account, &user.token, &serde_json::json!(["angel_one"]))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("BAD_PAYLOAD")),
        "{body}"
    );
    let (status, body) = stack
        .api_post(
            &format!("/v1/users/{}/tokens", user.id),
            &user.token,
            &serde_json::json!([]),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    // An integral float is an integer.
    let (status, body) = stack
        .api_post(
            &format!("/v1/users/{}/tokens", user.id),
            &user.token,
            &serde_json::json!({"expires_in_secs": 3600.0}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // A token body that is not JSON by its content type is 415.
    let response = stack
        .http
        .post(format!("{}/v1/users/{}/tokens", stack.api_url, user.id))
        .bearer_auth(&user.token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 415);
    // Path parameters outside their patterns are 400.
    for (method, path) in [
        (
            reqwest::Method::DELETE,
            format!("/v1/users/{}/tokens/NOT-HEX-0000000", user.id),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/users/{}/tokens/0123456789ABCDEF", user.id),
        ),
        (
            reqwest::Method::GET,
            "/v1/users/not_an_id/tokens".to_string(),
        ),
        (
            reqwest::Method::GET,
            format!("/v1/users/{}/broker-accounts", "a".repeat(65)),
        ),
    ] {
        let (status, body) = stack
            .api_send(method, &path, ADMIN_TOKEN, &serde_json::json!({}))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{path}: {body}"
        );
    }
}
