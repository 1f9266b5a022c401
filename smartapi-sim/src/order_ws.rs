//! The order-update WebSocket `/smart-order-update` (SPEC §9): Bearer authentication,
//! the AB00 greeting, then one JSON message per order state change of the client.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::jwt::TokenKind;
use crate::orders::record::{empty_record, order_record, Style};
use crate::orders::OrderEvent;
use crate::rest::header_str;
use crate::sessions::TokenProblem;
use crate::state::{lock, ConnGuard, Shared};

/// Connections allowed per client code.
pub const MAX_CONNECTIONS: usize = 3;

/// The HTTP upgrade: 401 invalid token, 403 expired token, 429 over the limit.
pub async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let auth = header_str(&headers, "authorization").unwrap_or_default();
    let verified = lock(&shared.sessions).verify(&shared.secret, &auth, TokenKind::Access, false);
    let client_code = match verified {
        Ok(c) => c.username,
        Err(TokenProblem::Expired) => {
            return (StatusCode::FORBIDDEN, "expired token").into_response()
        }
        Err(TokenProblem::Invalid) => {
            return (StatusCode::UNAUTHORIZED, "invalid token").into_response()
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let id = shared.next_conn_id();
    {
        let mut conns = lock(&shared.order_conns);
        if conns.values().filter(|c| **c == client_code).count() >= MAX_CONNECTIONS {
            return (StatusCode::TOO_MANY_REQUESTS, "connection limit").into_response();
        }
        conns.insert(id, client_code.clone());
        *lock(&shared.order_conns_opened)
            .entry(client_code.clone())
            .or_default() += 1;
    }
    let guard = ConnGuard {
        shared: shared.clone(),
        id,
        feed: false,
    };
    // Subscribed before the handshake completes, so that nothing published after the client
    // sees the socket open is missed.
    let events = shared.events.subscribe();
    ws.on_upgrade(move |socket| run(socket, guard, client_code, events))
}

fn message(client_code: &str, code: &str, order: Value) -> Message {
    let body = json!({
        "user-id": client_code, "status-code": "200", "order-status": code,
        "error-message": "", "orderData": order,
    });
    Message::Text(body.to_string().into())
}

async fn run(
    mut socket: WebSocket,
    guard: ConnGuard,
    client_code: String,
    mut events: broadcast::Receiver<OrderEvent>,
) {
    let shared = guard.shared.clone();
    let mut kill = shared.kill.subscribe();
    kill.borrow_and_update();
    if socket
        .send(message(&client_code, "AB00", empty_record()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(t))) if t.trim().eq_ignore_ascii_case("ping") => {
                    if socket.send(Message::Text("pong".into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
            },
            event = events.recv() => match event {
                Ok(OrderEvent { client_code: cc, code, order })
                    if cc == client_code && !shared.mute_updates.load(Ordering::Relaxed) =>
                {
                    if socket.send(message(&cc, code, order_record(&order, Style::OrderWs))).await.is_err() {
                        break;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            _ = kill.changed() => {
                let frame = CloseFrame { code: 1001, reason: "server going away".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    drop(guard);
}
