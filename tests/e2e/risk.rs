//! Pre-trade risk: kill switches, limits and the order rate, each with its own code.

use pinnacle_common::entities::risk_limits::{Model as Limits, GLOBAL};
use pinnacle_tests::{market, no_limits, TestStack};

use crate::{each_backend, run_pinnacle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switches_stop_new_orders_but_not_cancels() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("killed").await;
        let bystander = stack.trader("bystander").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let resting = stack
            .call(&user, "place", serde_json::json!({"client_order_id": "rest", "exchange": "NSE",
                "symbol": "SBIN-EQ", "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": 100}))
            .await;
        let resting_id = resting["result"]["order_id"].as_str().expect("id").to_string();

        stack.set_limits(Limits { kill_switch: true, ..no_limits(&user.id) }).await;
        let refused = stack.place(&user, &market("k-1", "SBIN-EQ", 1)).await;
        assert_eq!(refused.error.expect("refused").code.as_str(), "KILL_SWITCH");
        assert!(stack.place(&bystander, &market("b-1", "SBIN-EQ", 1)).await.ok, "only that user");
        let cancelled = stack.call(&user, "cancel", serde_json::json!({"order_id": resting_id})).await;
        assert_eq!(cancelled["result"]["status"], "CANCELLED", "cancels still work: {cancelled}");

        stack.set_limits(no_limits(&user.id)).await;
        stack.set_limits(Limits { kill_switch: true, ..no_limits(GLOBAL) }).await;
        for who in [&user, &bystander] {
            let refused = stack.place(who, &market("g-1", "SBIN-EQ", 1)).await;
            assert_eq!(refused.error.expect("refused").code.as_str(), "KILL_SWITCH");
        }
        stack.set_limits(no_limits(GLOBAL)).await;
        assert!(stack.place(&user, &market("g-1", "SBIN-EQ", 1)).await.ok, "and back on");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_their_own_codes() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("limited").await;
        let ticks = stack.wait_for_ticks("SBIN-EQ", 2).await;
        let price = ticks.last().map(|t| t.ltp).unwrap_or(82_000);
        stack
            .set_limits(Limits {
                max_quantity: Some(100),
                max_order_value: Some(price * 50),
                allowed_exchanges: Some("NSE".into()),
                allowed_symbols: Some("NSE:SBIN-EQ,NSE:TCS-EQ".into()),
                ..no_limits(&user.id)
            })
            .await;
        let code = |reply: pinnacle_common::model::Reply<pinnacle_common::model::OrderReply>| {
            reply.error.map(|e| e.code.as_str().to_string())
        };
        assert_eq!(
            code(stack.place(&user, &market("q", "SBIN-EQ", 101)).await).as_deref(),
            Some("RISK_MAX_QUANTITY")
        );
        assert_eq!(
            code(stack.place(&user, &market("v", "SBIN-EQ", 99)).await).as_deref(),
            Some("RISK_MAX_VALUE")
        );
        assert_eq!(
            code(stack.place(&user, &market("s", "INFY-EQ", 1)).await).as_deref(),
            Some("RISK_SYMBOL")
        );
        let mut bse = market("e", "SBIN-EQ", 1);
        bse.exchange = "BSE".into();
        assert_eq!(
            code(stack.place(&user, &bse).await).as_deref(),
            Some("RISK_EXCHANGE")
        );
        assert_eq!(
            code(stack.place(&user, &market("ok", "SBIN-EQ", 10)).await),
            None
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_rate_is_capped_per_user_across_workers() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("rapid").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        stack
            .set_limits(Limits {
                max_orders_per_second: Some(3),
                ..no_limits(&user.id)
            })
            .await;
        let mut codes = Vec::new();
        for i in 0..6 {
            let reply = stack
                .place(&user, &market(&format!("r-{i}"), "SBIN-EQ", 1))
                .await;
            codes.push(reply.error.map(|e| e.code.as_str().to_string()));
        }
        let limited = codes
            .iter()
            .filter(|c| c.as_deref() == Some("RATE_LIMITED"))
            .count();
        let placed = codes.iter().filter(|c| c.is_none()).count();
        assert!(placed >= 3 && limited >= 1, "{codes:?}");
    })
    .await;
}

/// Runs `pinnacle risk <args>` against `db_url`; returns (success, stdout, stderr).
fn pinnacle_risk(db_url: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["risk"];
    all.extend_from_slice(args);
    run_pinnacle(&all, &[("DATABASE_URL", db_url)])
}

/// An operator changes limits and kill switches with `pinnacle risk`, without SQL: the next
/// order obeys them, `show` reports what is in force, and bad input changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_risk_command_sets_limits_and_kill_switches() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("operated").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let url = stack.db_url().to_string();
        let risk = |args: &[&str]| pinnacle_risk(&url, args);
        let code = |reply: pinnacle_common::model::Reply<pinnacle_common::model::OrderReply>| {
            reply.error.map(|e| e.code.as_str().to_string())
        };

        // The default: Angel One's 9 orders per second, reported as the default.
        let (ok, out, err) = risk(&["show", "--user", &user.id]);
        assert!(ok, "{err}");
        let view: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(view["in_force"]["max_orders_per_second"], 9, "{view}");
        assert_eq!(view["in_force"]["default_rate"], true, "{view}");

        let (ok, out, err) = risk(&[
            "set",
            "--user",
            &user.id,
            "--max-quantity",
            "5",
            "--max-orders-per-second",
            "1000",
            "--exchanges",
            "NSE",
        ]);
        assert!(ok, "{out}{err}");
        assert_eq!(
            code(stack.place(&user, &market("cli-q", "SBIN-EQ", 6)).await).as_deref(),
            Some("RISK_MAX_QUANTITY")
        );
        assert!(stack.place(&user, &market("cli-ok", "SBIN-EQ", 5)).await.ok);
        // Lifting one limit keeps the others.
        let (ok, out, err) = risk(&["set", "--user", &user.id, "--max-quantity", "none"]);
        assert!(ok, "{out}{err}");
        let row: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(row["max_quantity"], serde_json::Value::Null, "{row}");
        assert_eq!(row["max_orders_per_second"], 1000, "{row}");
        assert_eq!(row["allowed_exchanges"], "NSE", "{row}");
        assert!(
            stack
                .place(&user, &market("cli-big", "SBIN-EQ", 6))
                .await
                .ok
        );

        // The platform kill switch, then back.
        assert!(risk(&["kill", "--global"]).0);
        assert_eq!(
            code(stack.place(&user, &market("cli-k", "SBIN-EQ", 1)).await).as_deref(),
            Some("KILL_SWITCH")
        );
        let (_, out, _) = risk(&["show", "--user", &user.id]);
        let view: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(view["in_force"]["kill_switch"], true, "{view}");
        assert!(risk(&["resume", "--global"]).0);
        assert!(stack.place(&user, &market("cli-k", "SBIN-EQ", 1)).await.ok);

        // Refused input changes nothing.
        for args in [
            vec!["set", "--user", "no-such-user", "--max-quantity", "1"],
            vec!["set", "--user", &user.id, "--max-quantity", "0"],
            vec!["set", "--user", &user.id, "--exchanges", "nse;drop"],
            vec!["set", "--global", "--user", &user.id],
            vec!["set", "--max-quantity", "1"],
            vec![
                "set",
                "--user",
                &user.id,
                "--max-orders-per-second",
                "99999999999",
            ],
        ] {
            let (ok, _, err) = risk(&args);
            assert!(!ok, "{args:?} succeeded");
            assert!(!err.is_empty(), "{args:?}: no message");
        }
        let (_, out, _) = risk(&["show", "--user", &user.id]);
        let view: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(view["user"]["max_orders_per_second"], 1000, "{view}");

        assert_eq!(risk(&["clear", "--user", &user.id]).1.trim(), "cleared");
        let (_, out, _) = risk(&["show", "--user", &user.id]);
        let view: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(view["user"], serde_json::Value::Null, "{view}");
    })
    .await;
}
