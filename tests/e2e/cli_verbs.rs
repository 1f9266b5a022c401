//! The trader's command line against a running stack: `pinnacle order …`, `portfolio …`
//! and `md …` through the real binary, as tables and as JSON, with a refusal printed as one
//! readable line and a non-zero exit.

use pinnacle_tests::{TestStack, TestUser};
use serde_json::Value;

use crate::{each_backend, run_pinnacle};

/// Runs `pinnacle <args>` as `user`; returns (success, stdout, stderr).
fn pinnacle(stack: &TestStack, user: &TestUser, args: &[&str]) -> (bool, String, String) {
    run_pinnacle(
        args,
        &[
            ("NATS_URL", stack.nats.url()),
            ("PINNACLE_USER_ID", &user.id),
            ("PINNACLE_API_TOKEN", &user.token),
        ],
    )
}

fn json(stack: &TestStack, user: &TestUser, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = pinnacle(stack, user, &all);
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trader_lives_in_the_command_line() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("cli").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;

        // A resting limit order (far below the market), in lower case, then its life.
        let placed = json(
            &stack,
            &user,
            &[
                "order",
                "place",
                "--symbol",
                "SBIN-EQ",
                "--side",
                "buy",
                "--quantity",
                "2",
                "--type",
                "limit",
                "--price",
                "1.05",
                "--product",
                "intraday",
                "--client-order-id",
                "cli-rest",
            ],
        );
        assert_eq!(placed["status"], "OPEN", "{placed}");
        assert_eq!(placed["product"], "INTRADAY", "{placed}");
        assert_eq!(placed["price"], 105, "{placed}");
        let modified = json(
            &stack,
            &user,
            &[
                "order",
                "modify",
                "--client-order-id",
                "cli-rest",
                "--quantity",
                "3",
                "--price",
                "1.10",
            ],
        );
        assert_eq!(modified["quantity"], 3, "{modified}");
        assert_eq!(modified["price"], 110, "{modified}");
        let got = json(
            &stack,
            &user,
            &["order", "get", "--client-order-id", "cli-rest"],
        );
        assert_eq!(got["status"], "OPEN", "{got}");
        let listed = json(&stack, &user, &["order", "list", "--status", "open"]);
        assert_eq!(
            listed["orders"].as_array().map(Vec::len),
            Some(1),
            "{listed}"
        );
        let (ok, table, err) = pinnacle(&stack, &user, &["order", "list"]);
        assert!(ok, "{err}");
        assert!(table.starts_with("ORDER_ID"), "{table}");
        assert!(
            table.contains("cli-rest") && table.contains("OPEN"),
            "{table}"
        );
        let cancelled = json(
            &stack,
            &user,
            &["order", "cancel", "--client-order-id", "cli-rest"],
        );
        assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");

        // A market order fills; a stop-loss order rests with its trigger.
        let filled = json(
            &stack,
            &user,
            &[
                "order",
                "place",
                "--symbol",
                "SBIN-EQ",
                "--side",
                "BUY",
                "--quantity",
                "1",
            ],
        );
        assert_eq!(filled["status"], "FILLED", "{filled}");
        let ltp = json(&stack, &user, &["md", "last", "SBIN-EQ"])["ltp"]
            .as_i64()
            .expect("ltp");
        let trigger = format!("{}.00", ltp / 100 + 50);
        let stop = json(
            &stack,
            &user,
            &[
                "order",
                "place",
                "--symbol",
                "SBIN-EQ",
                "--side",
                "Buy",
                "--quantity",
                "1",
                "--type",
                "STOPLOSS_MARKET",
                "--trigger",
                &trigger,
            ],
        );
        assert_eq!(stop["order_type"], "STOPLOSS_MARKET", "{stop}");
        assert_eq!(stop["status"], "OPEN", "{stop}");

        // The portfolio follows.
        let funds = json(&stack, &user, &["portfolio", "funds"]);
        assert!(funds["used"].as_i64().expect("used") > 0, "{funds}");
        let (ok, table, _) = pinnacle(&stack, &user, &["portfolio", "funds"]);
        assert!(ok && table.contains('₹'), "{table}");
        let positions = json(&stack, &user, &["portfolio", "positions"]);
        assert_eq!(
            positions["positions"][0]["symbol"], "SBIN-EQ",
            "{positions}"
        );
        let trades = json(&stack, &user, &["portfolio", "trades"]);
        assert_eq!(
            trades["trades"].as_array().map(Vec::len),
            Some(1),
            "{trades}"
        );
        assert!(json(&stack, &user, &["portfolio", "holdings"])["holdings"].is_array());

        // Square-off on demand closes the intraday position, and only that.
        let intraday = json(
            &stack,
            &user,
            &[
                "order",
                "place",
                "--symbol",
                "SBIN-EQ",
                "--side",
                "buy",
                "--quantity",
                "2",
                "--product",
                "intraday",
            ],
        );
        assert_eq!(intraday["status"], "FILLED", "{intraday}");
        let (ok, table, err) = pinnacle(&stack, &user, &["order", "squareoff"]);
        assert!(ok, "{err}");
        let closing = table
            .split("Closing:")
            .nth(1)
            .and_then(|rest| rest.split("Not done").next())
            .unwrap_or_default();
        assert!(
            closing.contains("SELL") && closing.contains("LIMIT"),
            "{table}"
        );
        let not_done = table.split("Not done").nth(1).unwrap_or_default();
        assert!(not_done.contains("(no orders)"), "nothing failed: {table}");
        let again = json(&stack, &user, &["order", "squareoff"]);
        assert_eq!(
            again,
            serde_json::json!({"cancelled": [], "closing": [], "failed": []})
        );
        assert_eq!(
            json(
                &stack,
                &user,
                &[
                    "order",
                    "get",
                    "--order-id",
                    stop["order_id"].as_str().expect("id")
                ]
            )["status"],
            "OPEN",
            "a DELIVERY order is left alone"
        );
        // The order rate is 9 a second per user; the refusals below must not meet it.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

        // The order events, replayed: every change of every order, oldest first.
        let (ok, out, err) = pinnacle(&stack, &user, &["events", "--json"]);
        assert!(ok, "{err}");
        let events: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON event"))
            .collect();
        let rest: Vec<&Value> = events
            .iter()
            .filter(|e| e["order"]["client_order_id"] == "cli-rest")
            .collect();
        let path: Vec<&str> = rest
            .iter()
            .map(|e| e["order"]["status"].as_str().unwrap_or("?"))
            .collect();
        assert_eq!(path.first(), Some(&"NEW"), "{path:?}");
        assert_eq!(path.last(), Some(&"CANCELLED"), "{path:?}");
        assert!(path.contains(&"PENDING_MODIFY"), "{path:?}");
        let (ok, table, err) = pinnacle(&stack, &user, &["events"]);
        assert!(ok, "{err}");
        assert!(table.contains("OPEN -> PENDING_CANCEL"), "{table}");

        // Market data.
        let found = json(
            &stack,
            &user,
            &["md", "symbols", "sbin", "--exchange", "NSE"],
        );
        assert_eq!(found["instruments"][0]["symbol"], "SBIN-EQ", "{found}");
        let looked = json(&stack, &user, &["md", "lookup", "sbin-eq"]);
        assert_eq!(looked["symbol"], "SBIN-EQ", "{looked}");
        let status = json(&stack, &user, &["md", "status", "--exchange", "NSE"]);
        assert_eq!(status["exchanges"][0]["exchange"], "NSE", "{status}");

        // Refusals: one readable line with the code, non-zero exit, no MessagePack bytes.
        for (args, code) in [
            (
                vec!["order", "cancel", "--client-order-id", "no-such-order"],
                "NOT_FOUND",
            ),
            (
                vec![
                    "order",
                    "place",
                    "--symbol",
                    "NOPE-EQ",
                    "--side",
                    "buy",
                    "--quantity",
                    "1",
                ],
                "UNKNOWN_SYMBOL",
            ),
            (
                vec![
                    "order",
                    "place",
                    "--symbol",
                    "SBIN-EQ",
                    "--side",
                    "buy",
                    "--quantity",
                    "1",
                    "--type",
                    "limit",
                ],
                "INVALID_REQUEST",
            ),
            (vec!["md", "last", "NOPE-EQ"], "UNKNOWN_SYMBOL"),
            (
                vec![
                    "order",
                    "modify",
                    "--client-order-id",
                    "nope",
                    "--quantity",
                    "2",
                ],
                "NOT_FOUND",
            ),
            (
                vec!["order", "get", "--client-order-id", "nope"],
                "NOT_FOUND",
            ),
            (
                vec!["portfolio", "funds", "--account", "nosuch"],
                "NO_BROKER_ACCOUNT",
            ),
            (
                vec!["portfolio", "positions", "--account", "nosuch"],
                "NO_BROKER_ACCOUNT",
            ),
            (
                vec!["portfolio", "holdings", "--account", "nosuch"],
                "NO_BROKER_ACCOUNT",
            ),
            (
                vec!["portfolio", "trades", "--account", "nosuch"],
                "NO_BROKER_ACCOUNT",
            ),
            (vec!["md", "lookup", "nope-eq"], "UNKNOWN_SYMBOL"),
            (
                vec!["md", "status", "--exchange", "XYZ"],
                "UNKNOWN_EXCHANGE",
            ),
            (
                vec![
                    "md",
                    "candles",
                    "NOPE-EQ",
                    "--from",
                    "2026-12-01 09:15",
                    "--to",
                    "2026-12-01 10:15",
                ],
                "UNKNOWN_SYMBOL",
            ),
        ] {
            let (ok, _, err) = pinnacle(&stack, &user, &args);
            assert!(!ok, "{args:?} succeeded");
            assert!(
                err.starts_with(&format!("error: {code}: ")),
                "{args:?}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
        // Bad flags are refused by the parser, with the accepted values.
        let (ok, _, err) = pinnacle(
            &stack,
            &user,
            &[
                "order",
                "place",
                "--symbol",
                "SBIN-EQ",
                "--side",
                "hold",
                "--quantity",
                "1",
            ],
        );
        assert!(!ok && err.contains("possible values: buy, sell"), "{err}");
        let (ok, _, err) = pinnacle(
            &stack,
            &user,
            &[
                "order",
                "place",
                "--symbol",
                "SBIN-EQ",
                "--side",
                "buy",
                "--quantity",
                "1",
                "--price",
                "abc",
            ],
        );
        assert!(!ok && err.contains("rupees"), "{err}");
        let (ok, _, err) = pinnacle(&stack, &user, &["order", "list", "--status", "bogus"]);
        assert!(!ok && err.contains("partially-filled"), "{err}");
        assert!(json(
            &stack,
            &user,
            &["order", "list", "--status", "Partially_Filled"]
        )["orders"]
            .is_array());
        // A token that is not the user's: refused in one line, with its code.
        let stranger = pinnacle_tests::TestUser {
            id: user.id.clone(),
            token: "pnc_0000000000000000_nottherealsecretatall".into(),
        };
        let (ok, _, err) = pinnacle(&stack, &stranger, &["order", "list"]);
        assert!(!ok && err.starts_with("error: UNAUTHENTICATED: "), "{err}");
        // `events` with no NATS server there: an error naming it, at once.
        let (ok, _, err) = run_pinnacle(
            &["events"],
            &[
                ("NATS_URL", "nats://127.0.0.1:9"),
                ("PINNACLE_USER_ID", &user.id),
            ],
        );
        assert!(!ok && err.contains("nats://127.0.0.1:9"), "{err}");

        // `ticks` prints the whole wire map, and a reader that goes away ends it quietly.
        let piped = std::process::Command::new("bash")
            .args([
                "-c",
                "set -o pipefail; \"$0\" ticks 'md.tick.NSE.>' | head -n 3",
            ])
            .arg(env!("CARGO_BIN_EXE_pinnacle-under-test"))
            .env("NATS_URL", stack.nats.url())
            .output()
            .expect("bash runs");
        let stderr = String::from_utf8_lossy(&piped.stderr);
        assert!(piped.status.success(), "ticks | head: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let lines: Vec<Value> = String::from_utf8_lossy(&piped.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON tick"))
            .collect();
        assert_eq!(lines.len(), 3);
        for key in ["mode", "seq", "ltp", "exchange", "symbol"] {
            assert!(lines[0].get(key).is_some(), "{key} missing: {}", lines[0]);
        }
    })
    .await;
}
