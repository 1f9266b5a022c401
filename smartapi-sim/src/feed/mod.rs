//! The market-data WebSocket `/smart-stream` (SPEC §8): handshake authentication,
//! subscribe/unsubscribe with the documented limits, heartbeats and binary ticks.

mod subscribe;
pub mod ticks;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::SimAccount;
use crate::jwt::TokenKind;
use crate::rest::header_str;
use crate::state::{lock, ConnGuard, FeedConn, FeedSub, Shared};

/// Connections allowed per client code (SPEC §8.3).
pub const MAX_CONNECTIONS: usize = 3;

/// A refused handshake: its HTTP status and `x-error-message`.
type Refusal = (StatusCode, &'static str);

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("x-error-message", message.to_owned())],
        message.to_owned(),
    )
        .into_response()
}

/// The HTTP upgrade: authenticate from headers or query parameters, then hand over.
pub async fn upgrade(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let query = query.map(|q| q.0).unwrap_or_default();
    let account = match authenticate(&shared, &query, &headers) {
        Ok(account) => account,
        Err((status, message)) => return refuse(status, message),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    match register(&shared, &account) {
        Ok(guard) => ws.on_upgrade(move |socket| run(socket, guard)),
        Err((status, message)) => refuse(status, message),
    }
}

/// The account of a handshake (SPEC §8.2): the client code and feed token, each from a
/// header or a query parameter, an API key if one is given, and a live JWT if an
/// `Authorization` header is sent.
fn authenticate(
    shared: &Shared,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<SimAccount, Refusal> {
    let pick = |header: &str, param: &str| {
        header_str(headers, header).or_else(|| query.get(param).cloned())
    };
    let unauthorized = |message: &'static str| Err((StatusCode::UNAUTHORIZED, message));
    let client_code = pick("x-client-code", "clientCode").unwrap_or_default();
    let Some(account) = shared.account(client_code.trim()) else {
        return unauthorized("Invalid Header - Invalid Client Code");
    };
    let feed_token = pick("x-feed-token", "feedToken").unwrap_or_default();
    let feed_ok = lock(&shared.sessions)
        .verify(&shared.secret, &feed_token, TokenKind::Feed, false)
        .is_ok_and(|c| c.username == account.client_code);
    if !feed_ok {
        return unauthorized("Invalid Header - Invalid Feed Token");
    }
    if let Some(key) = pick("x-api-key", "apiKey").filter(|k| !k.is_empty()) {
        if key != account.api_key {
            return unauthorized("Invalid Header - Invalid API Key");
        }
    }
    if let Some(auth) = header_str(headers, "authorization").filter(|a| !a.trim().is_empty()) {
        let jwt_ok = lock(&shared.sessions)
            .verify(&shared.secret, &auth, TokenKind::Access, true)
            .is_ok_and(|c| c.username == account.client_code);
        if !jwt_ok {
            return unauthorized("Invalid Header - Invalid Auth token");
        }
    }
    Ok(account)
}

/// A new connection of `account`, within [`MAX_CONNECTIONS`]; it is forgotten when the
/// guard drops.
fn register(shared: &Arc<Shared>, account: &SimAccount) -> Result<ConnGuard, Refusal> {
    let id = shared.next_conn_id();
    let mut feeds = lock(&shared.feeds);
    if feeds
        .values()
        .filter(|c| c.client_code == account.client_code)
        .count()
        >= MAX_CONNECTIONS
    {
        return Err((StatusCode::TOO_MANY_REQUESTS, "Connection limit exceeded"));
    }
    feeds.insert(
        id,
        FeedConn {
            client_code: account.client_code.clone(),
            ..FeedConn::default()
        },
    );
    Ok(ConnGuard {
        shared: shared.clone(),
        id,
        feed: true,
    })
}

/// One socket's life: requests in, ticks out, until either side closes.
async fn run(mut socket: WebSocket, guard: ConnGuard) {
    let shared = guard.shared.clone();
    let id = guard.id;
    let mut kill = shared.kill.subscribe();
    kill.borrow_and_update();
    let mut tick = shared.tick.subscribe();
    tick.borrow_and_update();
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let outgoing = match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) if t.trim().eq_ignore_ascii_case("ping") => vec![Message::Text("pong".into())],
                    Some(Ok(Message::Text(t))) => subscribe::handle(&shared, id, t.as_str()),
                    Some(Ok(Message::Binary(b))) => subscribe::handle(&shared, id, &String::from_utf8_lossy(&b)),
                    // Control pings are answered by the WebSocket layer itself.
                    Some(Ok(_)) => Vec::new(),
                };
                if send_all(&mut socket, outgoing).await.is_err() {
                    break;
                }
            }
            changed = tick.changed() => {
                if changed.is_err() || send_all(&mut socket, current_ticks(&shared, id)).await.is_err() {
                    break;
                }
            }
            _ = kill.changed() => {
                let frame = CloseFrame { code: 1001, reason: "server going away".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    drop(guard);
}

async fn send_all(socket: &mut WebSocket, messages: Vec<Message>) -> Result<(), axum::Error> {
    for m in messages {
        socket.send(m).await?;
    }
    Ok(())
}

/// One packet per (token, mode) subscribed on connection `id`.
fn current_ticks(shared: &Shared, id: u64) -> Vec<Message> {
    let subs: Vec<FeedSub> = lock(&shared.feeds)
        .get(&id)
        .map(|c| c.subs.iter().cloned().collect())
        .unwrap_or_default();
    ticks::packets(shared, &subs)
}
