//! `pinnacle dev` as a new user meets it: every command its banner prints works when
//! pasted, in both modes; `dev.env` carries what the operator verbs need; a restart keeps
//! the demo token instead of issuing another.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use pinnacle_tests::{eventually, TestDb, TestNats};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

use crate::each_backend;

/// Starts `pinnacle dev` in `data`, with the SmartAPI simulator on `sim` if given; returns
/// it and its banner (stdout up to "Stop with").
async fn start_dev(
    data: &Path,
    nats: &str,
    db: &str,
    sim: Option<std::net::SocketAddr>,
) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pinnacle-under-test"));
    command
        .args(["dev", "--api-bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("NATS_URL", nats)
        .env("DATABASE_URL", db)
        .env("PINNACLE_SIM_INTERVAL_MS", "20")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("PINNACLE_ENV_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(bind) = sim {
        command
            .arg("--smartapi-sim")
            .args(["--smartapi-sim-bind", &bind.to_string()]);
    }
    let mut child = command.spawn().expect("pinnacle dev starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = String::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            banner.push_str(&line);
            banner.push('\n');
            // The simulator's part of the banner comes last.
            let last = if sim.is_some() {
                line.contains("the demo user's default account")
            } else {
                line.starts_with("Stop with")
            };
            if last {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), read)
        .await
        .expect("the banner within 90 s");
    // Keep draining stdout so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, banner)
}

/// A loopback address with a port nothing listens on now.
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

fn dev_env(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .expect("dev.env")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The commands in the banner: indented lines that start with the binary's path.
fn commands(banner: &str) -> Vec<String> {
    let me = env!("CARGO_BIN_EXE_pinnacle-under-test");
    banner
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(me))
        .map(str::to_string)
        .collect()
}

/// Runs one pasted command with bash; a command that follows a stream (`ticks`) must print
/// a line, then is stopped.
async fn paste(command: &str) {
    let follows = command.contains(" ticks ");
    let mut child = Command::new("bash")
        .args(["-c", command])
        .env_remove("PINNACLE_ENV_FILE")
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bash");
    if follows {
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("`{command}` printed nothing in 15 s"));
        assert!(matches!(first, Ok(Some(_))), "`{command}`: {first:?}");
        return;
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{command}` did not finish in 30 s"))
        .expect("wait");
    assert!(
        out.status.success(),
        "`{command}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_banner_command_works_and_a_restart_keeps_the_demo_token() {
    each_backend(|backend| async move {
        for sim in [false, true] {
            let nats = TestNats::start();
            let db = TestDb::create(backend).await;
            let dir = tempfile::tempdir().expect("temp dir");
            let data = dir.path().join("data");
            let sim_bind = sim.then(free_port);
            let (child, banner) = start_dev(&data, nats.url(), &db.url, sim_bind).await;
            if sim {
                assert!(banner.contains("SmartAPI simulator feed"), "{banner}");
                assert!(
                    !banner.contains("(simulated feed, paper broker)"),
                    "{banner}"
                );
            }
            let pasted = commands(&banner);
            assert!(
                pasted.len() >= 4,
                "too few commands in the banner:\n{banner}"
            );
            // The paper broker needs a price before it accepts an order.
            tokio::time::sleep(Duration::from_millis(500)).await;
            for command in &pasted {
                paste(command).await;
            }
            // dev.env serves the operator verbs too.
            let env_file = data.join("dev.env");
            let env = dev_env(&env_file);
            for key in [
                "DATABASE_URL",
                "PINNACLE_API_ADMIN_TOKEN",
                "DEMO_ACCOUNTS",
                "NATS_URL",
            ] {
                assert!(env.contains_key(key), "dev.env has no {key}");
            }
            if sim {
                // The simulator's clock moves as docs/SMARTAPI.md "Against the simulator"
                // shows, at the address dev.env gives (the one it was told to listen on);
                // and back to the real time.
                let url = &env["SMARTAPI_SIM_URL"];
                let bind = sim_bind.expect("a simulator address");
                assert_eq!(url, &format!("http://{bind}"), "{banner}");
                let http = reqwest::Client::new();
                let moved = http
                    .post(format!("{url}/__sim/clock"))
                    .json(&serde_json::json!({"now": "2026-12-04T10:00:00+05:30"}))
                    .send()
                    .await
                    .expect("the simulator answers");
                assert!(moved.status().is_success(), "{}", moved.status());
                let back = http
                    .delete(format!("{url}/__sim/clock"))
                    .send()
                    .await
                    .expect("the simulator answers");
                assert!(back.status().is_success(), "{}", back.status());
            } else {
                assert!(!env.contains_key("SMARTAPI_SIM_URL"));
            }
            let me = env!("CARGO_BIN_EXE_pinnacle-under-test");
            let env_arg = env_file.display().to_string();
            paste(&format!("{me} risk show --env-file {env_arg}")).await;
            paste(&format!("{me} keys status --env-file {env_arg}")).await;
            // Flags that fall back to a variable read the env file too (`keys add --file`
            // from PINNACLE_MASTER_KEY_FILE); the restart below runs with the new key.
            paste(&format!("{me} keys add --env-file {env_arg}")).await;
            let ring = std::fs::read_to_string(&env["PINNACLE_MASTER_KEY_FILE"]).expect("key file");
            assert_eq!(
                ring.lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .count(),
                2,
                "keys add did not append to the dev key file"
            );

            // A restart reuses the demo token and keeps the added key: the rotation onto it
            // then works, and orders still decrypt their credentials.
            let token = env["DEMO_API_TOKEN"].clone();
            drop(child);
            let (_child, banner) = start_dev(&data, nats.url(), &db.url, sim.then(free_port)).await;
            let again = eventually(Duration::from_secs(10), "dev.env rewritten", || async {
                let env = dev_env(&env_file);
                Some(env["DEMO_API_TOKEN"].clone())
            })
            .await;
            assert_eq!(again, token, "a restart issued a new demo token");
            let ring = std::fs::read_to_string(&env["PINNACLE_MASTER_KEY_FILE"]).expect("key file");
            assert!(
                ring.lines().any(|l| l.starts_with("2:")),
                "the restart dropped key 2"
            );
            paste(&format!("{me} keys rotate --env-file {env_arg}")).await;
            let order = commands(&banner)
                .into_iter()
                .find(|c| c.contains(" order place "))
                .expect("the banner's order command");
            tokio::time::sleep(Duration::from_millis(500)).await;
            paste(&order).await;
        }
    })
    .await;
}

/// A simulator address already in use fails `pinnacle dev --smartapi-sim` at once, with
/// an error that names it, rather than a simulator somewhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_address_in_use_fails_the_start_and_names_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let bind = taken.local_addr().expect("address");
    let nats = TestNats::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_pinnacle-under-test"))
        .args(["dev", "--api-bind", "127.0.0.1:0", "--smartapi-sim"])
        .args(["--smartapi-sim-bind", &bind.to_string(), "--data-dir"])
        .arg(dir.path())
        .env("NATS_URL", nats.url())
        .env_remove("DATABASE_URL")
        .env_remove("PINNACLE_ENV_FILE")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("it stops within 60 s")
        .expect("it runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot bind {bind}")),
        "the error names the address: {stderr}"
    );
}
