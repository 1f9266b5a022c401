//! The Angel One live source: SmartWebSocketV2 ticks for the configured symbols, and
//! historical candles from SmartAPI, both on the platform's environment credentials.
//!
//! # Layout
//! - [`auth`]: the platform session (login with PIN + TOTP, renewal, daily rollover),
//!   shared by the feed and the candle service.
//! - [`convert`]: the symbol list → subscriptions, and packets → [`MarketTick`]s.
//! - [`history`]: `md.req.candles` from getCandleData, with broker errors mapped to codes.
//!
//! # The feed's life
//! 1. Log in (REST) and connect the stream with the feed token, JWT and API key; subscribe
//!    every configured symbol. The stream client reconnects with backoff and resubscribes
//!    on its own after drops.
//! 2. A refused handshake (`AuthFailed`: revoked or expired tokens) → renew the session
//!    (refresh, else log in) → `update_credentials`, which reconnects and resubscribes.
//! 3. At the session's expiry (the daily 00:00 IST rollover, or the JWT's `exp` if
//!    sooner) → log in again → `update_credentials`.
//! 4. [`MarketFeed::reset`] (the publisher's stall watchdog) closes the stream; the next
//!    batch connects a new one.
//!
//! Failures that stop progress (login refused, broker unreachable) come back as
//! [`FeedError`], so the publisher backs off and calls again.

pub mod auth;
pub mod convert;
pub mod history;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pinnacle_common::feed::{FeedError, MarketFeed};
use pinnacle_common::model::MarketTick;
use pinnacle_smartapi::session::Session;
use pinnacle_smartapi::stream::{FeedHandle, FeedStream, StreamConfig, StreamEvent};
use tokio::sync::mpsc;

pub use auth::{AngelAuth, AuthError};
pub use convert::{parse_mode, Plan, PlanError};
pub use history::AngelHistory;

/// Most ticks returned in one batch.
const MAX_BATCH: usize = 4096;
/// Wait this long past the session's expiry before logging in, so the broker agrees it
/// has ended.
const EXPIRY_GRACE: Duration = Duration::from_secs(1);

/// A connected stream.
#[derive(Debug)]
struct Live {
    /// Commands to the stream task.
    handle: FeedHandle,
    /// Its events.
    events: mpsc::Receiver<StreamEvent>,
}

/// The Angel One market feed.
#[derive(Debug)]
pub struct AngelFeed {
    /// The platform session.
    auth: Arc<AngelAuth>,
    /// `wss://…/smart-stream`.
    url: String,
    /// What to subscribe, and the per-symbol state.
    plan: Plan,
    /// The session the stream was given; its expiry schedules the rollover.
    session: Option<Session>,
    /// Set when the stream refused our tokens or the session expired: renew first.
    renew: bool,
    /// The stream, once connected.
    live: Option<Live>,
}

impl AngelFeed {
    /// A feed for `plan`, streaming from `url` with `auth`'s session. Nothing connects
    /// until the first batch is asked for.
    pub fn new(auth: Arc<AngelAuth>, url: impl Into<String>, plan: Plan) -> Self {
        Self {
            auth,
            url: url.into(),
            plan,
            session: None,
            renew: false,
            live: None,
        }
    }

    /// A session the stream may use: the current one, or a renewed one when the old one
    /// was refused or has expired. A connected stream gets the new tokens.
    async fn ensure_session(&mut self) -> Result<Session, FeedError> {
        if let (Some(session), false) = (&self.session, self.renew) {
            return Ok(session.clone());
        }
        let renewed = match &self.session {
            Some(stale) => self.auth.renew(stale).await,
            None => self.auth.session().await,
        }
        .map_err(|e| FeedError(format!("Angel One login failed: {e}")))?;
        if let (Some(live), true) = (&self.live, self.session.is_some()) {
            live.handle
                .update_credentials(renewed.feed.clone(), Some(renewed.jwt.clone()))
                .await
                .map_err(|e| FeedError(format!("Angel One stream: {e}")))?;
            tracing::info!("Angel One stream has the renewed session");
        }
        self.session = Some(renewed.clone());
        self.renew = false;
        Ok(renewed)
    }

    /// Connects the stream and subscribes every planned instrument.
    async fn connect(&mut self, session: &Session) -> Result<(), FeedError> {
        let mut config = StreamConfig::new(self.auth.client_code(), session.feed.clone());
        config.url = self.url.clone();
        config.jwt = Some(session.jwt.clone());
        config.api_key = Some(self.auth.api_key());
        let (handle, events) = FeedStream::connect(config);
        for (mode, instruments) in &self.plan.subscriptions {
            if let Err(error) = handle.subscribe(*mode, instruments.clone()).await {
                handle.shutdown().await;
                return Err(FeedError(format!("Angel One subscribe: {error}")));
            }
        }
        tracing::info!(
            symbols = self.plan.len(),
            client_code = self.auth.client_code(),
            "Angel One stream started"
        );
        self.live = Some(Live { handle, events });
        Ok(())
    }

    /// Handles one event; ticks go into `batch`.
    fn on_event(&mut self, event: StreamEvent, batch: &mut Vec<MarketTick>, now_ms: i64) {
        match event {
            StreamEvent::Tick(packet) => {
                if let Some(tick) = self.plan.tick(&packet, now_ms) {
                    batch.push(tick);
                }
            }
            StreamEvent::Connected => tracing::info!("Angel One stream connected"),
            StreamEvent::Disconnected { reason } => {
                tracing::warn!(%reason, "Angel One stream disconnected; it reconnects");
            }
            StreamEvent::AuthFailed { status, message } => {
                tracing::warn!(status, %message, "Angel One stream refused the session; renewing it");
                self.renew = true;
            }
            StreamEvent::ServerError { code, message, .. } => {
                tracing::warn!(%code, %message, "Angel One stream error reply");
            }
            StreamEvent::BadFrame { error, len } => {
                tracing::warn!(%error, len, "Angel One stream sent an undecodable frame; skipped");
            }
            StreamEvent::Text(text) => {
                tracing::debug!(text = %text.chars().take(200).collect::<String>(), "Angel One stream text");
            }
        }
    }
}

#[async_trait]
impl MarketFeed for AngelFeed {
    fn name(&self) -> &'static str {
        "angel_one"
    }

    async fn next_batch(&mut self) -> Result<Vec<MarketTick>, FeedError> {
        loop {
            let session = self.ensure_session().await?;
            if self.live.is_none() {
                self.connect(&session).await?;
            }
            // Checked before waiting too: on a busy feed the wait never runs out.
            let Some(until_expiry) = (session.expires_at - chrono::Utc::now())
                .to_std()
                .ok()
                .map(|left| left + EXPIRY_GRACE)
            else {
                tracing::info!(expired_at = %session.expires_at, "Angel One session reached its expiry (daily rollover); logging in again");
                self.renew = true;
                continue;
            };
            let Some(live) = self.live.as_mut() else {
                continue;
            };
            let event = tokio::select! {
                event = live.events.recv() => event,
                () = tokio::time::sleep(until_expiry) => continue,
            };
            let Some(event) = event else {
                self.live = None;
                return Err(FeedError("the Angel One stream stopped".into()));
            };
            let now_ms = chrono::Utc::now().timestamp_millis();
            let mut batch = Vec::new();
            self.on_event(event, &mut batch, now_ms);
            while batch.len() < MAX_BATCH {
                let Some(live) = self.live.as_mut() else {
                    break;
                };
                match live.events.try_recv() {
                    Ok(event) => self.on_event(event, &mut batch, now_ms),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
    }

    async fn reset(&mut self) -> Result<(), FeedError> {
        if let Some(live) = self.live.take() {
            tracing::info!("resetting the Angel One stream");
            live.handle.shutdown().await;
        }
        Ok(())
    }
}
