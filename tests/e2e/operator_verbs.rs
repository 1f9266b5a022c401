//! The operator's command line against a running stack: `pinnacle users …`, `tokens …`
//! and `accounts …` through the real binary and the user API, each with a success and a
//! refusal printed as one line with its code; the default account steers orders that name
//! none; secrets read from standard input never come back out.

use pinnacle_tests::{market, TestStack, ADMIN_TOKEN};
use serde_json::Value;

use crate::{each_backend, run_pinnacle, run_pinnacle_input};

/// `pinnacle <args> --json` with `token` against the stack's user API; (ok, stdout, stderr).
fn cli(
    stack: &TestStack,
    token_var: &str,
    token: &str,
    args: &[&str],
    input: &str,
) -> (bool, String, String) {
    let mut all = args.to_vec();
    all.push("--json");
    run_pinnacle_input(
        &all,
        &[("USER_API_URL", &stack.api_url), (token_var, token)],
        input,
    )
}

fn admin(stack: &TestStack, args: &[&str], input: &str) -> Value {
    let (ok, out, err) = cli(stack, "PINNACLE_API_ADMIN_TOKEN", ADMIN_TOKEN, args, input);
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// One failed command: non-zero, one line on standard error carrying `code`, no panic.
fn refused(result: (bool, String, String), code: &str) {
    let (ok, out, err) = result;
    assert!(!ok, "succeeded: {out}");
    assert!(err.contains(code), "wanted {code}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_manages_users_tokens_and_accounts_from_the_command_line() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;

        // Users: create (password from standard input), list, show.
        let user = admin(
            &stack,
            &["users", "create", "asha", "--password-stdin"],
            "correct horse battery\n",
        );
        let id = user["id"].as_str().expect("id").to_string();
        assert_eq!(user["default_account"], Value::Null, "{user}");
        let listed = admin(&stack, &["users", "list"], "");
        assert!(
            listed
                .as_array()
                .unwrap_or_else(|| panic!("{listed}"))
                .iter()
                .any(|u| u["id"] == id.as_str()),
            "{listed}"
        );
        refused(
            cli(
                &stack,
                "PINNACLE_API_ADMIN_TOKEN",
                ADMIN_TOKEN,
                &["users", "create", "asha"],
                "",
            ),
            "CONFLICT",
        );
        refused(
            cli(
                &stack,
                "PINNACLE_API_ADMIN_TOKEN",
                ADMIN_TOKEN,
                &["users", "show", "--user", "no-such-user"],
                "",
            ),
            "NOT_FOUND",
        );

        // Tokens: create, use, list, revoke; a revoked token is refused.
        let issued = admin(
            &stack,
            &["tokens", "create", "--user", &id, "--scopes", "READ,trade"],
            "",
        );
        let token = issued["token"].as_str().expect("token").to_string();
        let token_id = issued["id"].as_str().expect("token id").to_string();
        let (ok, out, err) = cli(
            &stack,
            "PINNACLE_API_TOKEN",
            &token,
            &["users", "show", "--user", &id],
            "",
        );
        assert!(ok, "{err}");
        assert!(out.contains(&id), "{out}");
        let tokens = admin(&stack, &["tokens", "list", "--user", &id], "");
        assert!(tokens.to_string().contains(&token_id), "{tokens}");
        assert!(
            !tokens.to_string().contains(&token),
            "a listed token: {tokens}"
        );
        // A user's own token cannot act as the admin.
        refused(
            cli(&stack, "PINNACLE_API_TOKEN", &token, &["users", "list"], ""),
            "FORBIDDEN",
        );

        // Accounts: credentials from standard input, two accounts, then a default.
        let secrets = format!(
            "api_key=SECRET-key-{id}\nclient_code=SECRET-code-{id}\nsecret=SECRET-pin-{id}\n"
        );
        let set_account = |label: &str, input: &str| {
            let args = [
                "accounts",
                "set",
                "--user",
                &id,
                label,
                "--broker",
                "PAPER",
                "--credentials-stdin",
            ];
            cli(&stack, "PINNACLE_API_TOKEN", &token, &args, input)
        };
        for label in ["main", "second"] {
            let (ok, out, err) = set_account(label, &secrets);
            assert!(ok, "{err}");
            assert!(
                !out.contains("SECRET-") && !err.contains("SECRET-"),
                "a secret came back: {out}{err}"
            );
            let account: Value = serde_json::from_str(&out).expect("json");
            assert_eq!(
                account["fields_set"],
                serde_json::json!(["api_key", "client_code", "secret"]),
                "{account}"
            );
        }
        let trader = pinnacle_tests::TestUser {
            id: id.clone(),
            token: token.clone(),
        };
        let refused_order = stack.place(&trader, &market("op-1", "SBIN-EQ", 1)).await;
        let error = refused_order.error.expect("refused without a default");
        assert_eq!(error.code.as_str(), "AMBIGUOUS_ACCOUNT");
        assert!(error.message.contains("no default"), "{}", error.message);

        // A default that names no account yet is kept, with a warning; orders say why.
        let (ok, _, err) = cli(
            &stack,
            "PINNACLE_API_TOKEN",
            &token,
            &["accounts", "default", "--user", &id, "later"],
            "",
        );
        assert!(
            ok && err.contains("no account is labelled \"later\""),
            "{err}"
        );
        let error = stack
            .place(&trader, &market("op-1b", "SBIN-EQ", 1))
            .await
            .error
            .expect("refused: the default does not exist");
        assert!(
            error.message.contains("\"later\" does not exist"),
            "{}",
            error.message
        );
        refused(
            cli(
                &stack,
                "PINNACLE_API_TOKEN",
                &token,
                &["accounts", "default", "--user", &id, "bad label!"],
                "",
            ),
            "INVALID_REQUEST",
        );
        let user = admin(&stack, &["accounts", "default", "--user", &id, "main"], "");
        assert_eq!(user["default_account"], "main", "{user}");
        let placed = stack.place(&trader, &market("op-2", "SBIN-EQ", 1)).await;
        assert!(placed.ok, "{:?}", placed.error);
        let accounts = admin(&stack, &["accounts", "list", "--user", &id], "");
        let defaults: Vec<&Value> = accounts
            .as_array()
            .expect("accounts")
            .iter()
            .filter(|a| a["default"] == true)
            .map(|a| &a["label"])
            .collect();
        assert_eq!(defaults, [&Value::from("main")], "{accounts}");
        // The table for people names the default too.
        let (ok, table, err) = run_pinnacle(
            &["accounts", "list", "--user", &id],
            &[
                ("USER_API_URL", &stack.api_url),
                ("PINNACLE_API_ADMIN_TOKEN", ADMIN_TOKEN),
            ],
        );
        assert!(ok, "{err}");
        assert!(table.starts_with("LABEL"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("main") && l.contains("true")),
            "{table}"
        );

        let deleted = admin(&stack, &["accounts", "delete", "--user", &id, "second"], "");
        assert_eq!(deleted["deleted"], true, "{deleted}");
        refused(
            cli(
                &stack,
                "PINNACLE_API_ADMIN_TOKEN",
                ADMIN_TOKEN,
                &["accounts", "delete", "--user", &id, "second"],
                "",
            ),
            "NOT_FOUND",
        );
        // Bad credentials input: named by line number, never echoed.
        let (ok, out, err) = set_account("third", "SECRET-without-a-key\n");
        assert!(
            !ok && err.contains("line 1") && !err.contains("SECRET-") && !out.contains("SECRET-"),
            "{out}{err}"
        );

        // The default-account change is audited on the user's chain.
        let (status, trail) = stack
            .api_send(
                reqwest::Method::GET,
                &format!("/v1/users/{id}/audit"),
                ADMIN_TOKEN,
                &Value::Null,
            )
            .await;
        assert_eq!(status, 200);
        assert!(
            trail["events"]
                .as_array()
                .expect("events")
                .iter()
                .any(|e| e["purpose"] == "account.default"
                    && e["outcome"] == "changed"
                    && e["actor"] == "admin"),
            "{trail}"
        );

        // Revoked: the next call with the token is refused.
        admin(&stack, &["tokens", "revoke", "--user", &id, &token_id], "");
        refused(
            cli(
                &stack,
                "PINNACLE_API_TOKEN",
                &token,
                &["users", "show", "--user", &id],
                "",
            ),
            "UNAUTHENTICATED",
        );
    })
    .await;
}

/// Misconfiguration is an error that says what to do, within seconds: no token, or a user
/// API that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_verbs_fail_fast_and_say_why() {
    let started = std::time::Instant::now();
    let (ok, _, err) = run_pinnacle(
        &["users", "list"],
        &[("USER_API_URL", "http://127.0.0.1:9")],
    );
    assert!(!ok && err.contains("PINNACLE_API_ADMIN_TOKEN"), "{err}");
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    let (ok, _, err) = run_pinnacle(
        &["risk", "show"],
        &[
            ("USER_API_URL", "http://127.0.0.1:9"),
            ("PINNACLE_API_ADMIN_TOKEN", "x"),
        ],
    );
    assert!(!ok, "succeeded");
    assert!(
        err.contains("http://127.0.0.1:9") && err.contains("is it running"),
        "{err}"
    );
    // A database that is not there: named (password redacted) within seconds.
    let (ok, key, _) = run_pinnacle(&["keys", "generate"], &[]);
    assert!(ok);
    let (ok, _, err) = run_pinnacle(
        &["keys", "status"],
        &[
            ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:9/x"),
            ("PINNACLE_MASTER_KEY", key.trim()),
        ],
    );
    assert!(!ok, "succeeded");
    assert!(
        err.contains("postgres://u:***@127.0.0.1:9/x") && !err.contains("hunter2"),
        "{err}"
    );
    assert!(err.contains("DATABASE_URL"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
}

/// The long operations show progress on standard error (every step with
/// `PINNACLE_PROGRESS_MS=0`) and keep standard output for their result: key rotation over
/// several accounts, then an audit verify over the trail it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_and_audit_verify_show_progress() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        for name in ["p1", "p2", "p3"] {
            stack.trader(name).await;
        }
        // The stack's key (id 1: 32 bytes of 42) plus a new current key 2.
        let (ok, key, err) = run_pinnacle(&["keys", "generate"], &[]);
        assert!(ok, "{err}");
        let ring = format!("1:{},2:{}", "Kioq".repeat(10) + "Kio=", key.trim());
        let env = [
            ("DATABASE_URL", stack.db_url()),
            ("NATS_URL", stack.nats.url()),
            ("PINNACLE_MASTER_KEYS", ring.as_str()),
            ("PINNACLE_PROGRESS_MS", "0"),
        ];
        let (ok, out, err) = run_pinnacle(&["keys", "rotate"], &env);
        assert!(ok, "{out}{err}");
        let report: Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(report["rewrapped"], 3, "{report}");
        assert!(err.contains("key rotation: 1/3 accounts"), "{err}");
        assert!(err.contains("key rotation: 3/3 accounts (100%)"), "{err}");
        assert!(!err.contains('\u{1b}'), "control codes in a log: {err:?}");

        // `keys status`: a table for people, the `GET /v1/keys` object with --json; both
        // show the three accounts on key 2 and none left on key 1.
        let (ok, out, err) = run_pinnacle(&["keys", "status", "--json"], &env);
        assert!(ok, "{err}");
        let view: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(view["current_key_id"], 2, "{view}");
        let rows: Vec<(i64, u64)> = view["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("no keys: {view}"))
            .iter()
            .map(|k| {
                (
                    k["key_id"].as_i64().unwrap_or(-1),
                    k["rows"].as_u64().unwrap_or(9),
                )
            })
            .collect();
        assert_eq!(rows, [(1, 0), (2, 3)], "{view}");
        let (ok, out, err) = run_pinnacle(&["keys", "status"], &env);
        assert!(ok, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("current key 2;"), "{out}");
        assert!(lines[1].starts_with("KEY_ID  FINGERPRINT"), "{out}");
        assert_eq!(lines.len(), 4, "{out}");
        assert!(!out.contains(key.trim()), "a key in the output: {out}");

        let (ok, out, err) = run_pinnacle(
            &["audit", "verify", "--skip-orders", "--skip-sealing"],
            &env,
        );
        assert!(ok, "{out}{err}");
        let last = err
            .lines()
            .rfind(|l| l.starts_with("audit verify: "))
            .unwrap_or_else(|| panic!("no progress: {err}"));
        assert!(last.contains("(100%)"), "{err}");
        // Without the knob a quick run prints no progress at all.
        let quiet: Vec<(&str, &str)> = env
            .iter()
            .copied()
            .filter(|(k, _)| *k != "PINNACLE_PROGRESS_MS")
            .collect();
        let (ok, _, err) = run_pinnacle(
            &["audit", "verify", "--skip-orders", "--skip-sealing"],
            &quiet,
        );
        assert!(ok, "{err}");
        assert!(!err.contains("audit verify: "), "{err}");
    })
    .await;
}
