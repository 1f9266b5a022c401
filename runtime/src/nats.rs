//! Connecting to NATS with explicit credentials and deliberately sized buffers; each
//! connection counts its reconnects in `pinnacle_nats_reconnects_total{service}`.
//!
//! [`watch_handler`] notices when a client's connection handler is gone for good, which
//! async-nats does not report: every subscription ends and every later publish fails,
//! while the process runs on (with 0.51, a message whose header value held a bare `\r`
//! did it, nats-io/nats.rs PR #1612; 0.52 fixed that). [`crate::supervise`] rebuilds the
//! connection when that happens.
//!
//! [`handled_by_server`] waits until the server has handled what a connection sent: a
//! flush in async-nats only writes to the socket.
//!
//! [`Connections`] is what a supervised service runs on: a *main* connection for what it
//! publishes on its own (audit events, order events, ticks, JetStream) and, for a service
//! that takes requests from traders, an *intake* connection they arrive on and are
//! answered on (the server lets a service answer a request only on the connection it came
//! in on). A message whose headers async-nats cannot parse makes it drop the connection
//! that received it and reconnect, losing that connection's read buffer and the replies
//! still owed on it; with requests on a connection of their own, the service's other
//! publishes never stop for it (docs/ARCHITECTURE.md, "Hostile headers").

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use futures::StreamExt;
use pinnacle_protocol::subjects::SERVER_BARRIER;
use secrecy::ExposeSecret;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::NatsSettings;
use crate::throttle::Throttle;

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
#[error("could not connect to NATS at {url}: {reason}")]
pub struct ConnectError {
    /// The server URL(s), as `NATS_URL` gives them.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// Connects as `name` (shown in the server's connection list) to any of the servers in
/// `NATS_URL`; the client reconnects to any of them, and to the cluster members the
/// servers announce.
///
/// async-nats ignores `user:pass@` in URLs, so credentials go through `ConnectOptions`
/// (and [`NatsSettings::servers`] refuses a URL that carries them).
pub async fn connect(settings: &NatsSettings, name: &str) -> Result<Client, ConnectError> {
    let fail = |reason: String| ConnectError {
        url: settings.url.clone(),
        reason,
    };
    let servers = settings.servers().map_err(|e| ConnectError {
        url: "NATS_URL".into(),
        reason: e.to_string(),
    })?;
    let mut options = if let Some(path) = &settings.creds_file {
        ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| fail(e.to_string()))?
    } else {
        ConnectOptions::new()
    };
    if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
        options = options.user_and_password(user.clone(), password.expose_secret().to_string());
    }
    if let Some(prefix) = &settings.inbox_prefix {
        options = options.custom_inbox_prefix(prefix.clone());
    }
    let events = std::sync::Arc::new(ConnectionEvents::new(name));
    options
        .name(name)
        .subscription_capacity(settings.subscription_capacity)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let events = events.clone();
            async move { events.observe(event) }
        })
        .connect(servers)
        .await
        .map_err(|e| fail(e.to_string()))
}

/// The longest wait between two attempts to reconnect. async-nats's own backoff doubles
/// up to 4 s, so a service could come back seconds after its server did (a tick gap of
/// 8.4 s after a 4.3 s restart, 2026-12-06); attempts are one TCP connect each.
pub const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(500);

/// Before reconnect attempt `attempts` (1 the first): none for the first, then doubling
/// from 2 ms up to [`RECONNECT_DELAY_MAX`].
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(20);
    Duration::from_millis(1 << exponent).min(RECONNECT_DELAY_MAX)
}

/// How often a connection's disconnects are logged at `warn` at most.
pub const RECONNECT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What one connection's events are turned into: `pinnacle_nats_reconnects_total` and
/// log lines. Disconnect warnings are kept to one per [`RECONNECT_LOG_EVERY`]: each
/// malformed message on an intake connection is a disconnect, and one trader could
/// otherwise fill the logs (thousands of lines a minute). The others go to `debug`; every
/// one is counted.
#[derive(Debug)]
struct ConnectionEvents {
    /// The connection's name, e.g. `pinnacle-order-worker-intake`.
    service: String,
    reconnects: prometheus::IntCounter,
    /// Lost and not yet back: the next `Connected` is a reconnect.
    disconnected: AtomicBool,
    disconnects: Throttle,
    /// The latest disconnect went to `debug`: so does the reconnect that ends it.
    quiet: AtomicBool,
}

impl ConnectionEvents {
    fn new(name: &str) -> Self {
        Self {
            service: name.to_string(),
            // The series exists (at 0) from the start; counted when a lost connection
            // comes back.
            reconnects: crate::metrics::metrics()
                .nats_reconnects
                .with_label_values(&[name]),
            disconnected: AtomicBool::new(false),
            disconnects: Throttle::new(RECONNECT_LOG_EVERY),
            quiet: AtomicBool::new(false),
        }
    }

    fn observe(&self, event: Event) {
        let service = &self.service;
        match event {
            Event::Connected => {
                if self.disconnected.swap(false, Ordering::Relaxed) {
                    self.reconnects.inc();
                }
                if self.quiet.load(Ordering::Relaxed) {
                    tracing::debug!(%service, "connected to NATS")
                } else {
                    tracing::info!(%service, "connected to NATS")
                }
            }
            Event::Disconnected => {
                self.disconnected.store(true, Ordering::Relaxed);
                let warn = self.disconnects.next(std::time::Instant::now());
                self.quiet.store(warn.is_none(), Ordering::Relaxed);
                match warn {
                    Some(0) => tracing::warn!(%service, "disconnected from NATS"),
                    Some(since) => tracing::warn!(
                        %service,
                        more_disconnects = since,
                        "disconnected from NATS (and {since} more times since the last \
                         warning: a flood of malformed messages on an intake connection \
                         looks like this)"
                    ),
                    None => tracing::debug!(%service, "disconnected from NATS"),
                }
            }
            Event::SlowConsumer(sid) => {
                tracing::warn!(%service, sid, "slow consumer: messages dropped")
            }
            other => tracing::info!(%service, event = %other, "NATS event"),
        }
    }
}

/// Whether a service takes requests on a connection of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Intake {
    /// Requests arrive on an intake connection named `<service>-intake`; the main one
    /// only publishes and follows streams traders cannot publish to.
    #[default]
    Own,
    /// Everything shares the main connection (a service that serves no NATS requests).
    Shared,
}

/// The NATS connections one incarnation of a service runs on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Connections {
    main: Client,
    intake: Option<Client>,
}

impl Connections {
    /// Connects as `name` (and, for [`Intake::Own`], as `<name>-intake`).
    pub async fn connect(
        settings: &NatsSettings,
        name: &str,
        intake: Intake,
    ) -> Result<Self, ConnectError> {
        let main = connect(settings, name).await?;
        let intake = match intake {
            Intake::Own => Some(connect(settings, &format!("{name}-intake")).await?),
            Intake::Shared => None,
        };
        Ok(Self { main, intake })
    }

    /// One connection for everything.
    pub fn shared(client: Client) -> Self {
        Self {
            main: client,
            intake: None,
        }
    }

    /// Audit events, order events, ticks and JetStream go out on it.
    pub fn main(&self) -> &Client {
        &self.main
    }

    /// Requests that anyone allowed may send (orders, `md.req.>`, `$SRV`) and the
    /// announcements that must reach a worker before the orders sent after them arrive
    /// on it, and the replies leave on it: the intake connection, or the main one when it
    /// is shared.
    pub fn intake(&self) -> &Client {
        self.intake.as_ref().unwrap_or(&self.main)
    }

    /// Every distinct connection with its role: `main`, then `intake` if it is its own.
    pub fn each(&self) -> impl Iterator<Item = (&'static str, &Client)> {
        std::iter::once(("main", &self.main)).chain(self.intake.iter().map(|c| ("intake", c)))
    }
}

/// Fires once a client's connection handler has stopped for good: async-nats panicked
/// inside it, or it gave up reconnecting. A normal disconnection does not fire it
/// (async-nats reconnects and resubscribes by itself).
///
/// It holds a *canary*: a subscription to a fresh inbox that nobody publishes to. The
/// handler owns the sending side of every subscription, so the canary's stream ends
/// exactly when the handler is gone, whatever killed it, with no polling. Dropping the
/// watch unsubscribes the canary.
#[derive(Debug)]
pub struct HandlerWatch {
    /// Cancelled when the canary's stream ends.
    dead: CancellationToken,
    /// Stops the canary task when the watch is dropped.
    _stop: DropGuard,
}

impl HandlerWatch {
    /// Resolves once the handler is gone.
    pub async fn dead(&self) {
        self.dead.cancelled().await
    }

    /// Whether the handler is gone.
    pub fn is_dead(&self) -> bool {
        self.dead.is_cancelled()
    }
}

/// Starts watching `client`'s connection handler (see [`HandlerWatch`]).
pub async fn watch_handler(client: &Client) -> Result<HandlerWatch, async_nats::SubscribeError> {
    let mut canary = client.subscribe(client.new_inbox()).await?;
    let dead = CancellationToken::new();
    let stop = CancellationToken::new();
    let (fire, stopped) = (dead.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stopped.cancelled() => return,
                message = canary.next() => if message.is_none() {
                    fire.cancel();
                    return;
                },
            }
        }
    });
    Ok(HandlerWatch {
        dead,
        _stop: stop.drop_guard(),
    })
}

/// How long [`handled_by_server`] waits for the server's answer.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(1);

/// The server did not confirm that it handled a connection's earlier messages.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// No answer in time (also what a connection not allowed to publish on
    /// [`SERVER_BARRIER`] sees: the server reports the violation on the side).
    #[error("the server did not confirm within {0:?}")]
    Timeout(Duration),
    /// The request failed (the connection is down, …).
    #[error("the server did not confirm: {0}")]
    Request(#[from] async_nats::RequestError),
}

/// Returns once the server has handled everything `client` sent before the call. A flush
/// only writes to the socket, so this asks [`SERVER_BARRIER`], which nobody serves: the
/// server answers ("no responders") after the messages sent before it, and by then a
/// message published earlier is queued to every subscriber on that server, and a
/// subscription made earlier is in force.
pub async fn handled_by_server(client: &Client) -> Result<(), BarrierError> {
    let answer = tokio::time::timeout(
        BARRIER_TIMEOUT,
        client.request(SERVER_BARRIER, Default::default()),
    )
    .await
    .map_err(|_| BarrierError::Timeout(BARRIER_TIMEOUT))?;
    match answer {
        // Either answer comes after the earlier messages were handled.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_start_at_once_and_never_wait_longer_than_the_cap() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(2));
        assert_eq!(reconnect_delay(5), Duration::from_millis(16));
        for attempts in [10, 64, usize::MAX] {
            assert_eq!(reconnect_delay(attempts), RECONNECT_DELAY_MAX);
        }
    }
}
