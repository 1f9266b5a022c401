//! The SmartWebSocketV2 market-feed client (SPEC §8): an async handle plus an event channel.
//!
//! ```text
//! let (feed, mut events) = FeedStream::connect(config);      // spawns the connection task
//! feed.subscribe(Mode::Quote, vec![Instrument::new(ExchangeType::NseCm, "2885")]).await?;
//! while let Some(event) = events.recv().await { /* StreamEvent::Tick(packet) … */ }
//! feed.update_credentials(new_feed_token, Some(new_jwt)).await?; // daily rollover
//! feed.shutdown().await;
//! ```
//!
//! Behaviour:
//! * Authenticates with the handshake headers of SPEC §8.1 (a): `x-client-code`,
//!   `x-feed-token`, and `Authorization` / `x-api-key` when configured.
//! * A 401/403 upgrade rejection is not retried: [`StreamEvent::AuthFailed`] carries the
//!   server's `x-error-message`, and the task waits for
//!   [`FeedHandle::update_credentials`] (or shutdown).
//! * Heartbeat: the **text** frame `ping` every `heartbeat_interval`. The DOCS define the
//!   protocol as text `ping` → text `pong`; the `pong` is an application-level answer
//!   that proves the feed service (not just a proxy) is alive and gives the stall
//!   watchdog something to see on an idle connection. Control PINGs from the server are
//!   answered automatically by tungstenite.
//! * Stall watchdog: no message of any kind for `stall_timeout` ⇒ reconnect.
//! * Reconnects with [`Backoff`] after any close, error or stall, and replays the whole
//!   desired subscription set, in batches, on every new connection.
//! * Subscriptions are checked client-side (1000 (token, mode) pairs; DEPTH only on
//!   NSE_CM and ≤ 50 tokens) and refused with a [`SubscribeError`].
//! * Text frames: `pong` is absorbed; error JSON (`E1001`, `E1002`) becomes
//!   [`StreamEvent::ServerError`]; anything else [`StreamEvent::Text`]. Binary frames are
//!   decoded with [`crate::ticks`]; a bad one becomes [`StreamEvent::BadFrame`].
//!
//! Layout: [`config`] (settings, backoff), [`subs`] (subscription set and requests),
//! `events` (what the task reports and takes), `connect` (the handshake), `task` (the
//! connection loop).

pub mod config;
mod connect;
mod events;
pub mod subs;
mod task;

use secrecy::SecretString;
use tokio::sync::{mpsc, oneshot};

pub use config::{Backoff, StreamConfig, DEFAULT_URL};
use events::Command;
pub use events::StreamEvent;
pub use subs::{Instrument, SubscribeError, MAX_DEPTH_TOKENS, MAX_SUBSCRIPTIONS};

use crate::ticks::Mode;

/// Why a handle call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    #[error("the feed stream has stopped")]
    Closed,
}

/// Entry point; see the module docs.
#[derive(Debug)]
pub struct FeedStream;

impl FeedStream {
    /// Spawns the connection task on the current Tokio runtime and returns its handle and
    /// event receiver. It connects at once and keeps reconnecting until
    /// [`FeedHandle::shutdown`], until every handle is dropped, or until the receiver is
    /// dropped.
    pub fn connect(config: StreamConfig) -> (FeedHandle, mpsc::Receiver<StreamEvent>) {
        let (events_tx, events_rx) = mpsc::channel(config.event_capacity.max(1));
        let (commands_tx, commands_rx) = mpsc::channel(64);
        tokio::spawn(task::run(config, commands_rx, events_tx));
        (
            FeedHandle {
                commands: commands_tx,
            },
            events_rx,
        )
    }
}

/// A cloneable handle to the running feed.
#[derive(Debug, Clone)]
pub struct FeedHandle {
    commands: mpsc::Sender<Command>,
}

impl FeedHandle {
    /// Adds instruments in `mode` to the desired set (all or nothing) and sends the
    /// subscribe requests now if connected; they are replayed after every reconnect.
    pub async fn subscribe(
        &self,
        mode: Mode,
        instruments: Vec<Instrument>,
    ) -> Result<(), StreamError> {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Subscribe {
            mode,
            instruments,
            reply,
        })
        .await?;
        Ok(rx.await.map_err(|_| StreamError::Closed)??)
    }

    /// Removes instruments in `mode` from the desired set and unsubscribes them if connected.
    pub async fn unsubscribe(
        &self,
        mode: Mode,
        instruments: Vec<Instrument>,
    ) -> Result<(), StreamError> {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Unsubscribe {
            mode,
            instruments,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StreamError::Closed)
    }

    /// Swaps in the new day's feed token (and JWT) and reconnects with them at once,
    /// resubscribing everything. Also the way out of [`StreamEvent::AuthFailed`].
    pub async fn update_credentials(
        &self,
        feed_token: SecretString,
        jwt: Option<SecretString>,
    ) -> Result<(), StreamError> {
        let (reply, rx) = oneshot::channel();
        self.call(Command::UpdateCredentials {
            feed_token,
            jwt,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StreamError::Closed)
    }

    /// Closes the connection and stops the task; the event channel then ends.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.call(Command::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn call(&self, command: Command) -> Result<(), StreamError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| StreamError::Closed)
    }
}
