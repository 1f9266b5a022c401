//! Schemathesis (pinned in `scripts/requirements-dev.txt`), with every check it has,
//! against the real user API: positive and negative data, status codes, content types,
//! response headers and schemas, missing and ignored authentication, unsupported methods.
//! The OpenAPI document must state every constraint the server enforces (and no other),
//! so the run must end with no failure of any kind.
//!
//! CI runs a bounded number of examples per operation with a fixed seed;
//! `PINNACLE_SCHEMATHESIS_EXAMPLES` and `PINNACLE_SCHEMATHESIS_SEED` change them for a
//! long run (docs/TESTING.md).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pinnacle_tests::{TestStack, ADMIN_TOKEN};

use crate::each_backend;

/// The project's Schemathesis (from `scripts/setup.sh`), or `PINNACLE_SCHEMATHESIS`.
fn schemathesis() -> PathBuf {
    if let Ok(path) = std::env::var("PINNACLE_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join(".venv/bin/schemathesis"))
        .find(|p| p.exists())
        .expect(".venv/bin/schemathesis: run scripts/setup.sh")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs Schemathesis against `stack` with `token`; returns whether it passed and its output.
async fn run(stack: &TestStack, token: &str, extra: &[&str]) -> (bool, String) {
    let examples = env_or("PINNACLE_SCHEMATHESIS_EXAMPLES", 20).to_string();
    let seed = env_or("PINNACLE_SCHEMATHESIS_SEED", 20_261_202).to_string();
    let auth = format!("Authorization: Bearer {token}");
    // Schemathesis and Hypothesis leave `.schemathesis/` and `.hypothesis/` in the working
    // directory, whatever `--generation-database` says.
    let scratch = tempfile::tempdir().expect("scratch dir");
    let output = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(schemathesis())
            .arg("run")
            .arg(format!("{}/openapi.json", stack.api_url))
            .args(["--checks", "all", "--header", &auth])
            .args(["--max-examples", &examples, "--seed", &seed])
            .args(["--generation-database", "none", "--no-color"])
            // One worker: CPython 3.11's parser is not thread-safe where Hypothesis
            // describes its filters ("AST constructor recursion depth mismatch").
            .args(["--request-timeout", "30", "--workers", "1"])
            .args(extra)
            .env("NO_COLOR", "1")
            .current_dir(scratch.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("schemathesis finishes within 10 minutes")
    .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_difference_between_the_document_and_the_server() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let spec: serde_json::Value = stack
            .http
            .get(format!("{}/openapi.json", stack.api_url))
            .send()
            .await
            .expect("GET /openapi.json")
            .json()
            .await
            .expect("the document is JSON");
        let operations: usize = spec["paths"]
            .as_object()
            .expect("paths")
            .values()
            .filter_map(|item| item.as_object().map(|methods| methods.len()))
            .sum();
        let (passed, output) = run(&stack, ADMIN_TOKEN, &[]).await;
        eprintln!("{output}");
        assert!(passed, "schemathesis found failures (output above)");
        // It really ran: it tested every operation in the document.
        assert!(
            output.contains(&format!("Tested: {operations}")),
            "schemathesis did not test all {operations} operations"
        );
    })
    .await;
}
