//! Password login, abuse limits, token listing and revocation, and deleting accounts.

use pinnacle_tests::{market, TestStack, ADMIN_TOKEN};

use crate::each_backend;

async fn send(request: reqwest::RequestBuilder) -> (u16, serde_json::Value, Option<String>) {
    let response = request.send().await.expect("HTTP");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_issues_a_token_and_guessing_is_rate_limited() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let (status, body) = stack
            .api_post(
                "/v1/users",
                ADMIN_TOKEN,
                &serde_json::json!({"name": "pam", "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert!(body.get("password_hash").is_none());
        let login = |name: &str, password: &str| {
            stack
                .http
                .post(format!("{}/v1/login", stack.api_url))
                .json(&serde_json::json!({"name": name, "password": password}))
        };
        let (status, token, _) = send(login("pam", "correct horse battery")).await;
        assert_eq!(status, 201, "{token}");
        let bearer = token["token"].as_str().expect("token").to_string();
        assert!(token["expires_at"].is_string(), "login tokens expire");
        let (status, _, _) = send(
            stack
                .http
                .get(format!(
                    "{}/v1/users/{}/broker-accounts",
                    stack.api_url,
                    body["id"].as_str().expect("id")
                ))
                .bearer_auth(&bearer),
        )
        .await;
        assert_eq!(status, 200);

        let (wrong, wrong_body, _) = send(login("pam", "wrong password!!")).await;
        let (unknown, unknown_body, _) = send(login("nobody", "wrong password!!")).await;
        assert_eq!((wrong, unknown), (401, 401));
        assert_eq!(
            wrong_body, unknown_body,
            "unknown user and wrong password look alike"
        );
        let mut limited = None;
        for _ in 0..12 {
            let (status, body, retry) = send(login("pam", "still wrong!!!")).await;
            if status == 429 {
                limited = Some((body, retry));
                break;
            }
        }
        let (body, retry) = limited.expect("login attempts are limited per user");
        assert_eq!(body["error"]["code"], "RATE_LIMITED");
        assert!(retry.is_some(), "429 carries Retry-After");

        // Token guessing from one source is limited too.
        let guess = |i: usize| {
            stack
                .http
                .get(format!("{}/v1/users/x/broker-accounts", stack.api_url))
                .bearer_auth(format!("pnk_{i:016x}_{}", "A".repeat(43)))
        };
        let mut statuses = Vec::new();
        for i in 0..40 {
            statuses.push(send(guess(i)).await.0);
        }
        assert_eq!(statuses[0], 401);
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_without_secrets_and_revocation_bites_at_once() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let rex = stack.trader("rex").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let tokens_url = format!("{}/v1/users/{}/tokens", stack.api_url, rex.id);
        let (status, list, _) = send(stack.http.get(&tokens_url).bearer_auth(&rex.token)).await;
        assert_eq!(status, 200);
        let text = list.to_string();
        let secret = rex.token_secret();
        assert!(!text.contains(secret), "listing leaks the token");
        let id = list[0]["id"].as_str().expect("id").to_string();
        assert!(rex.token.contains(&id));
        assert!(stack.place(&rex, &market("rev-1", "SBIN-EQ", 1)).await.ok);
        let cached_at = std::time::Instant::now();

        let (status, revoked, _) = send(
            stack
                .http
                .delete(format!("{tokens_url}/{id}"))
                .bearer_auth(&rex.token),
        )
        .await;
        assert_eq!(status, 200, "{revoked}");
        assert!(revoked["revoked_at"].is_string());
        // The revocation is announced to the workers' token caches before the API
        // replies, and a worker takes what was announced before it authenticates: the very
        // next order is refused (without the announcement a cached row lives at most a
        // second).
        let reply = stack.place(&rex, &market("rev-2", "SBIN-EQ", 1)).await;
        assert!(
            cached_at.elapsed() < pinnacle_common::auth::TOKEN_CACHE_TTL,
            "the token row cached by rev-1 was still fresh, so only the announcement can refuse rev-2"
        );
        assert_eq!(
            reply.error.map(|e| e.code.as_str().to_string()).as_deref(),
            Some("UNAUTHENTICATED"),
            "the order right after the revocation"
        );
        let (status, _, _) = send(stack.http.get(&tokens_url).bearer_auth(&rex.token)).await;
        assert_eq!(status, 401);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_can_be_inspected_and_deleted_and_several_coexist() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let sam = stack.trader("sam").await;
        let (status, body) = stack
            .api_put(
                &format!("/v1/users/{}/broker-accounts/angel", sam.id),
                &sam.token,
                &serde_json::json!({
                    "broker": "angel_one",
                    "api_key": "SECRET-ak",
                    "client_code": "SECRET-cc",
                    "secret": "SECRET-pin",
                    "totp_seed": "SECRET-totp",
                    "jwt_token": "SECRET-jwt",
                    "refresh_token": "SECRET-refresh",
                    "feed_token": "SECRET-feed",
                    "session_expires_at": "2030-01-01T00:00:00Z"
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fields_set"].as_array().map(Vec::len), Some(7));
        let base = format!("{}/v1/users/{}/broker-accounts", stack.api_url, sam.id);
        let (status, listed, _) = send(stack.http.get(&base).bearer_auth(&sam.token)).await;
        assert_eq!(status, 200);
        assert_eq!(listed.as_array().map(Vec::len), Some(2), "two accounts");
        let (status, one, _) = send(
            stack
                .http
                .get(format!("{base}/angel"))
                .bearer_auth(&sam.token),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(one["session_expires_at"], "2030-01-01T00:00:00Z");
        assert!(!one.to_string().contains("SECRET-"));

        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let mut order = market("del-1", "SBIN-EQ", 1);
        order.account = Some("paper".into());
        assert!(stack.place(&sam, &order).await.ok);

        let (status, gone, _) = send(
            stack
                .http
                .delete(format!("{base}/angel"))
                .bearer_auth(&sam.token),
        )
        .await;
        assert_eq!((status, gone["deleted"].as_bool()), (200, Some(true)));
        let (status, kept, _) = send(
            stack
                .http
                .delete(format!("{base}/paper"))
                .bearer_auth(&sam.token),
        )
        .await;
        assert_eq!(status, 200, "{kept}");
        assert_eq!(kept["deleted"], false, "orders keep the row");
        assert_eq!(kept["account"]["fields_set"], serde_json::json!([]));
        let (status, _, _) = send(
            stack
                .http
                .get(format!("{base}/angel"))
                .bearer_auth(&sam.token),
        )
        .await;
        assert_eq!(status, 404);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reads_their_own_audit_trail_and_only_theirs() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let tia = stack.trader("tia").await;
        let uma = stack.trader("uma").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        assert!(stack.place(&tia, &market("trail-1", "SBIN-EQ", 1)).await.ok);
        let url = format!("{}/v1/users/{}/audit", stack.api_url, tia.id);
        let (status, trail, _) = send(stack.http.get(&url).bearer_auth(&tia.token)).await;
        assert_eq!(status, 200, "{trail}");
        let purposes: Vec<_> = trail["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["purpose"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(purposes, ["credentials.write", "order.place"]);
        assert!(!trail.to_string().contains("SECRET-"));
        let first = trail["events"][0]["seq"].as_u64().expect("seq");
        let (_, page, _) = send(
            stack
                .http
                .get(format!("{url}?after={first}&limit=1"))
                .bearer_auth(&tia.token),
        )
        .await;
        assert_eq!(page["events"].as_array().map(Vec::len), Some(1));
        assert_eq!(page["events"][0]["purpose"], "order.place");
        let (status, _, _) = send(stack.http.get(&url).bearer_auth(&uma.token)).await;
        assert_eq!(status, 403, "uma cannot read tia's trail");
    })
    .await;
}
