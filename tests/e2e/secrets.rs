//! No secret reaches a log line or a span: every line the services emit during a full run
//! (users, credentials, orders, a tampered row) is captured and scanned.

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

    let captured = logs::captured();
    assert!(
        captured.contains("order handled"),
        "the capture saw the worker's logs"
    );
    assert!(
        !captured.contains("SECRET-"),
        "a credential value was logged"
    );
    assert!(
        !captured.contains(ADMIN_TOKEN),
        "the admin token was logged"
    );
    for user in &users {
        let secret_part = user.token.rsplit('_').next().expect("token secret");
        assert!(!captured.contains(secret_part), "an API token was logged");
    }
}
