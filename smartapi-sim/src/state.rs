//! The simulator's shared state: accounts, sessions, market, order book, recorded
//! requests, faults, rate-limit windows and the registry of open WebSockets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::calendar::SimClock;
use crate::config::{exchange_name, SimAccount, SimConfig};
use crate::faults::FaultBook;
use crate::market::Market;
use crate::orders::{Hours, OrderBook, OrderEvent};
use crate::ratelimit::RateLimiter;
use crate::sessions::Sessions;

/// One REST request as the simulator saw it, for assertions in tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// From the JWT, or from the login body; None when unknown.
    pub client_code: Option<String>,
    /// TCP peer address.
    pub source_ip: IpAddr,
    /// `X-*` headers plus `authorization`, `content-type`, `accept` and `user-agent`,
    /// names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The parsed JSON body; Null when empty, a string when not JSON.
    pub body: Value,
}

/// (mode, exchangeType, token): one market-feed subscription.
pub type FeedSub = (u8, u8, String);

/// One open market-data socket.
#[derive(Debug, Default)]
pub struct FeedConn {
    pub client_code: String,
    pub subs: HashSet<FeedSub>,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Shared {
    pub config: SimConfig,
    /// The simulator's time (shifted or frozen by tests).
    pub clock: SimClock,
    /// HS512 key for every token this simulator signs.
    pub secret: Vec<u8>,
    pub accounts: Mutex<HashMap<String, SimAccount>>,
    pub sessions: Mutex<Sessions>,
    pub market: Mutex<Market>,
    pub book: Mutex<OrderBook>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub faults: Mutex<FaultBook>,
    pub limiter: Mutex<RateLimiter>,
    pub logins: Mutex<HashMap<String, usize>>,
    pub feeds: Mutex<HashMap<u64, FeedConn>>,
    /// Open order-update sockets: connection id → client code.
    pub order_conns: Mutex<HashMap<u64, String>>,
    /// Order-update sockets ever opened, by client code.
    pub order_conns_opened: Mutex<HashMap<String, usize>>,
    /// Order state changes, fanned out to order-update sockets.
    pub events: broadcast::Sender<OrderEvent>,
    /// Bumped by `drop_sockets` (and shutdown): every socket closes.
    pub kill: watch::Sender<u64>,
    /// While set, order-update sockets stay open but send no order updates (they are
    /// lost, as over a connection that silently stopped delivering).
    pub mute_updates: AtomicBool,
    /// Bumped after each random-walk step: market sockets send their ticks.
    pub tick: watch::Sender<u64>,
    next_conn: AtomicU64,
}

/// Locks a mutex, recovering the data if a previous holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(config: SimConfig) -> Self {
        let secret: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
        let clock = SimClock::default();
        if let Some(at) = config.start_at {
            clock.set(at, false);
        }
        let market = Market::new(&config.instruments, clock.clone());
        let hours = Hours {
            clock: clock.clone(),
            calendar: std::sync::Arc::new(config.calendar.clone()),
            enforce: config.enforce_market_hours,
        };
        Self {
            config,
            clock: clock.clone(),
            secret,
            accounts: Mutex::default(),
            sessions: Mutex::new(Sessions::new(clock)),
            market: Mutex::new(market),
            book: Mutex::new(OrderBook::new(hours)),
            requests: Mutex::default(),
            faults: Mutex::default(),
            limiter: Mutex::default(),
            logins: Mutex::default(),
            feeds: Mutex::default(),
            order_conns: Mutex::default(),
            order_conns_opened: Mutex::default(),
            events: broadcast::channel(4096).0,
            kill: watch::channel(0).0,
            mute_updates: AtomicBool::new(false),
            tick: watch::channel(0).0,
            next_conn: AtomicU64::new(1),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub fn account(&self, client_code: &str) -> Option<SimAccount> {
        lock(&self.accounts).get(client_code).cloned()
    }

    /// Registers (or replaces) an account.
    pub fn add_account(&self, account: SimAccount) {
        lock(&self.accounts).insert(account.client_code.clone(), account);
    }

    pub fn publish(&self, events: Vec<OrderEvent>) {
        for e in events {
            // No receivers is fine: nobody listens for order updates.
            let _ = self.events.send(e);
        }
    }

    /// The current price in paise of (exchange, token), if the instrument exists.
    pub fn ltp(&self, exchange: &str, token: &str) -> Option<i64> {
        lock(&self.market).get(exchange, token).map(|q| q.ltp)
    }

    /// Moves a price and fills what now crosses.
    pub fn set_ltp(&self, exchange: &str, token: &str, ltp_paise: i64) {
        // Keep arithmetic on prices far from overflow whatever a caller sends.
        let ltp_paise = ltp_paise.clamp(1, 1_000_000_000_000);
        {
            let mut market = lock(&self.market);
            let Some(q) = market.get_mut(exchange, token) else {
                return;
            };
            let qty = q.instrument.lot_size.max(1);
            q.trade(ltp_paise, qty, self.clock.now_ms());
        }
        let events = lock(&self.book).on_price(exchange, token, ltp_paise);
        self.publish(events);
    }

    /// Rejects a working order with nothing filled and pushes its update; whether there
    /// was such an order.
    pub fn reject_order(&self, client_code: &str, orderid: &str, reason: &str) -> bool {
        let events = lock(&self.book).reject(client_code, orderid, reason);
        let rejected = events.is_some();
        self.publish(events.unwrap_or_default());
        rejected
    }

    /// One random-walk step for every subscribed instrument, then the fills it causes.
    pub fn walk_subscribed(&self) {
        let keys: HashSet<(String, String)> = lock(&self.feeds)
            .values()
            .flat_map(|c| c.subs.iter())
            .filter_map(|(_, et, token)| Some((exchange_name(*et)?.to_owned(), token.clone())))
            .collect();
        let mut moved = Vec::new();
        {
            let mut market = lock(&self.market);
            for key in &keys {
                market.walk(key);
                if let Some(q) = market.quotes.get(key) {
                    moved.push((key.clone(), q.ltp));
                }
            }
        }
        for ((exchange, token), ltp) in moved {
            let events = lock(&self.book).on_price(&exchange, &token, ltp);
            self.publish(events);
        }
    }

    /// Sends after-market orders whose exchange has opened to the exchange.
    pub fn release_after_market(&self) {
        let events = {
            let mut book = lock(&self.book);
            if !book.has_after_market() {
                return;
            }
            let market = lock(&self.market);
            book.release_after_market(|exchange, token| {
                market.get(exchange, token).map_or(0, |q| q.ltp)
            })
        };
        self.publish(events);
    }

    /// Whether NSE's session is running now (the market feed's ticking hours).
    pub fn nse_open(&self) -> bool {
        self.config.calendar.is_open("NSE", self.clock.now())
    }

    pub fn feed_connections(&self) -> usize {
        lock(&self.feeds).len()
    }
}

/// Removes a socket from a registry when its task ends, however it ends.
#[derive(Debug)]
pub struct ConnGuard {
    pub shared: std::sync::Arc<Shared>,
    pub id: u64,
    pub feed: bool,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.feed {
            lock(&self.shared.feeds).remove(&self.id);
        } else {
            lock(&self.shared.order_conns).remove(&self.id);
        }
    }
}
