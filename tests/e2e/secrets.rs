//! No secret reaches a log line or a span: every line the services emit during a full run
//! (users, credentials, orders, a key rotation) is captured and scanned.

use pinnacle_tests::{logs, market, TestStack, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_log_line_or_span() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let users = [stack.trader("nina").await, stack.trader("omar").await];
    stack.wait_for_ticks("SBIN-EQ", 2).await;
    for (i, user) in users.iter().enumerate() {
        assert!(
            stack
                .place(user, &market(&format!("s-{i}"), "SBIN-EQ", 1))
                .await
                .ok
        );
        // Failures log too: a bad payload and a wrong-user attempt.
        let _ = stack.place(user, &market("", "SBIN-EQ", 1)).await;
    }
    let crossed = pinnacle_tests::TestUser {
        id: users[0].id.clone(),
        token: users[1].token.clone(),
    };
    let _ = stack.place(&crossed, &market("x", "SBIN-EQ", 1)).await;

    // A user with a password logs in, and someone guesses wrong.
    let (status, _) = stack
        .api_post(
            "/v1/users",
            ADMIN_TOKEN,
            &serde_json::json!({"name": "pia", "password": "SECRET-password-pia"}),
        )
        .await;
    assert_eq!(status, 201);
    for password in ["SECRET-password-pia", "SECRET-wrong-guess"] {
        let _ = stack
            .http
            .post(format!("{}/v1/login", stack.api_url))
            .json(&serde_json::json!({"name": "pia", "password": password}))
            .send()
            .await
            .expect("login");
    }

    // A key rotation, then orders on the new key.
    stack.vault.add_key(2, &[44u8; 32]);
    pinnacle_common::keystore::sync_ring(&stack.db, &stack.vault)
        .await
        .expect("sync");
    stack.vault.set_current(2);
    let audit = pinnacle_common::audit::AuditLog::new(
        stack.client.clone(),
        std::time::Duration::from_secs(5),
        stack.vault.clone(),
    );
    let report = pinnacle_common::keystore::rotate(&stack.db, &stack.vault, &audit)
        .await
        .expect("rotation");
    assert_eq!(report.rewrapped, 2);
    for (i, user) in users.iter().enumerate() {
        assert!(
            stack
                .place(user, &market(&format!("r-{i}"), "SBIN-EQ", 1))
                .await
                .ok
        );
    }

    let captured = logs::captured();
    assert!(
        captured.contains("order handled") && captured.contains("key rotation finished"),
        "the capture saw the worker's and the rotation's logs"
    );
    // Neither the master keys nor any key material in base64 ever appears.
    for key in [[42u8; 32], [44u8; 32]] {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert!(!captured.contains(&b64), "a master key was logged");
    }
    assert!(
        !captured.contains("SECRET-"),
        "a credential value was logged"
    );
    assert!(
        !captured.contains(ADMIN_TOKEN),
        "the admin token was logged"
    );
    for user in &users {
        let secret_part = user.token_secret();
        assert!(!captured.contains(secret_part), "an API token was logged");
    }
}
