//! The shipped NATS configs are valid and start a working server.

#[test]
fn dev_conf_starts_a_jetstream_server() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../nats/dev.conf");
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = pinnacle_cli::nats_server::find_binary().expect("nats-server");
    // Command-line flags override the config's port and store dir, so tests never collide.
    let server = pinnacle_cli::nats_server::NatsServer::start(&binary, dir.path(), &["-c", conf])
        .expect("dev.conf is valid");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        // The KV API fails on servers older than 2.10; this proves the harness's server is new.
        let kv = js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: "probe".into(),
                ..Default::default()
            })
            .await
            .expect("JetStream KV works");
        kv.put("k", "v".into()).await.expect("put");
        let value = kv.get("k").await.expect("get");
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
    });
}

/// Runs `pinnacle nats <args>` with `stdin`; returns (success, stdout, stderr).
fn pinnacle_nats(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pinnacle-under-test"))
        .arg("nats")
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pinnacle runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("pinnacle exits");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `pinnacle nats streams apply` creates the shipped streams, leaves them alone when they
/// match, puts back a field someone changed on ORDER_EVENTS, refuses to update AUDIT (and
/// fails, naming the field), and fails on a broken definition.
#[test]
fn pinnacle_nats_streams_apply_creates_checks_and_repairs_the_streams() {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = pinnacle_cli::nats_server::find_binary().expect("nats-server");
    let server = pinnacle_cli::nats_server::NatsServer::start(&binary, dir.path(), &[])
        .expect("nats-server");
    // The shipped definitions, at one replica for a single server.
    let defs = tempfile::tempdir().expect("definitions");
    for name in ["AUDIT", "ORDER_EVENTS"] {
        let path = format!("{}/../nats/streams/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let mut def: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("definition"))
                .expect("json");
        def["num_replicas"] = 1.into();
        std::fs::write(defs.path().join(format!("{name}.json")), def.to_string()).expect("write");
    }
    let dir_arg = defs.path().to_str().expect("utf-8 path");
    let env = [("NATS_URL", server.url())];
    let apply = || pinnacle_nats(&["streams", "apply", "--dir", dir_arg], &env, "");

    let (ok, out, err) = apply();
    assert!(ok, "{out}{err}");
    assert_eq!(out, "AUDIT: created\nORDER_EVENTS: created\n");
    let (ok, out, err) = apply();
    assert!(ok, "{out}{err}");
    assert_eq!(out, "AUDIT: unchanged\nORDER_EVENTS: unchanged\n");

    // Someone changes a stream's live config behind the definitions' back.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let alter = |stream: &str, change: fn(&mut async_nats::jetstream::stream::Config)| {
        runtime.block_on(async {
            let client = async_nats::connect(server.url()).await.expect("connect");
            let js = async_nats::jetstream::new(client);
            let mut config = js
                .get_stream(stream)
                .await
                .expect("stream")
                .info()
                .await
                .expect("info")
                .config
                .clone();
            change(&mut config);
            js.update_stream(config).await.expect("shortened");
        })
    };

    // Someone shortens ORDER_EVENTS' retention; apply puts it back.
    alter("ORDER_EVENTS", |c| {
        c.max_age = std::time::Duration::from_secs(3600)
    });
    let (ok, out, err) = apply();
    assert!(ok, "{out}{err}");
    assert_eq!(out, "AUDIT: unchanged\nORDER_EVENTS: updated max_age\n");

    // Someone shortens AUDIT (this server has no authorization): apply does not touch it
    // (nobody may update AUDIT), says why, and fails.
    alter("AUDIT", |c| c.max_messages = 10);
    let (ok, out, err) = apply();
    assert!(!ok, "{out}{err}");
    assert_eq!(out, "ORDER_EVENTS: unchanged\n");
    assert!(
        err.contains("AUDIT: differs in max_msgs") && err.contains("break glass"),
        "{err}"
    );

    std::fs::write(defs.path().join("broken.json"), "[1, 2]").expect("write");
    let (ok, _, err) = apply();
    assert!(!ok, "a broken definition fails the command");
    assert!(err.contains("not a stream definition"), "{err}");
}

/// `pinnacle nats passwd` and `pinnacle nats add-trader --password-stdin` hash with bcrypt
/// and never echo the password; a trader added this way can log in.
#[test]
fn pinnacle_nats_hashes_passwords_and_adds_traders() {
    let (ok, out, err) = pinnacle_nats(&["passwd", "--cost", "4"], &[], "hunter2-secret\n");
    assert!(ok, "{err}");
    let hash = out.trim();
    assert!(
        bcrypt::verify("hunter2-secret", hash).expect("a bcrypt hash"),
        "{hash}"
    );
    let (ok, _, err) = pinnacle_nats(&["passwd"], &[], "");
    assert!(!ok && err.contains("no password"), "{err}");

    let dir = tempfile::tempdir().expect("temp dir");
    let nats = pinnacle_tests::cluster::nats_dir();
    for file in ["auth.conf", "trader.conf.tmpl"] {
        std::fs::copy(nats.join(file), dir.path().join(file)).expect("copy");
    }
    let auth = dir.path().join("auth.conf");
    let auth_arg = auth.to_str().expect("utf-8 path");
    let user = "3f1c0000-0000-4000-8000-0000000000cc";
    let add = |user: &str| {
        pinnacle_nats(
            &[
                "add-trader",
                user,
                "--password-stdin",
                "--auth-file",
                auth_arg,
                "--cost",
                "4",
            ],
            &[],
            "trader-secret\n",
        )
    };
    let (ok, out, err) = add(user);
    assert!(ok, "{out}{err}");
    for output in [&out, &err] {
        assert!(!output.contains("trader-secret"), "{output}");
    }
    let text = std::fs::read_to_string(&auth).expect("auth.conf");
    assert!(text.contains(&format!("orders.{user}.>")), "{text}");
    assert!(!text.contains("trader-secret"));
    let (ok, _, err) = add(user);
    assert!(!ok && err.contains("already"), "{err}");
    let (ok, _, err) = add("NOT-A-UUID");
    assert!(!ok && err.contains("lower-case UUID"), "{err}");
    let (ok, _, err) = pinnacle_nats(&["add-trader", user, "--auth-file", auth_arg], &[], "x\n");
    assert!(!ok && err.contains("--password-stdin"), "{err}");
}

/// `nats/single.conf` (one production node with the shipped authorization) starts, the
/// admin creates a stream, a service logs in, and a trader is confined to their subjects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_conf_runs_one_node_with_the_shipped_permissions() {
    use pinnacle_tests::cluster::{self, ADMIN, ORDER_WORKER, TRADER_A, TRADER_B};
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        cluster::nats_dir().join("single.conf"),
        dir.path().join("single.conf"),
    )
    .expect("single.conf");
    cluster::write_auth(dir.path()).expect("auth.conf and passwords");
    let port = pinnacle_tests::free_port();
    let _server = tokio::process::Command::new(
        pinnacle_cli::nats_server::find_binary().expect("nats-server"),
    )
    .arg("-c")
    .arg(dir.path().join("single.conf"))
    .env("PINNACLE_NATS_HOST", "127.0.0.1")
    .env("PINNACLE_NATS_PORT", port.to_string())
    .env("PINNACLE_NATS_HTTP_PORT", "-1")
    .env("PINNACLE_NATS_STORE_DIR", dir.path().join("jetstream"))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .expect("nats-server starts");
    let url = format!("nats://127.0.0.1:{port}");
    let connect = |login: cluster::Login| {
        let url = url.clone();
        async move {
            let mut options = async_nats::ConnectOptions::with_user_and_password(
                login.user.into(),
                login.password.into(),
            )
            .retry_on_initial_connect();
            if login.user == TRADER_A.user {
                options = options.custom_inbox_prefix(format!("_INBOX.{}", login.user));
            }
            tokio::time::timeout(std::time::Duration::from_secs(10), options.connect(url))
                .await
                .expect("connects within 10 s")
                .expect("logs in")
        }
    };
    let admin = connect(ADMIN).await;
    let js = async_nats::jetstream::new(admin.clone());
    js.create_stream(pinnacle_order_worker::events::stream_config(1))
        .await
        .expect("the admin creates ORDER_EVENTS");
    let worker = connect(ORDER_WORKER).await;
    let mut requests = worker
        .queue_subscribe(
            pinnacle_common::subjects::order(TRADER_B.user, "get"),
            pinnacle_common::subjects::ORDER_WORKER_QUEUE.into(),
        )
        .await
        .expect("the worker subscribes");
    worker.flush().await.expect("flush");
    // Trader A may not reach trader B's order subjects: nothing arrives.
    let trader = connect(TRADER_A).await;
    trader
        .publish(
            pinnacle_common::subjects::order(TRADER_B.user, "get"),
            "{}".into(),
        )
        .await
        .expect("publish");
    trader.flush().await.expect("flush");
    use futures::StreamExt as _;
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), requests.next())
            .await
            .is_err(),
        "a trader reached another trader's subject"
    );
}
