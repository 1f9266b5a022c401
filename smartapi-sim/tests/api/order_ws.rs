//! The order-update WebSocket: greeting, updates, handshake failures, drop_sockets.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::helpers::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(t: &TestSim, jwt: &str) -> Result<Ws, WsError> {
    let mut req = t.sim.order_ws_url().into_client_request().expect("request");
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {jwt}").parse().expect("header"),
    );
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

#[tokio::test]
async fn greeting_then_updates_for_a_placed_order() {
    let t = spawn().await;
    let tokens = t.login().await;
    let mut ws = connect(&t, &tokens.jwt).await.expect("connect");
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["order-status"], "AB00");
    assert_eq!(hello["user-id"], CLIENT);
    assert_eq!(hello["status-code"], "200");
    assert_eq!(hello["orderData"]["orderid"], "");
    t.sim.set_ltp("NSE", "3045", 80_000);
    t.place(
        &tokens.jwt,
        json!({"ordertype": "LIMIT", "price": "700", "quantity": "4"}),
    )
    .await;
    let pending = next_json(&mut ws).await;
    assert_eq!(pending["order-status"], "AB09");
    let open = next_json(&mut ws).await;
    assert_eq!(open["order-status"], "AB01");
    assert_eq!(open["orderData"]["status"], "open");
    assert_eq!(open["orderData"]["price"], 700.0);
    assert_eq!(open["orderData"]["quantity"], "4");
    t.sim.set_ltp("NSE", "3045", 69_000);
    let done = next_json(&mut ws).await;
    assert_eq!(done["order-status"], "AB05");
    assert_eq!(done["orderData"]["averageprice"], 690.0);
}

#[tokio::test]
async fn handshake_failures_and_drop_sockets() {
    let t = spawn().await;
    let tokens = t.login().await;
    assert!(
        matches!(connect(&t, "garbage").await, Err(WsError::Http(r)) if r.status().as_u16() == 401)
    );
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(connect(&t, &tokens.jwt).await.expect("connect"));
    }
    assert!(
        matches!(connect(&t, &tokens.jwt).await, Err(WsError::Http(r)) if r.status().as_u16() == 429)
    );
    wait_until("three order sockets", || t.sim.order_connections() == 3).await;
    t.sim.drop_sockets();
    wait_until("no order sockets", || t.sim.order_connections() == 0).await;
    t.sim.expire_session(CLIENT);
    assert!(
        matches!(connect(&t, &tokens.jwt).await, Err(WsError::Http(r)) if r.status().as_u16() == 403)
    );
}

#[tokio::test]
async fn shutdown_is_prompt_with_open_sockets() {
    let t = spawn().await;
    let tokens = t.login().await;
    let _ws = connect(&t, &tokens.jwt).await.expect("connect");
    let url = t.sim.rest_url();
    tokio::time::timeout(Duration::from_secs(3), t.sim.shutdown())
        .await
        .expect("shutdown in time");
    assert!(reqwest::get(url).await.is_err(), "nothing listens any more");
}

#[tokio::test]
async fn modify_and_cancel_are_announced() {
    let t = spawn().await;
    let tokens = t.login().await;
    let mut ws = connect(&t, &tokens.jwt).await.expect("connect");
    assert_eq!(next_json(&mut ws).await["order-status"], "AB00");
    t.sim.set_ltp("NSE", "3045", 80_000);
    let v = t
        .place(&tokens.jwt, json!({"ordertype": "LIMIT", "price": "700"}))
        .await;
    let orderid = v["data"]["orderid"].as_str().expect("orderid").to_owned();
    let secure = "/rest/secure/angelbroking/order/v1";
    let m = json!({"variety": "NORMAL", "orderid": orderid, "ordertype": "LIMIT", "price": "705", "quantity": "1"});
    t.post(&format!("{secure}/modifyOrder"), Some(&tokens.jwt), m)
        .await;
    t.post(
        &format!("{secure}/cancelOrder"),
        Some(&tokens.jwt),
        json!({"variety": "NORMAL", "orderid": orderid}),
    )
    .await;
    let mut codes = Vec::new();
    while codes.last().map(String::as_str) != Some("AB02") {
        let msg = next_json(&mut ws).await;
        assert_eq!(msg["orderData"]["orderid"], orderid.as_str());
        codes.push(msg["order-status"].as_str().expect("code").to_owned());
    }
    assert_eq!(codes, ["AB09", "AB01", "AB04", "AB01", "AB02"]);
}
