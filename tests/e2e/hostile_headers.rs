//! No message, whatever its headers, takes a service off NATS for longer than
//! [`ANSWER_BOUND`], or loses the replies of requests in flight.
//!
//! async-nats before 0.52 panicked in its connection reader on a header value with a bare
//! `\r` (nats-io/nats.rs PR #1612): the connection handler died, and the supervisor
//! rebuilt the connection, dropping every request the service held. 0.52 (PR #1673)
//! replaces the `\r` with a space; it still drops the connection (then reconnects) on a
//! non-UTF-8 value or a header line without a colon. The client library cannot even build
//! such headers, so this test writes the NATS protocol by hand (`HPUB`) to every subject a
//! service subscribes to, then checks that every service answers a valid request within
//! the bound, that an order waiting in the worker meanwhile is answered, that no
//! connection needed a rebuild, and that `/healthz` and `/readyz` said so truthfully. The
//! supervisor that rebuilds a dead connection is tested with a handler that gives up.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pinnacle_common::codec::Encoding;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::subjects::{self, md, verbs};
use pinnacle_tests::{Backend, TestStack, TestUser};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How soon every service must answer a valid request after the attack.
const ANSWER_BOUND: Duration = Duration::from_secs(5);

/// The malformed header blocks, by name.
const HOSTILE: &[(&str, &[u8])] = &[
    // Panicked async-nats 0.51's reader (the handler died for good); a space since 0.52.
    ("bare CR in a value", b"NATS/1.0\r\nX-Evil: a\rb\r\n\r\n"),
    // Make async-nats drop the message and reconnect.
    (
        "non-UTF-8 value",
        b"NATS/1.0\r\nX-Evil: \xff\xfe\xfd\r\n\r\n",
    ),
    ("line without a colon", b"NATS/1.0\r\nno-colon-here\r\n\r\n"),
    ("name with a space", b"NATS/1.0\r\nBad Name: v\r\n\r\n"),
];

/// A bare protocol connection to nats-server, for bytes async-nats refuses to send.
struct RawConnection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl RawConnection {
    async fn open(url: &str) -> Self {
        let address = url.trim_start_matches("nats://");
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("TCP connect");
        let (read, writer) = stream.into_split();
        let mut connection = Self {
            reader: BufReader::new(read),
            writer,
        };
        let info = connection.line().await;
        assert!(info.starts_with("INFO "), "{info}");
        connection
            .send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1,\"name\":\"hostile\"}\r\n")
            .await;
        connection
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(5), self.reader.read_line(&mut line))
            .await
            .expect("a protocol line within 5 s")
            .expect("read");
        line
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// `HPUB subject reply <header bytes> <total bytes>`, with `headers` sent verbatim.
    async fn hpub(&mut self, subject: &str, headers: &[u8], payload: &[u8]) {
        let mut frame = format!(
            "HPUB {subject} _INBOX.hostile.reply {} {}\r\n",
            headers.len(),
            headers.len() + payload.len()
        )
        .into_bytes();
        frame.extend_from_slice(headers);
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.send(&frame).await;
    }

    /// Waits until the server has processed everything sent so far.
    async fn ping(&mut self) {
        self.send(b"PING\r\n").await;
        loop {
            let line = self.line().await;
            assert!(!line.starts_with("-ERR"), "the server refused: {line}");
            if line.starts_with("PONG") {
                return;
            }
        }
    }
}

/// Every subject a Pinnacle service subscribes to, for `user` (and another user's).
fn service_subjects(user: &TestUser) -> Vec<String> {
    let mut all: Vec<String> = verbs::ALL
        .iter()
        .map(|verb| subjects::order(&user.id, verb))
        .collect();
    all.push(subjects::order("someone-else", verbs::PLACE));
    all.extend(
        [
            md::LAST,
            md::SNAPSHOT,
            md::CANDLES,
            md::SYMBOLS_SEARCH,
            md::SYMBOLS_LOOKUP,
            md::STATUS,
        ]
        .map(str::to_string),
    );
    for verb in ["PING", "INFO", "STATS"] {
        all.push(format!("$SRV.{verb}"));
        all.push(format!("$SRV.{verb}.pinnacle-orders"));
        all.push(format!("$SRV.{verb}.pinnacle-market-data"));
    }
    // The worker's paper broker and matcher follow ticks and order events too.
    all.push(subjects::tick("NSE", "SBIN-EQ"));
    all.push(format!("{}.{}.x", "events.orders", user.id));
    all
}

/// Polls `probe` until it answers, failing past [`ANSWER_BOUND`]; returns how long it took.
async fn answers_within_bound<F, Fut>(what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let started = Instant::now();
    loop {
        if probe().await.is_some() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < ANSWER_BOUND,
            "{what} did not answer within {ANSWER_BOUND:?} of the attack"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One request with a short timeout; the reply decoded as MessagePack.
async fn try_request(
    stack: &TestStack,
    subject: String,
    token: Option<&str>,
    body: Value,
) -> Option<Value> {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(token) = token {
        headers.insert("Authorization", format!("Bearer {token}").as_str());
    }
    headers.insert("Content-Type", Encoding::MsgPack.content_type());
    let payload = Bytes::from(rmp_serde::to_vec_named(&body).expect("encode"));
    let reply = tokio::time::timeout(
        Duration::from_millis(300),
        stack.client.request_with_headers(subject, headers, payload),
    )
    .await
    .ok()?
    .ok()?;
    rmp_serde::from_slice(&reply.payload).ok()
}

/// Every service answers a valid request; returns the slowest time to answer.
async fn every_service_answers(stack: &TestStack, user: &TestUser) -> Duration {
    let mut slowest = Duration::ZERO;
    let orders = answers_within_bound("the order worker", || async move {
        let reply = try_request(
            stack,
            subjects::order(&user.id, verbs::LIST),
            Some(&user.token),
            json!({}),
        )
        .await?;
        (reply["ok"] == true).then_some(())
    })
    .await;
    slowest = slowest.max(orders);
    let market = answers_within_bound("the market-data service", || async move {
        let reply = try_request(stack, md::STATUS.to_string(), None, json!({})).await?;
        (reply["ok"] == true).then_some(())
    })
    .await;
    slowest = slowest.max(market);
    let discovery = answers_within_bound("$SRV discovery", || async move {
        let reply = tokio::time::timeout(
            Duration::from_secs(1),
            stack
                .client
                .request("$SRV.PING.pinnacle-orders", Bytes::new()),
        )
        .await
        .ok()?
        .ok()?;
        let ping: Value = serde_json::from_slice(&reply.payload).ok()?;
        (ping["name"] == "pinnacle-orders").then_some(())
    })
    .await;
    slowest = slowest.max(discovery);
    let md_discovery = answers_within_bound("$SRV market-data discovery", || async move {
        let reply = tokio::time::timeout(
            Duration::from_secs(1),
            stack
                .client
                .request("$SRV.PING.pinnacle-market-data", Bytes::new()),
        )
        .await
        .ok()?
        .ok()?;
        let ping: Value = serde_json::from_slice(&reply.payload).ok()?;
        (ping["name"] == "pinnacle-market-data").then_some(())
    })
    .await;
    slowest = slowest.max(md_discovery);
    let ready = answers_within_bound("/readyz", || async move {
        let response = stack
            .http
            .get(format!("{}/readyz", stack.api_url))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    slowest.max(ready)
}

/// The user API's view of a probe: status and body.
async fn probe(stack: &TestStack, path: &str) -> (u16, Value) {
    let response = stack
        .http
        .get(format!("{}{path}", stack.api_url))
        .send()
        .await
        .expect("probe");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON probe body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_headers_on_every_service_subject_leave_every_service_answering() {
    let stack = TestStack::start(Backend::Sqlite).await;
    let user = stack.trader("mallory").await;
    stack.wait_for_ticks("SBIN-EQ", 1).await;
    every_service_answers(&stack, &user).await;
    let (status, health) = probe(&stack, "/readyz").await;
    assert_eq!(status, 200, "{health}");
    for service in [
        "pinnacle-order-worker",
        "pinnacle-publisher",
        "pinnacle-user-api",
    ] {
        assert_eq!(health["nats"][service]["state"], "connected", "{health}");
        assert_eq!(health["nats"][service]["rebuilds"], 0, "{health}");
    }

    // An order waits in the worker (the database is locked) while the attack runs.
    let lock = pinnacle_tests::lock_database(stack.db_url()).await;
    let waiting = {
        let (stack, user) = (&stack, &user);
        async move {
            stack
                .place(user, &pinnacle_tests::market("in-flight", "SBIN-EQ", 1))
                .await
        }
    };
    let (waiting, ()) = tokio::join!(waiting, async {
        // On the worker before the first hostile message, waiting for the database.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut raw = RawConnection::open(stack.nats.url()).await;
        for (_, headers) in HOSTILE {
            for subject in &service_subjects(&user) {
                raw.hpub(subject, headers, b"{}").await;
            }
        }
        raw.ping().await;
        lock.release().await;
    });
    assert!(waiting.ok, "the order in flight was answered: {waiting:?}");

    let mut raw = RawConnection::open(stack.nats.url()).await;
    let subjects = service_subjects(&user);
    for (name, headers) in HOSTILE {
        for subject in &subjects {
            raw.hpub(subject, headers, b"{}").await;
        }
        raw.ping().await;
        let slowest = every_service_answers(&stack, &user).await;
        eprintln!(
            "after {name} on {} subjects: every service answered within {slowest:?}",
            subjects.len()
        );
    }

    // No connection handler died: nothing was rebuilt, and the probes are ok.
    let (status, health) = probe(&stack, "/healthz").await;
    assert_eq!(status, 200, "{health}");
    for service in [
        "pinnacle-order-worker",
        "pinnacle-publisher",
        "pinnacle-user-api",
    ] {
        assert_eq!(health["nats"][service]["rebuilds"], 0, "{health}");
        assert_eq!(health["nats"][service]["handler"], "alive", "{health}");
    }
    // A real order still goes through end to end.
    let reply = stack
        .place(
            &user,
            &pinnacle_tests::market("after-hostile", "SBIN-EQ", 1),
        )
        .await;
    assert!(reply.ok, "{reply:?}");
}

/// What async-nats makes of an `Authorization` header written by hand before the worker
/// reads it (docs/PROTOCOL.md, "Headers"): it trims the value and appends continuation
/// lines as they are, so a trailing space or a line folded with a space is the plain
/// header and accepted; one folded with a tab keeps the tab and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_header_is_read_as_the_client_library_unfolds_it() {
    use futures::StreamExt;

    let stack = TestStack::start(Backend::Sqlite).await;
    let user = stack.trader("folding").await;
    stack.wait_for_ticks("SBIN-EQ", 1).await;
    let mut replies = stack
        .client
        .subscribe("_INBOX.hostile.reply")
        .await
        .expect("subscribe");
    stack.client.flush().await.expect("flush");
    let mut raw = RawConnection::open(stack.nats.url()).await;
    let token = &user.token;
    let cases: [(&str, String, Option<&str>); 4] = [
        ("plain", format!("Authorization: Bearer {token}\r\n"), None),
        (
            "trailing space",
            format!("Authorization: Bearer {token} \r\n"),
            None,
        ),
        (
            "folded with a space",
            format!("Authorization: Bearer\r\n {token}\r\n"),
            None,
        ),
        (
            "folded with a tab",
            format!("Authorization: Bearer\r\n\t{token}\r\n"),
            Some("UNAUTHENTICATED"),
        ),
    ];
    for (name, header, expected) in cases {
        let headers = format!("NATS/1.0\r\n{header}\r\n");
        raw.hpub(
            &subjects::order(&user.id, verbs::LIST),
            headers.as_bytes(),
            b"",
        )
        .await;
        raw.ping().await;
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: no reply"))
            .expect("reply");
        let code = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Pinnacle-Error"))
            .map(|v| v.as_str().to_string());
        assert_eq!(code.as_deref(), expected, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_connection_fails_healthz_until_rebuilt() {
    use pinnacle_common::config::NatsSettings;
    use pinnacle_common::health::Health;
    use pinnacle_common::nats::Connections;
    use pinnacle_common::shutdown::Shutdown;
    use pinnacle_common::supervise::{self, Policy, Run, Start};

    // A minimal supervised service on a subject of its own, so the probes can be read
    // while its connection is dead: the rebuild waits until `release` opens. Told `die`,
    // its intake connection gives up (drains and closes), as async-nats's handler does when
    // it stops reconnecting or, before 0.52, when a hostile header panicked it; replies
    // go out on its main connection.
    let nats = pinnacle_tests::TestNats::start();
    let health = Health::new();
    let shutdown = Shutdown::new();
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let incarnations = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = incarnations.clone();
    let start = move |connections: Connections, stop: Shutdown| -> Start<anyhow::Error> {
        let number = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut release = release_rx.clone();
        Box::pin(async move {
            if number > 0 {
                let _ = release.wait_for(|open| *open).await;
            }
            let (client, intake) = (connections.main().clone(), connections.intake().clone());
            let mut requests = intake.subscribe("probe.echo").await?;
            intake.flush().await?;
            let run: Run<anyhow::Error> = Box::pin(async move {
                use futures::StreamExt;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        message = requests.next() => match message {
                            Some(message) if message.payload == "die" => {
                                let _ = intake.drain().await;
                            }
                            Some(message) => if let Some(reply) = message.reply {
                                let _ = client.publish(reply, message.payload).await;
                            },
                            None => return Ok(()),
                        },
                    }
                }
            });
            Ok(run)
        })
    };
    let supervisor = supervise::supervise(
        "probe-service",
        NatsSettings::for_url(nats.url()),
        health.link("probe-service"),
        Policy::default(),
        shutdown.clone(),
        start,
    )
    .await
    .expect("starts");
    let client = async_nats::connect(nats.url()).await.expect("client");
    let (health_ref, client_ref) = (&health, &client);
    let echo = client
        .request("probe.echo", "hi".into())
        .await
        .expect("echo");
    assert_eq!(echo.payload, "hi");
    pinnacle_tests::eventually(Duration::from_secs(5), "ready", || async move {
        (health_ref.readiness().0 == 200).then_some(())
    })
    .await;

    client
        .publish("probe.echo", "die".into())
        .await
        .expect("die");
    let body =
        pinnacle_tests::eventually(Duration::from_secs(5), "healthz to fail", || async move {
            let (status, body) = health_ref.liveness();
            (status == 503).then_some(body)
        })
        .await;
    assert_eq!(body["nats"]["probe-service"]["handler"], "dead", "{body}");
    assert_eq!(health.readiness().0, 503);

    release_tx.send(true).expect("release");
    pinnacle_tests::eventually(
        ANSWER_BOUND,
        "the rebuilt service to answer",
        || async move {
            let reply = tokio::time::timeout(
                Duration::from_millis(500),
                client_ref.request("probe.echo", "again".into()),
            )
            .await
            .ok()?
            .ok()?;
            (reply.payload == "again").then_some(())
        },
    )
    .await;
    let (status, body) = health.readiness();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nats"]["probe-service"]["rebuilds"], 1, "{body}");
    assert_eq!(incarnations.load(std::sync::atomic::Ordering::SeqCst), 2);

    shutdown.cancel();
    supervisor.await.expect("supervisor").expect("clean stop");
}

/// What one trader's load saw while the attack ran.
#[derive(Debug, Default)]
struct Seen {
    /// Client order ids answered `ok`.
    placed: Vec<String>,
    /// Attempts that got no answer in time.
    unanswered: usize,
    /// Attempts refused `AUDIT_UNAVAILABLE` (the worker could not publish its audit event).
    audit_unavailable: usize,
    /// Other retryable refusals.
    refused: usize,
}

/// Places market orders as `user` until `stop`, one at a time and about eight a second,
/// each retried under its client order id (as PROTOCOL.md tells a client to) until it is
/// answered `ok`.
async fn load(
    stack: &TestStack,
    (name, user): &(&str, TestUser),
    stop: &std::sync::atomic::AtomicBool,
) -> Seen {
    use pinnacle_common::model::{OrderReply, Reply};
    let mut seen = Seen::default();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let id = format!("{name}-{n}");
        let order = pinnacle_tests::market(&id, "SBIN-EQ", 1);
        let payload = Encoding::MsgPack.encode(&order).expect("encode");
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{id} was not placed within 30 s"
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Authorization", format!("Bearer {}", user.token).as_str());
            headers.insert("Content-Type", Encoding::MsgPack.content_type());
            let answer = tokio::time::timeout(
                Duration::from_secs(1),
                stack.client.request_with_headers(
                    subjects::order(&user.id, verbs::PLACE),
                    headers,
                    payload.clone(),
                ),
            )
            .await;
            let Ok(Ok(message)) = answer else {
                seen.unanswered += 1;
                continue;
            };
            let reply: Reply<OrderReply> =
                Encoding::MsgPack.decode(&message.payload).expect("a reply");
            match reply.error {
                None => {
                    seen.placed.push(id);
                    // Within the default 9 orders a second per user.
                    tokio::time::sleep(Duration::from_millis(120)).await;
                    break;
                }
                Some(error) if error.code == ErrorCode::AuditUnavailable => {
                    seen.audit_unavailable += 1
                }
                Some(error) if error.code.is_retryable() => {
                    seen.refused += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(error) => panic!("{id} refused for good: {error:?}"),
            }
        }
    }
    seen
}

/// `$SRV` discovery subjects both services answer.
const DISCOVERY: [&str; 4] = [
    "$SRV.PING",
    "$SRV.INFO.pinnacle-orders",
    "$SRV.STATS.pinnacle-market-data",
    "$SRV.PING.pinnacle-orders",
];

/// The probes' view of one service's connection by role (`main`, `intake`).
fn reconnects(health: &Value, service: &str, role: &str) -> u64 {
    health["nats"][service]["connections"][role]["reconnects"]
        .as_u64()
        .unwrap_or_else(|| panic!("{service} has a {role} connection: {health}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_headers_under_load_stop_no_service_from_publishing() {
    let _heavy = pinnacle_tests::heavy().await;
    let stack = TestStack::start(Backend::Sqlite).await;
    let mallory = stack.trader("mallory").await;
    let mut traders = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        traders.push((name, stack.trader(name).await));
    }
    stack.wait_for_ticks("SBIN-EQ", 1).await;
    let (_, before) = probe(&stack, "/healthz").await;

    // Four traders place orders while mallory sends a malformed request every 10 ms, to
    // the order worker, to the market-data service and to their discovery, for two
    // seconds.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let loads = futures::future::join_all(traders.iter().map(|t| load(&stack, t, &stop)));
    let attack = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut raw = RawConnection::open(stack.nats.url()).await;
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(2) {
            let headers = HOSTILE[1 + sent % 2].1;
            raw.hpub(&subjects::order(&mallory.id, verbs::PLACE), headers, b"{}")
                .await;
            raw.hpub(md::LAST, headers, b"{}").await;
            raw.hpub(DISCOVERY[sent % DISCOVERY.len()], headers, b"")
                .await;
            sent += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        raw.ping().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sent
    };
    let (seen, sent) = tokio::join!(loads, attack);

    let (status, after) = probe(&stack, "/healthz").await;
    assert_eq!(status, 200, "{after}");
    for service in ["pinnacle-order-worker", "pinnacle-publisher"] {
        // The attack landed: async-nats dropped the connection requests arrive on...
        assert!(
            reconnects(&after, service, "intake") > reconnects(&before, service, "intake"),
            "{service}'s intake connection never reconnected: {after}"
        );
        // ...and never the one replies, audit events and ticks go out on.
        assert_eq!(
            reconnects(&after, service, "main"),
            reconnects(&before, service, "main"),
            "{service}'s main connection reconnected: {after}"
        );
    }
    for ((name, trader), seen) in traders.iter().zip(&seen) {
        eprintln!(
            "{name}: {} placed, {} unanswered attempts, {} AUDIT_UNAVAILABLE, {} other refusals ({sent} malformed messages)",
            seen.placed.len(),
            seen.unanswered,
            seen.audit_unavailable,
            seen.refused
        );
        assert_eq!(seen.audit_unavailable, 0, "{name}: {seen:?}");
        assert!(!seen.placed.is_empty(), "{name} placed nothing");
        // Each client order id is one order, however many attempts it took.
        assert_eq!(
            stack.order_count(&trader.id).await,
            seen.placed.len() as u64,
            "{name}"
        );
    }
    every_service_answers(&stack, &mallory).await;
}
