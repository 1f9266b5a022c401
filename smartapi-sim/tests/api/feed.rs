//! The market-data WebSocket: handshake auth, subscriptions, limits, heartbeats, ticks.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::helpers::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(t: &TestSim, tokens: &Tokens) -> Ws {
    let mut req = t.sim.feed_url().into_client_request().expect("request");
    let h = req.headers_mut();
    h.insert(
        "Authorization",
        format!("Bearer {}", tokens.jwt).parse().expect("header"),
    );
    h.insert("x-api-key", API_KEY.parse().expect("header"));
    h.insert("x-client-code", CLIENT.parse().expect("header"));
    h.insert("x-feed-token", tokens.feed.parse().expect("header"));
    tokio_tungstenite::connect_async(req)
        .await
        .expect("connect")
        .0
}

/// The next data frame (text or binary), skipping control frames, within 5 s.
async fn next(ws: &mut Ws) -> Message {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("ok");
        if matches!(
            m,
            Message::Text(_) | Message::Binary(_) | Message::Pong(_) | Message::Close(_)
        ) {
            return m;
        }
    }
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        if let Message::Text(t) = next(ws).await {
            return t.to_string();
        }
    }
}

fn sub(action: u8, mode: u8, et: u8, tokens: &[&str]) -> Message {
    let body = json!({"correlationID": "abc123", "action": action, "params": {"mode": mode, "tokenList": [{"exchangeType": et, "tokens": tokens}]}});
    Message::Text(body.to_string().into())
}

fn i64_at(b: &[u8], off: usize) -> i64 {
    i64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

#[tokio::test]
async fn bad_credentials_get_401_with_x_error_message() {
    let t = spawn().await;
    let tokens = t.login().await;
    let url = format!(
        "{}?clientCode={CLIENT}&feedToken=garbage&apiKey={API_KEY}",
        t.sim.feed_url()
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401);
            assert_eq!(
                resp.headers()["x-error-message"],
                "Invalid Header - Invalid Feed Token"
            );
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let url = format!(
        "{}?clientCode=NOBODY&feedToken={}",
        t.sim.feed_url(),
        tokens.feed
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(WsError::Http(resp)) => assert_eq!(
            resp.headers()["x-error-message"],
            "Invalid Header - Invalid Client Code"
        ),
        other => panic!("expected a 401, got {other:?}"),
    }
    // Query-parameter authentication works.
    let url = format!(
        "{}?clientCode={CLIENT}&feedToken={}&apiKey={API_KEY}",
        t.sim.feed_url(),
        tokens.feed
    );
    let (_ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("query auth");
    wait_until("one feed connection", || t.sim.feed_connections() == 1).await;
}

#[tokio::test]
async fn subscribe_gets_packets_of_the_right_size_and_unsubscribe_stops_counting() {
    let t = spawn().await;
    let tokens = t.login().await;
    let mut ws = connect(&t, &tokens).await;
    t.sim.set_ltp("NSE", "3045", 80_000);
    for (mode, len) in [(1u8, 51usize), (2, 123), (3, 379), (4, 443)] {
        ws.send(sub(1, mode, 1, &["3045"])).await.expect("send");
        loop {
            let Message::Binary(b) = next(&mut ws).await else {
                continue;
            };
            if b[0] != mode {
                continue;
            }
            assert_eq!(b.len(), len, "mode {mode}");
            assert_eq!(b[1], 1);
            assert_eq!(&b[2..6], b"3045");
            assert!(b[6..27].iter().all(|x| *x == 0));
            if mode != 4 {
                let ltp = i64_at(&b, 43);
                assert!((79_000..=81_000).contains(&ltp), "ltp {ltp}");
                assert!(
                    i64_at(&b, 35) > 1_600_000_000_000,
                    "exchange timestamp in ms"
                );
            }
            if mode == 3 {
                assert!(
                    (1_600_000_000..4_000_000_000).contains(&i64_at(&b, 123)),
                    "last traded time in s"
                );
                assert_eq!(
                    u16::from_le_bytes([b[147], b[148]]),
                    1,
                    "first best-five entry is a buy"
                );
            }
            break;
        }
    }
    wait_until("4 subscriptions", || t.sim.subscriptions(CLIENT) == 4).await;
    ws.send(sub(1, 1, 1, &["3045"])).await.expect("duplicate");
    ws.send(sub(0, 4, 1, &["3045"])).await.expect("unsubscribe");
    wait_until("3 subscriptions", || t.sim.subscriptions(CLIENT) == 3).await;
}

#[tokio::test]
async fn sequence_numbers_increase_and_cds_uses_the_1e7_divisor() {
    let t = spawn().await;
    let tokens = t.login().await;
    let mut ws = connect(&t, &tokens).await;
    ws.send(sub(1, 1, 13, &["1167"])).await.expect("send");
    ws.send(sub(1, 1, 1, &["99926000"])).await.expect("send");
    let mut last_seq = -1;
    let mut seen_cds = 0;
    let mut seen_index = false;
    while seen_cds < 3 || !seen_index {
        let Message::Binary(b) = next(&mut ws).await else {
            continue;
        };
        if b[1] == 13 {
            let seq = i64_at(&b, 27);
            assert!(seq > last_seq, "sequence {seq} after {last_seq}");
            last_seq = seq;
            let ltp = i64_at(&b, 43);
            assert!(
                (700_000_000..1_000_000_000).contains(&ltp),
                "USDINR ≈ 83.5 × 10^7, got {ltp}"
            );
            seen_cds += 1;
        } else {
            assert_eq!(i64_at(&b, 27), 0, "indices carry no sequence number");
            seen_index = true;
        }
    }
}

#[tokio::test]
async fn over_1000_subscriptions_is_e1002_and_keeps_existing() {
    let t = spawn().await;
    let tokens = t.login().await;
    let mut ws = connect(&t, &tokens).await;
    let many: Vec<String> = (0..1000).map(|i| format!("9{i:04}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    ws.send(sub(1, 1, 1, &refs)).await.expect("send");
    wait_until("1000 subscriptions", || t.sim.subscriptions(CLIENT) == 1000).await;
    ws.send(sub(1, 2, 1, &["3045"])).await.expect("send");
    let err: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).expect("json");
    assert_eq!(err["errorCode"], "E1002");
    assert_eq!(err["correlationID"], "abc123");
    assert_eq!(t.sim.subscriptions(CLIENT), 1000);
    ws.send(Message::Text("{\"action\":1}".into()))
        .await
        .expect("send");
    let err: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).expect("json");
    assert_eq!(err["errorCode"], "E1001");
    ws.send(sub(1, 4, 2, &["35001"]))
        .await
        .expect("depth on NFO");
    let err: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).expect("json");
    assert_eq!(err["errorCode"], "E1001");
    // DEPTH allows 50 tokens per connection.
    let mut second = connect(&t, &tokens).await;
    let fifty_one: Vec<String> = (0..51).map(|i| format!("8{i:04}")).collect();
    let refs: Vec<&str> = fifty_one.iter().map(String::as_str).collect();
    second.send(sub(1, 4, 1, &refs)).await.expect("send");
    let err: serde_json::Value = serde_json::from_str(&next_text(&mut second).await).expect("json");
    assert_eq!(err["errorCode"], "E1002");
    second.send(sub(1, 4, 1, &refs[..50])).await.expect("send");
    wait_until("1050 subscriptions", || t.sim.subscriptions(CLIENT) == 1050).await;
}

#[tokio::test]
async fn text_ping_and_control_ping_are_answered() {
    let t = spawn().await;
    let tokens = t.login().await;
    let mut ws = connect(&t, &tokens).await;
    ws.send(Message::Text("ping".into())).await.expect("send");
    assert_eq!(next_text(&mut ws).await, "pong");
    ws.send(Message::Ping(b"hb".to_vec().into()))
        .await
        .expect("send");
    loop {
        if let Message::Pong(p) = next(&mut ws).await {
            assert_eq!(&p[..], b"hb");
            break;
        }
    }
}

#[tokio::test]
async fn three_connections_per_client_and_drop_sockets_closes_them() {
    let t = spawn().await;
    let tokens = t.login().await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(connect(&t, &tokens).await);
    }
    let url = format!(
        "{}?clientCode={CLIENT}&feedToken={}",
        t.sim.feed_url(),
        tokens.feed
    );
    assert!(
        matches!(tokio_tungstenite::connect_async(url).await, Err(WsError::Http(r)) if r.status().as_u16() == 429)
    );
    wait_until("three feed sockets", || t.sim.feed_connections() == 3).await;
    t.sim.drop_sockets();
    for ws in &mut sockets {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("closed in time")
            {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    wait_until("no feed sockets", || t.sim.feed_connections() == 0).await;
}
