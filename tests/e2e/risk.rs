//! Pre-trade risk: kill switches, limits and the order rate, each with its own code.

use pinnacle_common::entities::risk_limits::{Model as Limits, GLOBAL};
use pinnacle_common::model::{OrderReply, Reply};
use pinnacle_tests::{market, no_limits, TestStack};
use sea_orm::{ConnectionTrait as _, DbBackend, Statement};

use crate::{each_backend, run_pinnacle};

/// The error code of an order reply, if it is an error.
fn code(reply: Reply<OrderReply>) -> Option<String> {
    reply.error.map(|e| e.code.as_str().to_string())
}

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

/// A market order can only be valued against a value limit once the worker has a price:
/// for a listed symbol that has not traded yet (ITC-EQ is in the instrument master, not in
/// the simulated feed) the answer is the retryable `PRICE_UNAVAILABLE`, with or without a
/// value limit, never a `RISK_MAX_VALUE` verdict judged without a price; nothing is stored,
/// and the same client order id is judged on its merits once priced (a traded symbol).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_limit_is_never_judged_without_a_price() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("valued").await;
        let ticks = stack.wait_for_ticks("SBIN-EQ", 2).await;
        let price = ticks.last().map(|t| t.ltp).unwrap_or(82_000);
        assert_eq!(
            code(stack.place(&user, &market("np-1", "ITC-EQ", 1)).await).as_deref(),
            Some("PRICE_UNAVAILABLE"),
            "no limit: the broker cannot price it"
        );
        stack
            .set_limits(Limits {
                max_order_value: Some(price * 50),
                ..no_limits(&user.id)
            })
            .await;
        assert_eq!(
            code(stack.place(&user, &market("np-2", "ITC-EQ", 1)).await).as_deref(),
            Some("PRICE_UNAVAILABLE"),
            "a value limit does not turn a missing price into a verdict"
        );
        assert_eq!(stack.order_count(&user.id).await, 0, "nothing stored");
        assert_eq!(
            code(stack.place(&user, &market("np-3", "SBIN-EQ", 99)).await).as_deref(),
            Some("RISK_MAX_VALUE"),
            "priced, the limit still bites"
        );
        assert_eq!(
            code(stack.place(&user, &market("np-4", "SBIN-EQ", 1)).await),
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
        // Only what was admitted is counted: a refused request does not keep the window
        // full for the requests after it.
        let counted = stack
            .db
            .query_one(Statement::from_sql_and_values(
                stack.db.get_database_backend(),
                match stack.db.get_database_backend() {
                    DbBackend::Sqlite => {
                        r#"SELECT SUM("count") FROM "order_rate" WHERE "user_id" = ?"#
                    }
                    _ => r#"SELECT SUM("count") FROM "order_rate" WHERE "user_id" = $1"#,
                },
                [user.id.clone().into()],
            ))
            .await
            .expect("reads the counters")
            .expect("a row")
            .try_get_by_index::<Option<i64>>(0)
            .expect("a sum");
        assert_eq!(counted, Some(placed as i64), "{codes:?}");
    })
    .await;
}

/// Runs `pinnacle <args> --json` as the admin against `stack`'s user API; returns
/// (success, stdout, stderr).
fn pinnacle_admin(stack: &TestStack, args: &[&str]) -> (bool, String, String) {
    let mut all = args.to_vec();
    all.push("--json");
    run_pinnacle(
        &all,
        &[
            ("USER_API_URL", &stack.api_url),
            ("PINNACLE_API_ADMIN_TOKEN", pinnacle_tests::ADMIN_TOKEN),
        ],
    )
}

fn view(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The `changed` audit events of `chain` (a user id, or `global`), as (purpose, fields).
async fn changes(stack: &TestStack, chain: &str) -> Vec<(String, Vec<String>)> {
    let (status, trail) = stack
        .api_send(
            reqwest::Method::GET,
            &format!("/v1/users/{chain}/audit"),
            pinnacle_tests::ADMIN_TOKEN,
            &serde_json::Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{trail}");
    trail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["outcome"] == "changed")
        .map(|e| {
            let fields = e["fields"].as_array().expect("fields");
            (
                e["purpose"].as_str().expect("purpose").to_string(),
                fields
                    .iter()
                    .map(|f| f.as_str().expect("field").to_string())
                    .collect(),
            )
        })
        .collect()
}

/// An operator changes limits and kill switches with `pinnacle risk` and `pinnacle
/// kill-switch`, through the user API, without SQL: the next order obeys them, `show`
/// reports what is in force, every change is an audit event, and bad input changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_risk_command_sets_limits_and_kill_switches() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("operated").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let admin = |args: &[&str]| pinnacle_admin(&stack, args);

        // The default: Angel One's 9 orders per second, reported as the default.
        let (ok, out, err) = admin(&["risk", "show", "--user", &user.id]);
        assert!(ok, "{err}");
        let shown = view(&out);
        assert_eq!(shown["in_force"]["max_orders_per_second"], 9, "{shown}");
        assert_eq!(shown["in_force"]["default_rate"], true, "{shown}");

        let (ok, out, err) = admin(&[
            "risk",
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
        let (ok, out, err) = admin(&["risk", "set", "--user", &user.id, "--max-quantity", "none"]);
        assert!(ok, "{out}{err}");
        let row = &view(&out)["user"];
        assert_eq!(row["max_quantity"], serde_json::Value::Null, "{row}");
        assert_eq!(row["max_orders_per_second"], 1000, "{row}");
        assert_eq!(
            row["allowed_exchanges"],
            serde_json::json!(["NSE"]),
            "{row}"
        );
        assert!(
            stack
                .place(&user, &market("cli-big", "SBIN-EQ", 6))
                .await
                .ok
        );

        // The platform kill switch, then back.
        assert!(admin(&["kill-switch", "on", "--global"]).0);
        assert_eq!(
            code(stack.place(&user, &market("cli-k", "SBIN-EQ", 1)).await).as_deref(),
            Some("KILL_SWITCH")
        );
        let (_, out, _) = admin(&["risk", "show", "--user", &user.id]);
        assert_eq!(view(&out)["in_force"]["kill_switch"], true, "{out}");
        assert!(admin(&["kill-switch", "OFF", "--global"]).0);
        assert!(stack.place(&user, &market("cli-k", "SBIN-EQ", 1)).await.ok);
        // One user's kill switch leaves the others trading.
        assert!(admin(&["kill-switch", "on", "--user", &user.id]).0);
        assert_eq!(
            code(stack.place(&user, &market("cli-k2", "SBIN-EQ", 1)).await).as_deref(),
            Some("KILL_SWITCH")
        );
        let bystander = stack.trader("bystander").await;
        assert!(
            stack
                .place(&bystander, &market("cli-b", "SBIN-EQ", 1))
                .await
                .ok
        );
        assert!(admin(&["kill-switch", "off", "--user", &user.id]).0);

        // Refused input changes nothing, and says why in one line (with the API's code when
        // the API refused it; the parser's message otherwise).
        let no_user = [
            "risk",
            "set",
            "--user",
            "no-such-user",
            "--max-quantity",
            "1",
        ];
        for (args, says) in [
            (no_user.to_vec(), "NOT_FOUND"),
            (
                vec!["risk", "set", "--user", &user.id, "--max-quantity", "0"],
                "--max-quantity",
            ),
            (
                vec!["risk", "set", "--user", &user.id, "--exchanges", "nse;drop"],
                "--exchanges",
            ),
            (
                vec!["risk", "set", "--global", "--user", &user.id],
                "cannot be used",
            ),
            (vec!["risk", "set", "--max-quantity", "1"], "required"),
            (vec!["risk", "set", "--user", &user.id], "nothing to change"),
            (
                vec![
                    "risk",
                    "set",
                    "--user",
                    &user.id,
                    "--max-orders-per-second",
                    "99999999999",
                ],
                "INVALID_REQUEST",
            ),
            (vec!["kill-switch", "on"], "required"),
            (vec!["kill-switch", "maybe", "--global"], "invalid value"),
        ] {
            let (ok, _, err) = admin(&args);
            assert!(!ok, "{args:?} succeeded");
            assert!(err.contains(says), "{args:?}: wanted {says:?} in {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
        // A trader's own token may read their limits, not change them.
        let as_trader = |args: &[&str]| {
            run_pinnacle(
                args,
                &[
                    ("USER_API_URL", &stack.api_url),
                    ("PINNACLE_API_TOKEN", &user.token),
                ],
            )
        };
        assert!(as_trader(&["risk", "show", "--user", &user.id]).0);
        let (ok, _, err) = as_trader(&["kill-switch", "off", "--global"]);
        assert!(!ok && err.contains("FORBIDDEN"), "{err}");
        let (_, out, _) = admin(&["risk", "show", "--user", &user.id]);
        assert_eq!(view(&out)["user"]["max_orders_per_second"], 1000, "{out}");

        let (ok, out, err) = admin(&["risk", "clear", "--user", &user.id]);
        assert!(ok, "{err}");
        assert_eq!(view(&out)["user"], serde_json::Value::Null, "{out}");

        // Every change is in the audit trail: the user's chain and the platform's.
        let user_changes = changes(&stack, &user.id).await;
        let purposes: Vec<&str> = user_changes.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            purposes,
            [
                "risk.set",
                "risk.set",
                "kill_switch.on",
                "kill_switch.off",
                "risk.clear"
            ],
            "{user_changes:?}"
        );
        assert_eq!(
            user_changes[0].1,
            ["max_quantity", "allowed_exchanges", "max_orders_per_second"]
        );
        let global: Vec<String> = changes(&stack, "global")
            .await
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(global, ["kill_switch.on", "kill_switch.off"]);
    })
    .await;
}

/// Concurrent changes to one row never revert each other: a kill switch tripped while
/// other admins edit limits stays on, and each edit lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_risk_changes_never_revert_the_kill_switch() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.create_user("contended").await;
        let path = format!("/v1/users/{}/risk-limits", user.id);
        let put = |body: serde_json::Value| {
            let (stack, path) = (&stack, path.clone());
            async move {
                let (status, reply) = stack
                    .api_put(&path, pinnacle_tests::ADMIN_TOKEN, &body)
                    .await;
                assert_eq!(status, 200, "{reply}");
            }
        };
        let mut edits: Vec<_> = (1..=20)
            .map(|n| put(serde_json::json!({ "max_quantity": n })))
            .collect();
        edits.insert(10, put(serde_json::json!({ "kill_switch": true })));
        edits.push(put(serde_json::json!({ "max_orders_per_second": 50 })));
        futures::future::join_all(edits).await;
        let (status, view) = stack
            .api_send(
                reqwest::Method::GET,
                &path,
                pinnacle_tests::ADMIN_TOKEN,
                &serde_json::Value::Null,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(view["user"]["kill_switch"], true, "{view}");
        assert_eq!(view["user"]["max_orders_per_second"], 50, "{view}");
        let quantity = view["user"]["max_quantity"].as_i64().expect("set");
        assert!((1..=20).contains(&quantity), "{view}");
    })
    .await;
}
