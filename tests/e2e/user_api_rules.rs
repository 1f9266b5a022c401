//! The user API's smaller doors: exactly one well-formed `Authorization` header (two, a
//! folded one or odd whitespace is 401 like any bad token), and the input rules
//! `/openapi.json` states (lengths in characters, bodies that are JSON objects, integers as
//! JSON Schema reads them, path id patterns) are the rules the server applies.

use pinnacle_tests::{TestStack, ADMIN_TOKEN};

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
    // A time that is not RFC 3339 is a bad field, named like any other, not a bad payload;
    // a good one is stored.
    let (status, body) = stack
        .api_put(
            &account,
            &user.token,
            &serde_json::json!({"broker": "paper", "session_expires_at": "tomorrow"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("session_expires_at")),
        "{body}"
    );
    let (status, body) = stack
        .api_put(
            &account,
            &user.token,
            &serde_json::json!({"broker": "paper", "session_expires_at": "2030-01-01T05:30:00+05:30"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session_expires_at"], "2030-01-01T00:00:00Z", "{body}");
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
