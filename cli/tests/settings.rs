//! `pinnacle serve …` run as the built binary with a malformed enum or time setting: the
//! start fails at once, naming the variable, before anything connects (no NATS or
//! database is needed for the test).

use std::process::{Command, Output};

fn serve(service: &str, vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinnacle"))
        .args(["serve", service])
        .env_clear()
        .envs(vars.iter().copied())
        // Nothing listens here: reaching the network would fail differently.
        .env("NATS_URL", "nats://127.0.0.1:9")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
        .env("RUST_LOG", "off")
        .output()
        .expect("runs the pinnacle binary")
}

fn assert_refused(out: &Output, variable: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(stderr.contains(variable), "{stderr}");
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_malformed_square_off_time_fails_the_worker_start() {
    for bad in ["3pm", "25:00", "15.15"] {
        let out = serve("order-worker", &[("PINNACLE_WORKER_SQUARE_OFF_AT", bad)]);
        assert_refused(&out, "PINNACLE_WORKER_SQUARE_OFF_AT");
    }
}

#[test]
fn an_unknown_feed_or_mode_fails_the_publisher_start() {
    let out = serve("publisher", &[("PINNACLE_MD_FEED", "kafka")]);
    assert_refused(&out, "PINNACLE_MD_FEED");
    let out = serve("publisher", &[("PINNACLE_MD_ANGEL_MODE", "FASTEST")]);
    assert_refused(&out, "PINNACLE_MD_ANGEL_MODE");
}
