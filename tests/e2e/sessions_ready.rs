//! Angel One sessions ready before they are needed: against the SmartAPI simulator, with
//! the simulator's and the workers' clocks shifted to just before the daily rollover (or
//! with a short session), two workers renew an account's session in the background,
//! exactly one of them logs in, and the next order pays no login or refresh.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pinnacle_common::config::WorkerSettings;
use pinnacle_smartapi_sim::SessionExpiry;
use pinnacle_tests::angel::AngelStack;
use pinnacle_tests::eventually;
use serde_json::{json, Value};

use crate::each_backend;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

/// The worker settings of these tests: the shifted clock, quick checks.
fn worker_settings(angel_rest: &str, order_ws: &str, now: &str, ahead_ms: u64) -> WorkerSettings {
    WorkerSettings {
        smartapi_url: angel_rest.into(),
        smartapi_order_ws_url: order_ws.into(),
        sim_now: now.parse().expect("an RFC 3339 time"),
        session_check_ms: 250,
        session_renew_ahead_ms: ahead_ms,
        session_after_rollover_ms: 1_000,
        ..pinnacle_tests::worker_settings()
    }
}

/// The REST routes `client_code` sent since request number `since`.
fn routes_since(angel: &AngelStack, client_code: &str, since: usize) -> Vec<String> {
    angel
        .sim
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| r.client_code.as_deref() == Some(client_code))
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

fn status(reply: &Value) -> &Value {
    assert_eq!(reply["ok"], true, "{reply}");
    &reply["result"]["status"]
}

fn route_count(angel: &AngelStack, client_code: &str, route: &str) -> usize {
    routes_since(angel, client_code, 0)
        .iter()
        .filter(|r| r.as_str() == route)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ends_at_the_rollover_is_replaced_in_the_background() {
    each_backend(|backend| async move {
        // Twenty seconds before midnight IST, for the simulator and both workers.
        let now = "2026-12-02T23:59:40+05:30";
        let mut settings = None;
        let angel = AngelStack::start_with(
            backend,
            |sim| sim.start_at = Some(at(now)),
            |s| {
                s.worker = worker_settings(
                    &s.worker.smartapi_url,
                    &s.worker.smartapi_order_ws_url,
                    now,
                    300_000,
                );
                settings = Some(s.worker.clone());
            },
        )
        .await;
        let (_other, other_stop) = angel.stack.second_worker(settings.expect("settings")).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("warm", 31, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();

        // The evening's order logs in; the session ends at the rollover. (Within the last
        // minute before its end a session counts as stale, so each of the order's requests
        // may log in again: the count before midnight is whatever it is.)
        let first = stack
            .call(&user, "place", AngelStack::limit("w-1", "BUY", 1, rests))
            .await;
        assert_eq!(status(&first), "OPEN", "{first}");
        let evening = angel.sim.login_count(cc);
        assert!(evening >= 1);
        let evening_requests = angel.sim.requests().len();
        let row = stack.broker_account(&user.id).await;
        assert_eq!(
            row.session_expires_at,
            Some(at("2026-12-03T00:00:00+05:30"))
        );

        // Midnight passes: one of the two workers logs in, with no order in sight, and
        // stores a session that lasts until the next rollover.
        eventually(
            Duration::from_secs(40),
            "a session for the new day",
            || async {
                let row = stack.broker_account(&user.id).await;
                (row.session_expires_at == Some(at("2026-12-04T00:00:00+05:30"))).then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            angel.sim.login_count(cc),
            evening + 1,
            "one background login for both workers: {:?}",
            routes_since(&angel, cc, evening_requests)
        );

        // The first order of the day pays no login and no refresh.
        let since = angel.sim.requests().len();
        let second = stack
            .call(&user, "place", AngelStack::limit("w-2", "BUY", 1, rests))
            .await;
        assert_eq!(status(&second), "OPEN", "{second}");
        let routes = routes_since(&angel, cc, since);
        assert!(routes.iter().any(|r| r == "placeOrder"), "{routes:?}");
        assert!(
            !routes
                .iter()
                .any(|r| r == "loginByPassword" || r == "generateTokens"),
            "{routes:?}"
        );
        assert_eq!(angel.sim.login_count(cc), evening + 1);
        other_stop.cancel();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_near_its_expiry_is_refreshed_in_the_background() {
    each_backend(|backend| async move {
        // Mid-morning, with 80-second sessions refreshed 65 seconds ahead of their end: at
        // 15 s, then every 15 s. An order at 25 s would find the first session stale (a
        // session counts as stale in its last minute) and renew it itself; it finds the
        // background's refreshed one instead.
        let now = "2026-12-02T10:00:00+05:30";
        let angel = AngelStack::start_with(
            backend,
            |sim| {
                sim.start_at = Some(at(now));
                sim.session_expiry = SessionExpiry::After(Duration::from_secs(80));
            },
            |s| {
                s.worker = worker_settings(
                    &s.worker.smartapi_url,
                    &s.worker.smartapi_order_ws_url,
                    now,
                    65_000,
                );
            },
        )
        .await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("fresh", 32, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        let first = stack
            .call(&user, "place", AngelStack::limit("f-1", "BUY", 1, rests))
            .await;
        assert_eq!(status(&first), "OPEN", "{first}");
        let logged_in = tokio::time::Instant::now();
        assert_eq!(angel.sim.login_count(cc), 1);

        // About fifteen seconds in, the session is refreshed without an order.
        eventually(Duration::from_secs(25), "a background refresh", || async {
            (route_count(&angel, cc, "generateTokens") >= 1).then_some(())
        })
        .await;
        // Inside the first session's last minute: the next order uses the refreshed one.
        tokio::time::sleep_until(logged_in + Duration::from_secs(23)).await;
        let since = angel.sim.requests().len();
        let second = stack
            .call(&user, "place", AngelStack::limit("f-2", "BUY", 1, rests))
            .await;
        assert_eq!(status(&second), "OPEN", "{second}");
        let routes = routes_since(&angel, cc, since);
        assert!(routes.iter().any(|r| r == "placeOrder"), "{routes:?}");
        assert!(
            !routes
                .iter()
                .any(|r| r == "loginByPassword" || r == "generateTokens"),
            "{routes:?}"
        );
        assert_eq!(
            angel.sim.login_count(cc),
            1,
            "refreshed, never logged in again"
        );
    })
    .await;
}
