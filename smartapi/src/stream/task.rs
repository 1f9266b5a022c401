//! The feed's connection task: connect, resubscribe, read, heartbeat, watch for stalls,
//! apply handle commands, and reconnect with backoff. Owns the desired subscription set.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{self, Instant};
use tokio_tungstenite::tungstenite::Message;

use super::config::{unit_random, StreamConfig};
use super::connect::{connect, ConnectError, Ws};
use super::events::{Command, StreamEvent};
use super::subs::{requests, Action, CorrelationIds, Instrument, SubscriptionSet};
use crate::ticks::{self, Mode};

/// Text heartbeat and its answer (SPEC §8.2).
const PING: &str = "ping";
const PONG: &str = "pong";

/// How a session or a wait ended.
enum Next {
    /// Stop the task.
    Stop,
    /// Connect again now (new credentials).
    ReconnectNow,
    /// Connect again after the backoff.
    Retry,
}

struct Task {
    config: StreamConfig,
    desired: SubscriptionSet,
    ids: CorrelationIds,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<StreamEvent>,
}

pub(super) async fn run(
    config: StreamConfig,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<StreamEvent>,
) {
    let mut task = Task {
        config,
        desired: SubscriptionSet::default(),
        ids: CorrelationIds::default(),
        commands,
        events,
    };
    let mut attempt: u32 = 0;
    loop {
        let next = match connect(&task.config).await {
            Ok(ws) => {
                attempt = 0;
                task.session(ws).await
            }
            Err(ConnectError::Auth { status, message }) => {
                tracing::error!(client_code = %task.config.client_code, status, %message,
                    "feed handshake rejected; waiting for new credentials");
                if !task.emit(StreamEvent::AuthFailed { status, message }).await {
                    return;
                }
                task.wait(None).await
            }
            Err(ConnectError::Other(reason)) => {
                tracing::warn!(client_code = %task.config.client_code, %reason, "feed connect failed");
                let reason = format!("connect failed: {reason}");
                if task.emit(StreamEvent::Disconnected { reason }).await {
                    Next::Retry
                } else {
                    Next::Stop
                }
            }
        };
        match next {
            Next::Stop => return,
            Next::ReconnectNow => attempt = 0,
            Next::Retry => {
                let delay = task.config.backoff.delay(attempt, unit_random());
                attempt = attempt.saturating_add(1);
                match task.wait(Some(Instant::now() + delay)).await {
                    Next::Stop => return,
                    Next::ReconnectNow | Next::Retry => {}
                }
            }
        }
    }
}

impl Task {
    /// Sends an event; false when nobody listens any more (then the task stops).
    async fn emit(&self, event: StreamEvent) -> bool {
        self.events.send(event).await.is_ok()
    }

    /// Runs one connected session until it ends.
    async fn session(&mut self, mut ws: Ws) -> Next {
        let batch = self.config.batch_size;
        for text in self.desired.resubscribe_requests(batch, &mut self.ids) {
            if let Err(e) = ws.send(Message::text(text)).await {
                return self.lost(format!("resubscribe failed: {e}")).await;
            }
        }
        tracing::info!(client_code = %self.config.client_code,
            subscriptions = self.desired.len(), "feed connected");
        if !self.emit(StreamEvent::Connected).await {
            return Next::Stop;
        }
        let every = self.config.heartbeat_interval;
        let mut heartbeat = time::interval_at(Instant::now() + every, every);
        let mut last_seen = Instant::now();
        loop {
            let stall_at = last_seen + self.config.stall_timeout;
            tokio::select! {
                message = ws.next() => match message {
                    None => return self.lost("connection closed".to_owned()).await,
                    Some(Err(e)) => return self.lost(format!("websocket error: {e}")).await,
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map_or_else(String::new, |f| format!(": {} {}", f.code, f.reason));
                        return self.lost(format!("server closed the connection{why}")).await;
                    }
                    Some(Ok(message)) => {
                        if !self.handle_message(message).await {
                            return Next::Stop;
                        }
                        last_seen = Instant::now();
                    }
                },
                _ = heartbeat.tick() => {
                    if let Err(e) = ws.send(Message::text(PING)).await {
                        return self.lost(format!("heartbeat failed: {e}")).await;
                    }
                }
                _ = time::sleep_until(stall_at) => {
                    let _ = ws.close(None).await;
                    let timeout = self.config.stall_timeout;
                    return self.lost(format!("stalled: no message for {timeout:?}")).await;
                }
                command = self.commands.recv() => {
                    if let Some(next) = self.session_command(command, &mut ws).await {
                        return next;
                    }
                }
                _ = self.events.closed() => return Next::Stop,
            }
        }
    }

    /// Applies a command received during a session; `Some(next)` ends the session
    /// (`None` from the channel: every handle is gone).
    async fn session_command(&mut self, command: Option<Command>, ws: &mut Ws) -> Option<Next> {
        let Some(command) = command else {
            let _ = ws.close(None).await;
            return Some(Next::Stop);
        };
        match self.apply(command, Some(&mut *ws)).await {
            Ok(None) => None,
            Ok(Some(next)) => {
                let _ = ws.close(None).await;
                if matches!(next, Next::ReconnectNow) {
                    let reason = "credentials updated".to_owned();
                    if !self.emit(StreamEvent::Disconnected { reason }).await {
                        return Some(Next::Stop);
                    }
                }
                Some(next)
            }
            Err(reason) => Some(self.lost(reason).await),
        }
    }

    /// Reports a lost connection; the caller retries after the backoff.
    async fn lost(&self, reason: String) -> Next {
        tracing::warn!(client_code = %self.config.client_code, %reason, "feed disconnected");
        if self.emit(StreamEvent::Disconnected { reason }).await {
            Next::Retry
        } else {
            Next::Stop
        }
    }

    /// Turns one received message into events; false when nobody listens any more.
    async fn handle_message(&self, message: Message) -> bool {
        let event = match message {
            Message::Binary(frame) => match ticks::decode(&frame) {
                Ok(decoded) => {
                    if decoded.trailing_bytes > 0 {
                        tracing::debug!(
                            trailing = decoded.trailing_bytes,
                            "tick longer than its mode"
                        );
                    }
                    StreamEvent::Tick(decoded.packet)
                }
                Err(error) => {
                    tracing::warn!(%error, len = frame.len(), "undecodable feed frame");
                    StreamEvent::BadFrame {
                        error,
                        len: frame.len(),
                    }
                }
            },
            Message::Text(text) => match text_event(text.as_str()) {
                Some(event) => event,
                None => return true,
            },
            // Control frames only prove liveness; tungstenite answers pings itself.
            _ => return true,
        };
        self.emit(event).await
    }

    /// Applies a handle command. `Ok(Some(next))` ends the session; `Err` means the socket
    /// failed while sending.
    async fn apply(
        &mut self,
        command: Command,
        ws: Option<&mut Ws>,
    ) -> Result<Option<Next>, String> {
        match command {
            Command::Subscribe {
                mode,
                instruments,
                reply,
            } => {
                let result = self.desired.add(mode, &instruments);
                let ok = result.is_ok();
                let _ = reply.send(result);
                if ok {
                    self.send_requests(ws, Action::Subscribe, mode, &instruments, "subscribe")
                        .await?;
                }
                Ok(None)
            }
            Command::Unsubscribe {
                mode,
                instruments,
                reply,
            } => {
                self.desired.remove(mode, &instruments);
                let _ = reply.send(());
                self.send_requests(ws, Action::Unsubscribe, mode, &instruments, "unsubscribe")
                    .await?;
                Ok(None)
            }
            Command::UpdateCredentials {
                feed_token,
                jwt,
                reply,
            } => {
                self.config.feed_token = feed_token;
                self.config.jwt = jwt;
                let _ = reply.send(());
                tracing::info!(client_code = %self.config.client_code, "feed credentials updated; reconnecting");
                Ok(Some(Next::ReconnectNow))
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(());
                Ok(Some(Next::Stop))
            }
        }
    }

    /// Sends the `action` requests for `instruments` when connected; the error says which
    /// request (`what`) failed.
    async fn send_requests(
        &mut self,
        ws: Option<&mut Ws>,
        action: Action,
        mode: Mode,
        instruments: &[Instrument],
        what: &str,
    ) -> Result<(), String> {
        let Some(ws) = ws else { return Ok(()) };
        let batch = self.config.batch_size;
        for text in requests(action, mode, instruments, batch, &mut self.ids) {
            ws.send(Message::text(text))
                .await
                .map_err(|e| format!("{what} failed: {e}"))?;
        }
        Ok(())
    }

    /// While disconnected: applies commands until `until` (or forever when `None`), new
    /// credentials, or shutdown.
    async fn wait(&mut self, until: Option<Instant>) -> Next {
        loop {
            let sleep = async {
                match until {
                    Some(at) => time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => return Next::Retry,
                command = self.commands.recv() => {
                    let Some(command) = command else { return Next::Stop };
                    if let Ok(Some(next)) = self.apply(command, None).await {
                        return next;
                    }
                }
                _ = self.events.closed() => return Next::Stop,
            }
        }
    }
}

/// `pong` ⇒ nothing; `{"errorCode":…}` ⇒ [`StreamEvent::ServerError`]; else the text.
fn text_event(text: &str) -> Option<StreamEvent> {
    if text.trim() == PONG {
        return None;
    }
    if !crate::bounds::text_ok(text) {
        tracing::debug!(
            len = text.len(),
            "oversized or deeply nested feed text ignored"
        );
        return Some(StreamEvent::Text(text.to_owned()));
    }
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
        if let Some(code) = map.get("errorCode").and_then(Value::as_str) {
            let field = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
            let message = field("errorMessage").unwrap_or_default();
            tracing::warn!(%code, %message, "feed server error");
            return Some(StreamEvent::ServerError {
                code: code.to_owned(),
                message,
                correlation_id: field("correlationID"),
            });
        }
    }
    tracing::debug!(len = text.len(), "unrecognised text frame from the feed");
    Some(StreamEvent::Text(text.to_owned()))
}
