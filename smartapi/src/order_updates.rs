//! The order-update WebSocket (SPEC §9): one JSON message per order state change of the
//! account, after an `AB00` greeting.
//!
//! [`follow`] holds one connection until it closes, pinging every 10 s and answering the
//! server's pings; the caller decides whether to reconnect from the returned [`Ended`].

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{SmartApiError, SmartApiErrorKind};
use crate::types::OrderRecord;

/// Angel One's order-update endpoint.
pub const PRODUCTION_URL: &str = "wss://tns.angelone.in/smart-order-update";

/// How often the client pings.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// One order event.
#[derive(Debug, Clone)]
pub struct OrderUpdate {
    /// `AB01` open … `AB11` modify pending (SPEC §9).
    pub status_code: String,
    /// The order as it now stands.
    pub order: OrderRecord,
}

/// What [`follow`] reports while it runs.
#[derive(Debug, Clone)]
pub enum Event {
    /// The socket is up: updates sent while it was down are not replayed, so the caller
    /// should catch up from the order book now.
    Connected,
    /// An order changed.
    Update(Box<OrderUpdate>),
}

/// Why [`follow`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The server closed the connection or it broke: reconnect after a pause.
    Closed(String),
    /// The handshake was refused with 401 or 403: the session is no longer valid.
    SessionRefused(u16),
    /// The handshake was refused with 429: too many connections for the client code.
    TooManyConnections,
    /// The receiver was dropped: stop.
    ReceiverGone,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "order-status", default)]
    order_status: String,
    #[serde(rename = "orderData", default)]
    order_data: Option<OrderRecord>,
}

/// Connects with `jwt`, reports [`Event::Connected`], then forwards every order event to
/// `events` until the connection ends. Heartbeats: a control ping every [`HEARTBEAT`]; silence for three of them counts
/// as a dead connection.
pub async fn follow(
    url: &str,
    jwt: &SecretString,
    events: &mpsc::Sender<Event>,
) -> Result<Ended, SmartApiError> {
    let mut request = url
        .into_client_request()
        .map_err(|_| SmartApiError::invalid("the order-update URL is not valid"))?;
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", jwt.expose_secret()))
        .map_err(|_| SmartApiError::invalid("the session token is not a valid header value"))?;
    bearer.set_sensitive(true);
    request.headers_mut().insert("Authorization", bearer);
    let (socket, _) = match tokio_tungstenite::connect_async_with_config(
        request,
        Some(crate::bounds::ws_config()),
        false,
    )
    .await
    {
        Ok(connected) => connected,
        Err(WsError::Http(response)) => {
            return Ok(match response.status().as_u16() {
                429 => Ended::TooManyConnections,
                status @ (401 | 403) => Ended::SessionRefused(status),
                status => Ended::Closed(format!("handshake refused with HTTP {status}")),
            })
        }
        Err(error) => {
            return Err(SmartApiError::new(
                SmartApiErrorKind::Transport,
                None,
                format!("the order-update socket could not connect: {error}"),
            ))
        }
    };
    if events.send(Event::Connected).await.is_err() {
        return Ok(Ended::ReceiverGone);
    }
    Ok(forward(socket, events).await)
}

/// The connected order-update socket.
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Pings, and forwards every order event to `events`, until the connection ends.
async fn forward(socket: Socket, events: &mpsc::Sender<Event>) -> Ended {
    let (mut sink, mut stream) = socket.split();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silent_beats = 0u32;
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                silent_beats += 1;
                if silent_beats > 3 {
                    return Ended::Closed("no message for three heartbeats".into());
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return Ended::Closed("the ping could not be sent".into());
                }
            }
            message = stream.next() => {
                silent_beats = 0;
                match message {
                    None => return Ended::Closed("the server closed the stream".into()),
                    Some(Err(error)) => return Ended::Closed(error.to_string()),
                    Some(Ok(Message::Close(frame))) => {
                        return Ended::Closed(frame.map_or_else(|| "closed".into(), |f| f.reason.to_string()))
                    }
                    Some(Ok(Message::Text(text))) => {
                        if let Some(update) = parse(text.as_str()) {
                            if events.send(Event::Update(Box::new(update))).await.is_err() {
                                return Ended::ReceiverGone;
                            }
                        }
                    }
                    // Pings are answered by the library; pongs and binary frames carry nothing.
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

/// An order event, or `None` for the greeting, a `pong` or anything unreadable.
pub fn parse(text: &str) -> Option<OrderUpdate> {
    if !crate::bounds::text_ok(text) {
        tracing::debug!(
            len = text.len(),
            "oversized or deeply nested order-update message ignored"
        );
        return None;
    }
    let wire: Wire = match serde_json::from_str(text) {
        Ok(wire) => wire,
        Err(_) => {
            if text.trim() != "pong" {
                tracing::debug!(len = text.len(), "unreadable order-update message ignored");
            }
            return None;
        }
    };
    let order = wire.order_data?;
    if wire.order_status == "AB00" || order.orderid.is_empty() {
        return None;
    }
    Some(OrderUpdate {
        status_code: wire.order_status,
        order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_and_events() {
        let greeting = r#"{"user-id":"C1","status-code":"200","order-status":"AB00","error-message":"","orderData":{"orderid":""}}"#;
        assert!(parse(greeting).is_none());
        let event = r#"{"user-id":"C1","status-code":"200","order-status":"AB05","error-message":"","orderData":{"orderid":"2411","ordertag":"PNX","status":"complete","orderstatus":"complete","quantity":"5","filledshares":"5","averageprice":194.5,"price":0}}"#;
        let update = parse(event).expect("event");
        assert_eq!(update.status_code, "AB05");
        assert_eq!(update.order.filledshares, 5);
        assert_eq!(update.order.averageprice, 19450);
        assert!(parse("pong").is_none());
        assert!(parse("{not json").is_none());
    }
}
