//! A local simulator of Angel One SmartAPI, faithful to `shared/smartapi/SPEC.md`: the
//! REST gateway, the SmartWebSocketV2 market feed and the order-update WebSocket, on one
//! port, with fault injection and inspection hooks for tests.
//!
//! # Layout
//! * [`config`]: [`SimConfig`], [`SimAccount`], [`SimInstrument`] (built-ins, scrip master).
//! * `state`: everything shared between handlers; `sessions` and `jwt`: HS512 tokens,
//!   expiry and revocation; `totp`: RFC 6238 login codes; `ratelimit`: SPEC §6 windows.
//! * `rest`: the gateway (recording, faults, rate limits, auth, envelopes) and the routes;
//!   `rest::reply`: what a route gets and answers; `rest::gateway`: checks and envelopes.
//! * `orders`: the order book; `orders::order`: one order, its events and fills;
//!   `orders::record`: the §3.2 records.
//! * `market`: prices and the random walk; `hash`: stable hashes for synthetic data;
//!   `calendar`: the clock, IST, hours and holidays; `feed`: `/smart-stream` and its
//!   binary ticks (`feed::ticks` encodes them);
//!   `order_ws`: `/smart-order-update`; `admin`: the `/__sim/` HTTP API.
//! * [`faults`]: [`Fault`] injection.

mod admin;
pub mod calendar;
mod codes;
pub mod config;
mod error;
pub mod faults;
mod feed;
mod hash;
mod json;
mod jwt;
mod market;
mod order_ws;
mod orders;
mod ratelimit;
mod rest;
mod sessions;
mod state;
pub mod totp;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use calendar::{SimCalendar, SimClock};
pub use config::{SessionExpiry, SimAccount, SimConfig, SimInstrument};
pub use error::SimError;
pub use faults::Fault;
pub use orders::SimOrder;
pub use ratelimit::RateStat;
pub use state::RequestRecord;

use state::{lock, Shared};

/// A running simulator. Dropping it without [`Simulator::shutdown`] leaves the server
/// task running until the runtime ends.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    ticker: JoinHandle<()>,
}

/// The whole HTTP surface: REST (fallback), both WebSockets and the admin API.
fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/smart-stream", get(feed::upgrade))
        .route("/smart-order-update", get(order_ws::upgrade))
        .nest("/__sim", admin::router())
        .fallback(rest::handle)
        .with_state(shared)
}

/// Steps the random walk and wakes the market sockets every `tick_interval`, and sends
/// after-market orders to the exchange once it opens.
async fn ticker(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(
        shared
            .config
            .tick_interval
            .max(std::time::Duration::from_millis(1)),
    );
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        shared.release_after_market();
        if !shared.config.ticks_outside_market_hours && !shared.nse_open() {
            continue;
        }
        shared.walk_subscribed();
        shared.tick.send_modify(|g| *g += 1);
    }
}

impl Simulator {
    /// Binds `config.bind` and starts serving.
    pub async fn start(config: SimConfig) -> Result<Simulator, SimError> {
        let bind = config.bind;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| SimError::Bind { addr: bind, source })?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let (stop, stopped) = oneshot::channel::<()>();
        let router = app(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulator server failed");
            }
        });
        let ticker = tokio::spawn(ticker(shared.clone()));
        tracing::info!(%addr, "SmartAPI simulator listening");
        Ok(Simulator {
            shared,
            addr,
            stop: Some(stop),
            server,
            ticker,
        })
    }

    /// The bound address (useful when `bind` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, the REST root.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://IP:PORT/smart-stream`.
    pub fn feed_url(&self) -> String {
        format!("ws://{}/smart-stream", self.addr)
    }

    /// `ws://IP:PORT/smart-order-update`.
    pub fn order_ws_url(&self) -> String {
        format!("ws://{}/smart-order-update", self.addr)
    }

    /// Registers (or replaces) an account.
    pub fn add_account(&self, account: SimAccount) {
        self.shared.add_account(account);
    }

    /// Moves a price (paise) and fills resting orders that now cross.
    pub fn set_ltp(&self, exchange: &str, token: &str, ltp_paise: i64) {
        self.shared.set_ltp(exchange, token, ltp_paise);
    }

    /// The simulator's time now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.shared.clock.now()
    }

    /// Moves the simulator's clock to `at`; it runs on from there, or stays when `frozen`.
    /// Sessions, orders, fills, ticks and candles all follow it.
    pub fn set_now(&self, at: chrono::DateTime<chrono::Utc>, frozen: bool) {
        self.shared.clock.set(at, frozen);
        self.shared.release_after_market();
    }

    /// Back to the real time.
    pub fn reset_clock(&self) {
        self.shared.clock.reset();
    }

    /// The current price (paise), if the instrument exists.
    pub fn ltp(&self, exchange: &str, token: &str) -> Option<i64> {
        self.shared.ltp(exchange, token)
    }

    /// Queues a fault for the next matching REST requests.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).inject(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// The orders the broker holds for `client_code`, oldest first.
    pub fn orders(&self, client_code: &str) -> Vec<SimOrder> {
        lock(&self.shared.book).orders(client_code)
    }

    /// Rejects a working order of `client_code` with nothing filled, as the exchange or the
    /// broker's risk system would after accepting it; its update (AB03) is pushed unless
    /// updates are muted. Whether there was such an order.
    pub fn reject_order(&self, client_code: &str, orderid: &str, reason: &str) -> bool {
        self.shared.reject_order(client_code, orderid, reason)
    }

    /// Every REST request seen so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    /// What the rate limiter admitted and refused, per (client code, bucket), when
    /// `enforce_rate_limits` is on.
    pub fn rate_limits(&self) -> Vec<RateStat> {
        lock(&self.shared.limiter).stats()
    }

    /// Successful logins of `client_code`.
    pub fn login_count(&self, client_code: &str) -> usize {
        lock(&self.shared.logins)
            .get(client_code)
            .copied()
            .unwrap_or(0)
    }

    /// Current JWTs of the client now give AG8001; refresh tokens still work.
    pub fn expire_session(&self, client_code: &str) {
        lock(&self.shared.sessions).expire(client_code);
    }

    /// Every token of the client is dead (AB8050 on refresh): log in again.
    pub fn revoke_session(&self, client_code: &str) {
        lock(&self.shared.sessions).revoke(client_code);
    }

    /// Closes every market and order WebSocket with a close frame (1001).
    pub fn drop_sockets(&self) {
        self.shared.kill.send_modify(|g| *g += 1);
    }

    /// While `muted`, order-update sockets stay open and send no order updates: what
    /// happens meanwhile (a fill, a cancel) is never pushed, as over a connection that
    /// silently stopped delivering.
    pub fn mute_order_updates(&self, muted: bool) {
        self.shared
            .mute_updates
            .store(muted, std::sync::atomic::Ordering::Relaxed);
    }

    /// Open market-data sockets.
    pub fn feed_connections(&self) -> usize {
        self.shared.feed_connections()
    }

    /// Open order-update sockets.
    pub fn order_connections(&self) -> usize {
        lock(&self.shared.order_conns).len()
    }

    /// Order-update sockets `client_code` has opened so far (reconnects included).
    pub fn order_connections_opened(&self, client_code: &str) -> usize {
        lock(&self.shared.order_conns_opened)
            .get(client_code)
            .copied()
            .unwrap_or_default()
    }

    /// (token, mode) pairs subscribed across the client's market sockets.
    pub fn subscriptions(&self, client_code: &str) -> usize {
        lock(&self.shared.feeds)
            .values()
            .filter(|c| c.client_code == client_code)
            .map(|c| c.subs.len())
            .sum()
    }

    /// Stops accepting, closes every socket and waits for the server to finish.
    pub async fn shutdown(mut self) {
        self.ticker.abort();
        self.shared.kill.send_modify(|g| *g += 1);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = &mut self.server;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut *server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
}
