//! The SmartWebSocketV2 client against a small WebSocket server on `127.0.0.1:0`, built
//! here with tokio-tungstenite (the full SmartAPI simulator is tested separately). Every
//! wait is a poll with a deadline; no test sleeps for synchronisation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pinnacle_smartapi::stream::{
    Backoff, FeedHandle, FeedStream, Instrument, StreamConfig, StreamError, StreamEvent,
    SubscribeError,
};
use pinnacle_smartapi::ticks::{ExchangeType, Mode, Packet};
use secrecy::SecretString;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderMap;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const DEADLINE: Duration = Duration::from_secs(10);

/// One accepted connection: the request headers and the server side of the socket.
struct Conn {
    headers: HeaderMap,
    ws: WebSocketStream<TcpStream>,
}

impl Conn {
    /// The next text frame from the client, skipping `ping` when `skip_ping`.
    async fn next_text(&mut self, skip_ping: bool) -> String {
        loop {
            let msg = timeout(DEADLINE, self.ws.next())
                .await
                .expect("client text in time")
                .expect("socket open")
                .expect("valid frame");
            if let Message::Text(t) = msg {
                if skip_ping && t.as_str() == "ping" {
                    continue;
                }
                return t.as_str().to_owned();
            }
        }
    }

    async fn next_request(&mut self) -> Value {
        serde_json::from_str(&self.next_text(true).await).expect("JSON request")
    }
}

/// Accepts connections; `reject` (when set) answers the upgrade with 401 and this message.
struct Server {
    url: String,
    conns: mpsc::UnboundedReceiver<Conn>,
    reject: Arc<Mutex<Option<String>>>,
    attempts: Arc<Mutex<usize>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/smart-stream", listener.local_addr().expect("addr"));
        let (tx, conns) = mpsc::unbounded_channel();
        let reject: Arc<Mutex<Option<String>>> = Arc::default();
        let attempts: Arc<Mutex<usize>> = Arc::default();
        let (reject2, attempts2) = (reject.clone(), attempts.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                *attempts2.lock().expect("lock") += 1;
                let reject = reject2.lock().expect("lock").clone();
                let seen = Arc::new(Mutex::new(HeaderMap::new()));
                let seen2 = seen.clone();
                // The callback's error type is tungstenite's (large) ErrorResponse.
                #[allow(clippy::result_large_err)]
                let callback = move |req: &Request, resp: Response| {
                    *seen2.lock().expect("lock") = req.headers().clone();
                    match reject {
                        Some(message) => {
                            let mut err = ErrorResponse::new(None);
                            *err.status_mut() = 401.try_into().expect("status");
                            err.headers_mut()
                                .insert("x-error-message", message.parse().expect("header"));
                            Err(err)
                        }
                        None => Ok(resp),
                    }
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await {
                    let headers = seen.lock().expect("lock").clone();
                    let _ = tx.send(Conn { headers, ws });
                }
            }
        });
        Self {
            url,
            conns,
            reject,
            attempts,
        }
    }

    async fn next_conn(&mut self) -> Conn {
        timeout(DEADLINE, self.conns.recv())
            .await
            .expect("client connected in time")
            .expect("server running")
    }

    fn config(&self) -> StreamConfig {
        let mut c = StreamConfig::new("A123456", SecretString::from("feed-token-1"));
        c.url = self.url.clone();
        c.jwt = Some(SecretString::from("Bearer jwt-1"));
        c.api_key = Some(SecretString::from("api-key-1"));
        c.backoff = Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            multiplier: 2.0,
            jitter: 0.2,
        };
        c.stall_timeout = Duration::from_secs(30);
        c
    }
}

/// Waits for the first event matching `pred`, skipping others.
async fn wait_for(
    events: &mut mpsc::Receiver<StreamEvent>,
    pred: impl Fn(&StreamEvent) -> bool,
) -> StreamEvent {
    timeout(DEADLINE, async {
        loop {
            let event = events.recv().await.expect("event stream open");
            if pred(&event) {
                return event;
            }
        }
    })
    .await
    .expect("event in time")
}

fn nse(tokens: &[&str]) -> Vec<Instrument> {
    tokens
        .iter()
        .map(|t| Instrument::new(ExchangeType::NseCm, *t))
        .collect()
}

fn ltp_frame(token: &str, price: i64) -> Vec<u8> {
    let mut f = vec![0u8; 51];
    f[0] = 1;
    f[1] = 1;
    f[2..2 + token.len()].copy_from_slice(token.as_bytes());
    f[43..51].copy_from_slice(&price.to_le_bytes());
    f
}

async fn connected(
    server: &mut Server,
    config: StreamConfig,
) -> (FeedHandle, mpsc::Receiver<StreamEvent>, Conn) {
    let (feed, mut events) = FeedStream::connect(config);
    let conn = server.next_conn().await;
    wait_for(&mut events, |e| *e == StreamEvent::Connected).await;
    (feed, events, conn)
}

#[tokio::test]
async fn sends_handshake_headers_and_delivers_ticks() {
    let mut server = Server::start().await;
    let (feed, mut events, mut conn) = {
        let config = server.config();
        connected(&mut server, config).await
    };
    let h = &conn.headers;
    assert_eq!(h["x-client-code"], "A123456");
    assert_eq!(h["x-feed-token"], "feed-token-1");
    assert_eq!(h["authorization"], "Bearer jwt-1");
    assert_eq!(h["x-api-key"], "api-key-1");

    conn.ws
        .send(Message::binary(ltp_frame("2885", 245_050)))
        .await
        .expect("send");
    conn.ws
        .send(Message::binary(vec![9u8, 1]))
        .await
        .expect("send");
    match wait_for(&mut events, |e| matches!(e, StreamEvent::Tick(_))).await {
        StreamEvent::Tick(Packet::Ltp(p)) => {
            assert_eq!((p.token.as_str(), p.last_traded_price), ("2885", 245_050));
        }
        other => panic!("unexpected {other:?}"),
    }
    let bad = wait_for(&mut events, |e| matches!(e, StreamEvent::BadFrame { .. })).await;
    assert!(matches!(bad, StreamEvent::BadFrame { len: 2, .. }));
    feed.shutdown().await;
}

#[tokio::test]
async fn unauthorised_is_not_retried_until_credentials_change() {
    let mut server = Server::start().await;
    *server.reject.lock().expect("lock") = Some("Invalid Header - Invalid Feed Token".into());
    let (feed, mut events) = FeedStream::connect(server.config());
    let event = wait_for(&mut events, |e| matches!(e, StreamEvent::AuthFailed { .. })).await;
    let StreamEvent::AuthFailed { status, message } = event else {
        unreachable!()
    };
    assert_eq!(status, 401);
    assert_eq!(message, "Invalid Header - Invalid Feed Token");
    assert!(!format!("{message:?}").contains("feed-token-1"));

    *server.reject.lock().expect("lock") = None;
    feed.update_credentials(
        SecretString::from("feed-token-2"),
        Some(SecretString::from("jwt-2")),
    )
    .await
    .expect("update");
    let conn = server.next_conn().await;
    assert_eq!(conn.headers["x-feed-token"], "feed-token-2");
    assert_eq!(conn.headers["authorization"], "jwt-2");
    // Backoff is 20 ms: any retry with the old token would have shown up as an attempt.
    assert_eq!(*server.attempts.lock().expect("lock"), 2);
    wait_for(&mut events, |e| *e == StreamEvent::Connected).await;
}

#[tokio::test]
async fn subscribes_in_batches_and_refuses_over_limit_requests() {
    let mut server = Server::start().await;
    let mut config = server.config();
    config.batch_size = 3;
    let (feed, _events, mut conn) = connected(&mut server, config).await;
    let tokens: Vec<String> = (0..7).map(|i| format!("{}", 1000 + i)).collect();
    let list: Vec<&str> = tokens.iter().map(String::as_str).collect();
    feed.subscribe(Mode::Quote, nse(&list))
        .await
        .expect("subscribe");
    let mut sizes = Vec::new();
    let mut got = Vec::new();
    for _ in 0..3 {
        let req = conn.next_request().await;
        assert_eq!(req["action"], 1);
        assert_eq!(req["params"]["mode"], 2);
        let token_list = &req["params"]["tokenList"][0];
        assert_eq!(token_list["exchangeType"], 1);
        let batch = token_list["tokens"].as_array().expect("tokens");
        sizes.push(batch.len());
        got.extend(batch.iter().filter_map(|t| t.as_str().map(str::to_owned)));
    }
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(got, tokens);

    let many: Vec<Instrument> = (0..1000)
        .map(|i| Instrument::new(ExchangeType::NseFo, i.to_string()))
        .collect();
    assert_eq!(
        feed.subscribe(Mode::Ltp, many).await,
        Err(StreamError::Subscribe(
            SubscribeError::TooManySubscriptions { requested: 1007 }
        ))
    );
    let fo = vec![Instrument::new(ExchangeType::NseFo, "43512")];
    assert_eq!(
        feed.subscribe(Mode::Depth, fo).await,
        Err(StreamError::Subscribe(SubscribeError::DepthExchange(
            ExchangeType::NseFo
        )))
    );
    let depth: Vec<String> = (0..51).map(|i| i.to_string()).collect();
    let depth: Vec<&str> = depth.iter().map(String::as_str).collect();
    assert_eq!(
        feed.subscribe(Mode::Depth, nse(&depth)).await,
        Err(StreamError::Subscribe(SubscribeError::TooManyDepthTokens {
            requested: 51
        }))
    );

    feed.unsubscribe(Mode::Quote, nse(&["1000"]))
        .await
        .expect("unsubscribe");
    let req = conn.next_request().await;
    assert_eq!(req["action"], 0);
    assert_eq!(req["params"]["tokenList"][0]["tokens"][0], "1000");
}

#[tokio::test]
async fn resubscribes_after_the_server_drops_the_connection() {
    let mut server = Server::start().await;
    let (feed, mut events, mut conn) = {
        let config = server.config();
        connected(&mut server, config).await
    };
    feed.subscribe(Mode::Ltp, nse(&["2885", "1594"]))
        .await
        .expect("subscribe");
    feed.subscribe(Mode::SnapQuote, nse(&["3045"]))
        .await
        .expect("subscribe");
    conn.next_request().await;
    conn.next_request().await;
    drop(conn);
    let reason = wait_for(&mut events, |e| {
        matches!(e, StreamEvent::Disconnected { .. })
    })
    .await;
    assert!(matches!(reason, StreamEvent::Disconnected { .. }));

    let mut conn = server.next_conn().await;
    let mut restored = Vec::new();
    for _ in 0..2 {
        let req = conn.next_request().await;
        assert_eq!(req["action"], 1);
        let mode = req["params"]["mode"].as_u64().expect("mode");
        for t in req["params"]["tokenList"][0]["tokens"]
            .as_array()
            .expect("tokens")
        {
            restored.push((mode, t.as_str().expect("token").to_owned()));
        }
    }
    restored.sort();
    assert_eq!(
        restored,
        vec![(1, "1594".into()), (1, "2885".into()), (3, "3045".into())]
    );
    wait_for(&mut events, |e| *e == StreamEvent::Connected).await;
}

#[tokio::test]
async fn heartbeat_pongs_keep_an_idle_connection_alive() {
    let mut server = Server::start().await;
    let mut config = server.config();
    config.heartbeat_interval = Duration::from_millis(30);
    config.stall_timeout = Duration::from_millis(300);
    let (_feed, mut events, mut conn) = connected(&mut server, config).await;
    // Twenty pings answered with pong span twice the stall timeout.
    for _ in 0..20 {
        assert_eq!(conn.next_text(false).await, "ping");
        conn.ws.send(Message::text("pong")).await.expect("pong");
    }
    assert!(events.try_recv().is_err(), "no disconnect, no pong event");
    assert_eq!(*server.attempts.lock().expect("lock"), 1);
}

#[tokio::test]
async fn stall_watchdog_reconnects() {
    let mut server = Server::start().await;
    let mut config = server.config();
    config.heartbeat_interval = Duration::from_secs(60);
    config.stall_timeout = Duration::from_millis(100);
    let (_feed, mut events, _silent) = connected(&mut server, config).await;
    let event = wait_for(&mut events, |e| {
        matches!(e, StreamEvent::Disconnected { .. })
    })
    .await;
    let StreamEvent::Disconnected { reason } = event else {
        unreachable!()
    };
    assert!(reason.starts_with("stalled"), "{reason}");
    let _second = server.next_conn().await;
    wait_for(&mut events, |e| *e == StreamEvent::Connected).await;
}

#[tokio::test]
async fn server_error_json_is_surfaced() {
    let mut server = Server::start().await;
    let (_feed, mut events, mut conn) = {
        let config = server.config();
        connected(&mut server, config).await
    };
    let reply = r#"{"correlationID":"abc","errorCode":"E1002","errorMessage":"Invalid Request. Subscription Limit Exceeded"}"#;
    conn.ws.send(Message::text(reply)).await.expect("send");
    conn.ws.send(Message::text("hello")).await.expect("send");
    let event = wait_for(&mut events, |e| {
        matches!(e, StreamEvent::ServerError { .. })
    })
    .await;
    assert_eq!(
        event,
        StreamEvent::ServerError {
            code: "E1002".into(),
            message: "Invalid Request. Subscription Limit Exceeded".into(),
            correlation_id: Some("abc".into()),
        }
    );
    let text = wait_for(&mut events, |e| matches!(e, StreamEvent::Text(_))).await;
    assert_eq!(text, StreamEvent::Text("hello".into()));
}
