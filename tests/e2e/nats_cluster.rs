//! The 3-node cluster config (`nats/cluster.conf` + `nats/auth.conf`): JetStream elects a
//! meta leader and holds R3 streams; a trader is confined to their own subjects; nobody,
//! the admin included, can shorten, delete or purge AUDIT, and only the admin can touch
//! the other streams; each service can do its job.
//!
//! One cluster serves every check (a cluster takes a few seconds to elect its leader).
//! Permission denials are observed the way the server reports them: an
//! `-ERR 'Permissions Violation …'` that async-nats hands to the event callback.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt as _;
use pinnacle_common::subjects;
use pinnacle_tests::cluster::{
    nats_dir, Conn, TestCluster, ADMIN, AUDITOR, NON_ADMINS, ORDER_WORKER, PUBLISHER, SYS,
    TRADER_A, TRADER_B, USER_API,
};

/// How long a message that should arrive may take.
const ARRIVAL: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_confines_traders_and_guards_the_streams() {
    let cluster = TestCluster::start().await.expect("3-node cluster");
    let admin = cluster.connect(0, ADMIN).await.expect("admin");
    let worker = cluster
        .connect(1, ORDER_WORKER)
        .await
        .expect("order-worker");

    // Streams: the admin applies the R3 definitions; a service that starts first creates
    // its stream (R1) itself, and the admin's update then raises it to R3.
    cluster
        .admin_apply_stream(&admin, subjects::AUDIT_STREAM)
        .await
        .expect("AUDIT as R3");
    let worker_js = jetstream::new(worker.client.clone());
    // A cluster formed a moment ago on a loaded machine may answer its first stream
    // create after the client's timeout (which may still have created it): ask again.
    let created = async {
        loop {
            match pinnacle_order_worker::events::ensure_stream(&worker_js).await {
                Ok(()) => break,
                Err(e) => {
                    eprintln!("ORDER_EVENTS not created yet ({e}); again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), created)
        .await
        .expect("the order worker creates ORDER_EVENTS");
    pinnacle_common::audit::ensure_stream(&worker_js)
        .await
        .expect("the order worker finds AUDIT");
    cluster
        .admin_apply_stream(&admin, subjects::ORDER_EVENTS_STREAM)
        .await
        .expect("ORDER_EVENTS raised to R3");
    for stream in [subjects::AUDIT_STREAM, subjects::ORDER_EVENTS_STREAM] {
        let info = admin
            .js_api(&format!("$JS.API.STREAM.INFO.{stream}"), Vec::new())
            .await
            .expect("stream info");
        assert_eq!(info["config"]["num_replicas"], 3, "{stream}: {info}");
    }

    traders_replay_only_their_own_events(&cluster, &worker).await;
    services_do_their_jobs(&cluster, &worker).await;
    audit_chain_works_under_the_permissions(&cluster, &worker).await;
    announcements_work_under_the_permissions(&cluster, &worker).await;
    the_auditor_runs_the_durable_consumer_recipe(&cluster).await;
    generation_register_works_under_the_permissions(&cluster, &admin, &worker).await;
    rate_windows_work_under_the_permissions(&cluster, &admin, &worker).await;
    traders_are_confined(&cluster, &worker).await;
    a_trader_with_its_inbox_prefix_gets_replies(&cluster, &worker).await;
    nobody_shortens_audit(&cluster, &admin).await;
    worker.expect_no_violation().await;
    the_system_account_moves_the_meta_leader(&cluster, &admin).await;
}

/// Meta operations work from the system account's `sys` login, which sees none of the
/// application's subjects; the admin's request, from the application account, gets no
/// answer (the server ignores a meta step-down from a non-system account).
async fn the_system_account_moves_the_meta_leader(cluster: &TestCluster, admin: &Conn) {
    let sys = cluster.connect(2, SYS).await.expect("sys logs in");
    let mut spy = sys.client.subscribe("orders.>").await.expect("subscribe");
    sys.client.flush().await.expect("flush");
    admin
        .client
        .publish(subjects::order(TRADER_A.user, "get"), "{}".into())
        .await
        .expect("publish");
    admin.client.flush().await.expect("flush");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), spy.next())
            .await
            .is_err(),
        "the system account sees application subjects"
    );
    let refused = tokio::time::timeout(
        Duration::from_secs(2),
        admin
            .client
            .request("$JS.API.META.LEADER.STEPDOWN", "{}".into()),
    )
    .await;
    assert!(
        !matches!(&refused, Ok(Ok(reply)) if reply.payload.windows(14).any(|w| w == b"\"success\":true")),
        "the admin stepped the meta leader down"
    );
    let reply = sys
        .js_api("$JS.API.META.LEADER.STEPDOWN", b"{}".to_vec())
        .await
        .expect("sys gets an answer");
    assert_eq!(reply["success"], true, "{reply}");
    cluster
        .wait_for_meta_leader(Duration::from_secs(20))
        .await
        .expect("a new meta leader");
}

/// The replay program in docs/PROTOCOL.md, run verbatim as trader A against all three
/// nodes, prints A's events in order and nothing of B's: it pages through the `events`
/// verb, which the order worker's login serves with a pull consumer of its own under the
/// shipped permissions (the responder below calls the worker's own page reader; the
/// token check in front of it is the handler's, tested in `order_events.rs`). A trader
/// may create no consumer at all: not even one filtered to their own events, since its
/// deliver subject could name anything.
async fn traders_replay_only_their_own_events(cluster: &TestCluster, worker: &Conn) {
    let js = jetstream::new(worker.client.clone());
    let mut expected = Vec::new();
    for (n, (user, status, previous)) in [
        (TRADER_A.user, "NEW", None),
        (TRADER_B.user, "NEW", None),
        (TRADER_A.user, "SUBMITTED", Some("NEW")),
        (TRADER_A.user, "FILLED", Some("SUBMITTED")),
        (TRADER_B.user, "SUBMITTED", Some("NEW")),
    ]
    .into_iter()
    .enumerate()
    {
        let order_id = format!("order-{user}");
        let event = serde_json::json!({
            "event_id": format!("replay-{n}"),
            "ts_ms": n,
            "previous_status": previous,
            "order": {
                "order_id": order_id, "client_order_id": format!("c-{user}"),
                "exchange": "NSE", "symbol": "SBIN-EQ", "side": "BUY", "order_type": "MARKET",
                "quantity": 1, "product": "DELIVERY", "status": status, "filled_quantity": 0,
                "created_at_ms": 1, "updated_at_ms": n,
            },
        });
        let payload = rmp_serde::to_vec_named(&event).expect("msgpack");
        js.publish(subjects::order_events(user), payload.into())
            .await
            .expect("event publish")
            .await
            .expect("event ack");
        if user == TRADER_A.user {
            expected.push(format!(
                "{order_id} {} -> {status}",
                previous.unwrap_or("None")
            ));
        }
    }

    // Something on A's subject that is no event: skipped by the page, not handed on.
    js.publish(subjects::order_events(TRADER_A.user), "not an event".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let responder = tokio::spawn(serve_event_pages(worker.client.clone()));
    let (_dir, script) = documented_program("# replay_events.py");
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let output = tokio::process::Command::new(pinnacle_tests::python())
        .arg(&script)
        .env("PINNACLE_USER_ID", TRADER_A.user)
        .env("PINNACLE_API_TOKEN", "pnk_checked_by_the_handler")
        .env("NATS_URL", urls.join(","))
        .env("NATS_USER", TRADER_A.user)
        .env("NATS_PASSWORD", TRADER_A.password)
        .output()
        .await
        .expect("python runs");
    responder.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the replay program failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, expected, "trader A's replay");

    let trader = cluster.connect(0, TRADER_A).await.expect("trader A");
    let own = format!("events.orders.{}", TRADER_A.user);
    // A push consumer of A's own events that would deliver them into the audit trail.
    let config = serde_json::to_vec(&serde_json::json!({
        "stream_name": "ORDER_EVENTS",
        "config": {
            "name": "mine",
            "filter_subject": own,
            "deliver_subject": format!("audit.credential.{}", TRADER_B.user),
            "ack_policy": "none",
        },
    }))
    .expect("json");
    for subject in [
        format!("$JS.API.CONSUMER.CREATE.ORDER_EVENTS.mine.{own}"),
        format!(
            "$JS.API.CONSUMER.CREATE.ORDER_EVENTS.steal.events.orders.{}",
            TRADER_B.user
        ),
        "$JS.API.CONSUMER.CREATE.ORDER_EVENTS".to_string(),
        "$JS.API.CONSUMER.DURABLE.CREATE.ORDER_EVENTS.mine".to_string(),
        format!(
            "$JS.API.CONSUMER.CREATE.AUDIT.mine.audit.credential.{}",
            TRADER_A.user
        ),
        "$JS.FC.ORDER_EVENTS.mine.1.1".to_string(),
        "$JS.API.STREAM.NAMES".to_string(),
    ] {
        trader
            .client
            .publish(subject.clone(), config.clone().into())
            .await
            .expect("publish");
        trader.expect_violation("Publish", &subject).await;
    }
}

/// Answers `orders.<user>.events` on the worker's login with the worker's page reader,
/// for the user in the subject.
async fn serve_event_pages(client: async_nats::Client) {
    use pinnacle_common::codec::{self, Encoding};
    let history = pinnacle_order_worker::history::History::new(jetstream::new(client.clone()));
    let mut requests = client
        .queue_subscribe(
            subjects::ORDERS_ALL,
            subjects::ORDER_WORKER_QUEUE.to_string(),
        )
        .await
        .expect("the worker may take order requests");
    while let Some(message) = requests.next().await {
        let (Some(reply), Some(order)) = (
            message.reply.clone(),
            subjects::parse_order(&message.subject),
        ) else {
            continue;
        };
        let request = if message.payload.is_empty() {
            Ok(Default::default())
        } else {
            Encoding::MsgPack.decode(&message.payload)
        };
        let request = request.expect("a page request");
        let page = history.page(order.user_token, &request).await;
        let mut hdrs = async_nats::HeaderMap::new();
        let (payload, _) = codec::encode_reply(Encoding::MsgPack, page, &mut hdrs).expect("encode");
        client
            .publish_with_headers(reply, hdrs, payload)
            .await
            .expect("reply");
    }
}

/// A program from docs/PROTOCOL.md, by its first line, written to a temporary file.
fn documented_program(first_line: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let protocol = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md"),
    )
    .expect("docs/PROTOCOL.md");
    let program = protocol
        .split("```python\n")
        .find(|block| block.starts_with(first_line))
        .and_then(|block| block.split("```").next())
        .unwrap_or_else(|| panic!("no `{first_line}` program in docs/PROTOCOL.md"));
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("program.py");
    std::fs::write(&script, program).expect("write the program");
    (dir, script)
}

/// The durable-consumer program in docs/PROTOCOL.md, run verbatim as the auditor: the
/// first run prints the audit events, a second run resumes after them and prints none.
async fn the_auditor_runs_the_durable_consumer_recipe(cluster: &TestCluster) {
    let (_dir, script) = documented_program("# audit_consumer.py");
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let run = || {
        tokio::process::Command::new(pinnacle_tests::python())
            .arg(&script)
            .env("NATS_URL", urls.join(","))
            .env("NATS_USER", AUDITOR.user)
            .env("NATS_PASSWORD", AUDITOR.password)
            .output()
    };
    let first = run().await.expect("python runs");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "the audit consumer failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.lines().any(|l| l.contains("chain-probe")),
        "no audit event printed: {stdout}"
    );
    let second = run().await.expect("python runs");
    assert!(
        second.status.success(),
        "the second run failed: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&second.stdout),
        "",
        "the durable consumer did not resume after what it acknowledged"
    );
}

/// Pinnacle's own client, configured as a trader with `NATS_INBOX_PREFIX`, gets replies
/// under the only inbox the trader may subscribe to.
async fn a_trader_with_its_inbox_prefix_gets_replies(cluster: &TestCluster, worker: &Conn) {
    let subject = subjects::order(TRADER_A.user, "get");
    let mut requests = worker
        .client
        .queue_subscribe(subject.clone(), subjects::ORDER_WORKER_QUEUE.into())
        .await
        .expect("subscribe");
    worker.client.flush().await.expect("flush");
    let responder = worker.client.clone();
    let answer = tokio::spawn(async move {
        if let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                responder
                    .publish(reply, "pong".into())
                    .await
                    .expect("reply");
                responder.flush().await.expect("flush");
            }
        }
    });
    let settings = pinnacle_common::config::NatsSettings {
        user: Some(TRADER_A.user.into()),
        password: Some(TRADER_A.password.to_string().into()),
        inbox_prefix: Some(format!("_INBOX.{}", TRADER_A.user)),
        // The responder's node: interest reaches the other nodes only after a moment.
        ..pinnacle_common::config::NatsSettings::for_url(cluster.url(1))
    };
    let trader = pinnacle_common::nats::connect(&settings, "trader-probe")
        .await
        .expect("the trader connects");
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        trader.request(subject, "{}".into()),
    )
    .await
    .expect("a reply in time")
    .expect("a reply");
    assert_eq!(&reply.payload[..], b"pong");
    answer.await.expect("responder");
}

/// The order worker answers requests in its queue group and stores audit and lifecycle
/// events; the user API reads a user's audit trail; the publisher serves `md.req.>` and
/// publishes ticks.
async fn services_do_their_jobs(cluster: &TestCluster, worker: &Conn) {
    let js = jetstream::new(worker.client.clone());
    let audit_subject = subjects::audit_credential(TRADER_A.user);
    js.publish(audit_subject.clone(), "probe".into())
        .await
        .expect("audit publish")
        .await
        .expect("audit ack from the R3 stream");
    js.publish(subjects::order_events(TRADER_A.user), "event".into())
        .await
        .expect("event publish")
        .await
        .expect("event ack");

    // The user API reads the trail back as `AuditLog::read_user` does: an ordered consumer.
    let user_api = cluster.connect(2, USER_API).await.expect("user-api");
    let stream = jetstream::new(user_api.client.clone())
        .get_stream(subjects::AUDIT_STREAM)
        .await
        .expect("user-api sees AUDIT");
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: audit_subject,
            ..Default::default()
        })
        .await;
    user_api.expect_no_violation().await;
    let consumer = consumer.expect("user-api creates an ordered consumer");
    user_api.expect_no_violation().await;
    let mut messages = consumer.messages().await.expect("messages");
    let first = tokio::time::timeout(ARRIVAL, messages.next())
        .await
        .expect("an audit event in time")
        .expect("stream open")
        .expect("message");
    assert_eq!(&first.payload[..], b"probe");
    user_api.expect_no_violation().await;

    // The auditor reads too, but writes nothing.
    let auditor = cluster.connect(0, AUDITOR).await.expect("auditor");
    jetstream::new(auditor.client.clone())
        .get_stream(subjects::AUDIT_STREAM)
        .await
        .expect("auditor sees AUDIT");
    auditor.expect_no_violation().await;
    auditor
        .client
        .publish(subjects::audit_credential(TRADER_B.user), "forged".into())
        .await
        .expect("publish");
    auditor
        .expect_violation("Publish", &subjects::audit_credential(TRADER_B.user))
        .await;
}

/// The user API announces a cache invalidation and a token revocation, each confirmed by
/// the server (`pinnacle.barrier`, answered "no responders"), and an order worker on
/// another node receives both; neither side breaks a permission.
async fn announcements_work_under_the_permissions(cluster: &TestCluster, worker: &Conn) {
    use pinnacle_common::invalidate::{announce, publish_confirmed, Invalidation};
    use pinnacle_common::nats::handled_by_server;
    let mut changes = worker
        .client
        .subscribe(subjects::CACHE_INVALIDATE)
        .await
        .expect("subscribe");
    let mut revoked = worker
        .client
        .subscribe(subjects::TOKENS_REVOKED)
        .await
        .expect("subscribe");
    worker.client.flush().await.expect("flush");
    let user_api = cluster.connect(2, USER_API).await.expect("user-api");
    handled_by_server(&user_api.client)
        .await
        .expect("the server answers the barrier under the user API's permissions");
    // The worker's subscriptions reach node 2 over the routes; retry until they have.
    let change = Invalidation::Limits {
        user_id: "announce-probe".into(),
    };
    until_received(&mut changes, "a cache invalidation", || {
        let (client, change) = (user_api.client.clone(), change.clone());
        async move { announce(&client, &change).await }
    })
    .await;
    until_received(&mut revoked, "a token revocation", || {
        let client = user_api.client.clone();
        async move {
            let span = tracing::Span::none();
            publish_confirmed(&client, &span, subjects::TOKENS_REVOKED, "tok-probe".into())
                .await
                .expect("the user API may announce revocations");
        }
    })
    .await;
    user_api.expect_no_violation().await;
    worker.expect_no_violation().await;
}

/// Two writers (order worker and user API logins) append to one audit chain, the second
/// re-reading the tip the first left (`STREAM.MSG.GET`), and the auditor verifies it.
async fn audit_chain_works_under_the_permissions(cluster: &TestCluster, worker: &Conn) {
    use pinnacle_common::audit::AuditLog;
    use pinnacle_common::model::{AuditEvent, AuditOutcome};
    let vault = std::sync::Arc::new(pinnacle_common::crypto::Vault::new(1, &[3u8; 32]));
    let user_api = cluster.connect(1, USER_API).await.expect("user-api");
    let event = |n: u32| AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        ts_ms: 0,
        actor: "cluster-test".into(),
        token_id: None,
        user_id: "chain-probe".into(),
        broker_account_id: "acc".into(),
        fields: vec![],
        purpose: "test.cluster".into(),
        request_id: n.to_string(),
        trace_id: None,
        outcome: AuditOutcome::Authorized,
        generation: None,
        reason: None,
    };
    for (n, conn) in [worker, &user_api, worker].into_iter().enumerate() {
        let log = AuditLog::new(conn.client.clone(), ARRIVAL, vault.clone());
        log.record(&event(n as u32))
            .await
            .unwrap_or_else(|e| panic!("{} appends to the chain: {e}", conn.user));
        conn.expect_no_violation().await;
    }
    let auditor = cluster.connect(2, AUDITOR).await.expect("auditor");
    let report = pinnacle_cli::audit::verify(
        auditor.client.clone(),
        None,
        &vault,
        &pinnacle_cli::audit::VerifyOptions {
            user: Some("chain-probe".into()),
            ..Default::default()
        },
    )
    .await
    .expect("the auditor reads the chain");
    auditor.expect_no_violation().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.events, 3);
}

/// The credential generation register (an R3 KV bucket from `nats/streams`): the user API
/// advances it, the order worker reads, watches and advances it, the auditor reads it, and
/// neither the auditor nor a trader can write it.
async fn generation_register_works_under_the_permissions(
    cluster: &TestCluster,
    admin: &Conn,
    worker: &Conn,
) {
    use pinnacle_common::keystore::generations::{self, CheckError, Standing};
    use pinnacle_common::keystore::Register;
    cluster
        .admin_apply_stream(admin, subjects::CREDENTIAL_GENERATIONS_STREAM)
        .await
        .expect("the register bucket as R3");
    let account = "acct-perm";
    let user_api = cluster.connect(2, USER_API).await.expect("user-api");
    let api = Register::new(user_api.client.clone(), ARRIVAL);
    assert_eq!(api.advance(account, 3).await.expect("user-api advances"), 3);
    user_api.expect_no_violation().await;

    let register = Register::new(worker.client.clone(), ARRIVAL);
    assert_eq!(
        register.check(account, 3).await.expect("the worker reads"),
        Standing::Current
    );
    assert!(matches!(
        register.check(account, 2).await,
        Err(CheckError::RolledBack {
            row: 2,
            register: 3
        })
    ));
    assert_eq!(
        register.advance(account, 4).await.expect("worker advances"),
        4
    );
    // The worker's watch brings the user API's next advance into its copy.
    assert_eq!(api.advance(account, 5).await.expect("user-api advances"), 5);
    pinnacle_tests::eventually(ARRIVAL, "the watch delivers", || async {
        matches!(
            register.check(account, 4).await,
            Err(CheckError::RolledBack { register: 5, .. })
        )
        .then_some(())
    })
    .await;
    worker.expect_no_violation().await;
    user_api.expect_no_violation().await;

    let auditor = cluster.connect(0, AUDITOR).await.expect("auditor");
    let store = jetstream::new(auditor.client.clone())
        .get_key_value(subjects::CREDENTIAL_GENERATIONS_BUCKET)
        .await
        .expect("the auditor opens the bucket");
    assert_eq!(
        generations::read(&store, account)
            .await
            .expect("auditor reads"),
        Some(5)
    );
    auditor.expect_no_violation().await;
    let key = format!("$KV.{}.{account}", subjects::CREDENTIAL_GENERATIONS_BUCKET);
    auditor
        .client
        .publish(key.clone(), "1".into())
        .await
        .expect("publish");
    auditor.expect_violation("Publish", &key).await;
    let trader = cluster.connect(1, TRADER_A).await.expect("trader");
    trader
        .client
        .publish(key.clone(), "1".into())
        .await
        .expect("publish");
    trader.expect_violation("Publish", &key).await;
    assert_eq!(
        generations::read(&store, account).await.expect("read"),
        Some(5),
        "nobody but the services moved it"
    );
}

/// The SmartAPI rate windows (an R3 KV bucket from `nats/streams`): an order worker
/// counts sends in them and sees the window close; a trader cannot write them.
async fn rate_windows_work_under_the_permissions(
    cluster: &TestCluster,
    admin: &Conn,
    worker: &Conn,
) {
    use pinnacle_smartapi::limits::shared::{KvWindows, SharedWindows};
    use pinnacle_smartapi::limits::Bucket;
    cluster
        .admin_apply_stream(admin, subjects::SMARTAPI_RATE_STREAM)
        .await
        .expect("the rate bucket as R3");
    let windows = KvWindows::new(jetstream::new(worker.client.clone()));
    assert_eq!(
        windows.take("PERM1", Bucket::Login).await.expect("counted"),
        None
    );
    let wait = windows
        .take("PERM1", Bucket::Login)
        .await
        .expect("read")
        .expect("one login a second");
    assert!(wait <= std::time::Duration::from_millis(1_050), "{wait:?}");
    worker.expect_no_violation().await;
    let key = format!("$KV.{}.login.x", subjects::SMARTAPI_RATE_BUCKET);
    let trader = cluster.connect(1, TRADER_A).await.expect("trader");
    trader
        .client
        .publish(key.clone(), "1".into())
        .await
        .expect("publish");
    trader.expect_violation("Publish", &key).await;
}

/// Trader A requests on their own order subjects and market data, hears their own events
/// and ticks; they cannot publish to B's subjects, listen to B's events, snoop other
/// inboxes or order requests, or forge ticks and audit events.
async fn traders_are_confined(cluster: &TestCluster, worker: &Conn) {
    // A stand-in order worker (the worker's login, its queue group) that records what it sees.
    let mut requests = worker
        .client
        .queue_subscribe(subjects::ORDERS_ALL, subjects::ORDER_WORKER_QUEUE.into())
        .await
        .expect("order-workers queue subscription");
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let responder = worker.client.clone();
    let serve = tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let _ = seen_tx.send(message.subject.to_string());
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, "ok".into()).await;
            }
        }
    });
    let publisher = cluster.connect(2, PUBLISHER).await.expect("publisher");
    let mut md_requests = publisher
        .client
        .queue_subscribe(subjects::MD_REQUEST_ALL, subjects::MD_QUEUE.into())
        .await
        .expect("md-service queue subscription");
    let md_responder = publisher.client.clone();
    let md_serve = tokio::spawn(async move {
        while let Some(message) = md_requests.next().await {
            if let Some(reply) = message.reply {
                let _ = md_responder.publish(reply, "last".into()).await;
            }
        }
    });
    // The publisher's micro discovery, as `pinnacle publisher` serves it.
    let discovery_stop = pinnacle_common::shutdown::Shutdown::new();
    let discovery = pinnacle_publisher::service::discovery()
        .serve(publisher.client.clone(), discovery_stop.clone())
        .await
        .expect("the publisher may subscribe to its $SRV subjects");
    publisher.client.flush().await.expect("flush");
    worker.client.flush().await.expect("flush");

    let a = cluster.connect(1, TRADER_A).await.expect("trader A");
    let own = subjects::order(TRADER_A.user, subjects::verbs::PLACE);
    let reply = tokio::time::timeout(ARRIVAL, a.client.request(own.clone(), "{}".into()))
        .await
        .expect("a reply in time")
        .expect("trader A may request on their own subject");
    assert_eq!(&reply.payload[..], b"ok");
    assert_eq!(seen_rx.recv().await.as_deref(), Some(own.as_str()));
    let reply = tokio::time::timeout(ARRIVAL, a.client.request(subjects::md::LAST, "{}".into()))
        .await
        .expect("a reply in time")
        .expect("trader A may ask for market data");
    assert_eq!(&reply.payload[..], b"last");

    // Own events and ticks arrive.
    let mut own_events = a
        .client
        .subscribe(subjects::order_events(TRADER_A.user))
        .await
        .expect("own events");
    let mut ticks = a
        .client
        .subscribe(subjects::MD_TICK_ALL)
        .await
        .expect("ticks");
    a.client.flush().await.expect("flush");
    // Core delivery is at most once, and on a freshly formed cluster the first message
    // after a subscribe was now and then not delivered; so publish until one arrives.
    let events = jetstream::new(worker.client.clone());
    let event_subject = subjects::order_events(TRADER_A.user);
    until_received(&mut own_events, "trader A's event", || async {
        events
            .publish(event_subject.clone(), "filled".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    })
    .await;
    let tick = subjects::tick("NSE", "SBIN-EQ");
    until_received(&mut ticks, "trader A's tick", || async {
        publisher
            .client
            .publish(tick.clone(), "tick".into())
            .await
            .expect("tick");
    })
    .await;
    a.expect_no_violation().await;

    // B's order subject: refused by the server, never seen by the worker.
    let theirs = subjects::order(TRADER_B.user, subjects::verbs::PLACE);
    a.client
        .publish(theirs.clone(), "{}".into())
        .await
        .expect("publish");
    a.expect_violation("Publish", &theirs).await;
    let cancel = subjects::order(TRADER_B.user, subjects::verbs::CANCEL);
    let refused = a
        .client
        .send_request(
            cancel.clone(),
            async_nats::Request::new()
                .payload("{}".into())
                .timeout(Some(Duration::from_millis(500))),
        )
        .await;
    assert!(refused.is_err(), "a request on B's subject gets no reply");
    a.expect_violation("Publish", &cancel).await;

    // Forged ticks, audit events and lifecycle events.
    for subject in [
        tick.clone(),
        subjects::audit_credential(TRADER_A.user),
        subjects::order_events(TRADER_A.user),
    ] {
        a.client
            .publish(subject.clone(), "forged".into())
            .await
            .expect("publish");
        a.expect_violation("Publish", &subject).await;
    }

    // Listening where they must not: B's events, everyone's inboxes and order requests
    // (which carry bearer tokens), and the market-data request queue.
    for subject in [
        subjects::order_events(TRADER_B.user),
        "_INBOX.>".to_string(),
        format!("_INBOX.{}.>", TRADER_B.user),
        subjects::ORDERS_ALL.to_string(),
        subjects::MD_REQUEST_ALL.to_string(),
    ] {
        let _sub = a
            .client
            .subscribe(subject.clone())
            .await
            .expect("subscribe");
        a.expect_violation("Subscription", &subject).await;
    }

    // The worker saw only A's own request, never B's subjects.
    a.client.flush().await.expect("flush");
    worker.client.flush().await.expect("flush");
    while let Ok(subject) = seen_rx.try_recv() {
        assert!(!subject.contains(TRADER_B.user), "worker saw {subject}");
    }
    // Discovery reaches the publisher from another node, and it answers within its rights.
    let admin = cluster.connect(1, ADMIN).await.expect("admin");
    let info = tokio::time::timeout(
        ARRIVAL,
        admin
            .client
            .request("$SRV.INFO.pinnacle-market-data", "".into()),
    )
    .await
    .expect("a discovery reply in time")
    .expect("the publisher answers $SRV.INFO");
    let info: serde_json::Value = serde_json::from_slice(&info.payload).expect("JSON");
    assert_eq!(info["name"], "pinnacle-market-data");
    publisher.expect_no_violation().await;
    discovery_stop.cancel();
    let _ = discovery.await;
    serve.abort();
    md_serve.abort();
}

/// Nobody can shorten, rewrite or remove AUDIT, the admin included: a real
/// `STREAM.UPDATE` with `max_msgs: 10` (which would discard history at once), delete, purge,
/// message delete and restore are permission violations for every user of the shipped
/// config; a CREATE over the existing stream with a limit is refused by JetStream; AUDIT
/// keeps every message. The admin still manages the other streams.
async fn nobody_shortens_audit(cluster: &TestCluster, admin: &Conn) {
    let audit = subjects::AUDIT_STREAM;
    let mut shortened: serde_json::Value = serde_json::from_slice(
        &std::fs::read(nats_dir().join(format!("streams/{audit}.json"))).expect("AUDIT.json"),
    )
    .expect("JSON");
    shortened["max_msgs"] = 10.into();
    let shortened = serde_json::to_vec(&shortened).expect("JSON");
    let before = audit_info(admin).await;
    let destroyers = [
        (format!("$JS.API.STREAM.UPDATE.{audit}"), shortened.clone()),
        (format!("$JS.API.STREAM.DELETE.{audit}"), Vec::new()),
        (format!("$JS.API.STREAM.PURGE.{audit}"), Vec::new()),
        (
            format!("$JS.API.STREAM.MSG.DELETE.{audit}"),
            br#"{"seq":1}"#.to_vec(),
        ),
        (format!("$JS.API.STREAM.RESTORE.{audit}"), b"{}".to_vec()),
    ];
    for (i, login) in std::iter::once(ADMIN).chain(NON_ADMINS).enumerate() {
        let conn = cluster.connect(i % 3, login).await.expect("connect");
        let inbox = conn.client.new_inbox();
        for (subject, body) in &destroyers {
            conn.client
                .publish_with_reply(subject.clone(), inbox.clone(), body.clone().into())
                .await
                .expect("publish");
            conn.expect_violation("Publish", subject).await;
        }
    }
    // Nor the system account's account purge, which would delete every stream of the
    // application account (`$G`: its users are defined outside any `accounts` block).
    let sys = cluster.connect(1, SYS).await.expect("sys");
    let purge_account = "$JS.API.ACCOUNT.PURGE.$G";
    sys.client
        .publish_with_reply(purge_account, sys.client.new_inbox(), "".into())
        .await
        .expect("publish");
    sys.expect_violation("Publish", purge_account).await;

    // Creating it again with a limit is not a way around: JetStream refuses a different
    // configuration under an existing name.
    let create = admin
        .js_api(&format!("$JS.API.STREAM.CREATE.{audit}"), shortened)
        .await
        .expect("the admin's create reaches JetStream");
    assert!(create.get("error").is_some(), "{create}");

    let after = audit_info(admin).await;
    assert!(after.get("error").is_none(), "AUDIT survives: {after}");
    assert_eq!(after["config"]["max_msgs"], -1, "{after}");
    assert_eq!(after["state"]["first_seq"], 1, "{after}");
    assert!(after["state"]["messages"].as_u64() >= Some(1), "{after}");
    assert_eq!(
        after["state"]["messages"], before["state"]["messages"],
        "no message lost"
    );

    // The admin keeps managing ORDER_EVENTS (raised to R3 by an UPDATE above).
    let purge_events = admin
        .js_api(
            &format!("$JS.API.STREAM.PURGE.{}", subjects::ORDER_EVENTS_STREAM),
            Vec::new(),
        )
        .await
        .expect("purge ORDER_EVENTS");
    assert_eq!(purge_events["success"], true, "{purge_events}");
    admin.expect_no_violation().await;
}

/// AUDIT's stream info, as JSON.
async fn audit_info(admin: &Conn) -> serde_json::Value {
    admin
        .js_api(
            &format!("$JS.API.STREAM.INFO.{}", subjects::AUDIT_STREAM),
            Vec::new(),
        )
        .await
        .expect("info")
}

/// Runs `publish` until `sub` receives a message, every 200 ms, for up to [`ARRIVAL`].
async fn until_received<F, Fut>(sub: &mut async_nats::Subscriber, what: &str, publish: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        publish().await;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not arrive"
        );
    }
}
