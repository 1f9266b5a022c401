//! `PINNACLE_WORKER_*`: the order worker.

use serde::Deserialize;

use super::audit::AuditSettings;
use super::feed::{SimHours, SimNow};
use super::load::{default_max_payload, load, shown, ConfigError};

/// When intraday square-off starts each day (`PINNACLE_WORKER_SQUARE_OFF_AT`): an IST
/// `HH:MM`, or off (the empty setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SquareOffAt(Option<chrono::NaiveTime>);

impl SquareOffAt {
    /// Square-off off.
    pub const OFF: Self = Self(None);

    /// The IST time of day, or `None` when square-off is off.
    pub fn time(self) -> Option<chrono::NaiveTime> {
        self.0
    }
}

impl Default for SquareOffAt {
    /// 15:15 IST.
    fn default() -> Self {
        Self(chrono::NaiveTime::from_hms_opt(15, 15, 0))
    }
}

impl std::str::FromStr for SquareOffAt {
    type Err = ConfigError;

    /// `HH:MM` (surrounding spaces ignored); empty is off.
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Self::OFF);
        }
        chrono::NaiveTime::parse_from_str(trimmed, "%H:%M")
            .map(|at| Self(Some(at)))
            .map_err(|_| {
                ConfigError(format!(
                    "PINNACLE_WORKER_SQUARE_OFF_AT must be HH:MM (IST) or empty, not {:?}",
                    shown(text)
                ))
            })
    }
}

deserialize_from_str!(SquareOffAt);

/// The order worker (`PINNACLE_WORKER_*`).
#[derive(Clone, Debug, Deserialize)]
pub struct WorkerSettings {
    /// `PINNACLE_WORKER_CONCURRENCY`: requests handled at once by one worker.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// `PINNACLE_WORKER_QUEUE_DEPTH`: requests a worker may hold waiting for a free slot,
    /// beyond the running ones. A worker holding `concurrency + queue_depth` leaves the
    /// `order-workers` queue group until it has drained to half that (docs/ARCHITECTURE.md,
    /// "Readiness and backpressure"). Keep the sum below `NATS_SUBSCRIPTION_CAPACITY`.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    /// `PINNACLE_WORKER_SENDER_SHARE`: the most requests one user may hold in a worker
    /// that holds at least half of `concurrency + queue_depth`; their next request is
    /// refused at once, retryably (`RATE_LIMITED`), so one user's flood leaves room for
    /// everyone else. Unset: a quarter of `concurrency + queue_depth`; `0`: no limit
    /// (docs/ARCHITECTURE.md, "One user cannot fill a worker").
    #[serde(default)]
    pub sender_share: Option<usize>,
    /// `PINNACLE_WORKER_MAX_PAYLOAD`: largest accepted request body, in bytes.
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    /// `PINNACLE_WORKER_MAX_QUANTITY`: largest quantity one order may carry.
    #[serde(default = "default_max_quantity")]
    pub max_quantity: i64,
    /// `PINNACLE_WORKER_AUDIT_TIMEOUT_MS`: how long to wait for the audit stream's ack
    /// before refusing the order.
    #[serde(default = "default_audit_timeout_ms")]
    pub audit_timeout_ms: u64,
    /// The audit writers' checkpoint policy (`PINNACLE_AUDIT_*`, shared by every audit
    /// writer in the process: workers, the user API, key rotation); not a
    /// `PINNACLE_WORKER_*` variable.
    #[serde(skip)]
    pub audit: AuditSettings,
    /// `PINNACLE_WORKER_PAPER_CASH`: starting cash of every paper account, in paise.
    #[serde(default = "default_paper_cash")]
    pub paper_cash: i64,
    /// `PINNACLE_WORKER_RECONCILE_AFTER_MS`: an order still `SUBMITTED` or `UNKNOWN` this
    /// long after its last change is settled by asking the broker.
    #[serde(default = "default_reconcile_after_ms")]
    pub reconcile_after_ms: u64,
    /// `PINNACLE_WORKER_LEASE_MS`: how long a worker's lease on an in-flight order lasts
    /// (renewed every third of it while the broker call runs); see docs/ARCHITECTURE.md.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// `PINNACLE_WORKER_LEASE_GRACE_MS`: how long after a lease expired before another
    /// worker may take the order and conclude from the broker's answer (covers a request
    /// already on the wire and clock skew between workers).
    #[serde(default = "default_lease_grace_ms")]
    pub lease_grace_ms: u64,
    /// `PINNACLE_WORKER_READY_TIMEOUT_MS`: how long a starting worker waits for its first
    /// price before it joins the queue group anyway (orders for symbols it has no price
    /// for are then answered `PRICE_UNAVAILABLE`, which is retryable).
    #[serde(default = "default_ready_timeout_ms")]
    pub ready_timeout_ms: u64,
    /// `PINNACLE_WORKER_SQUARE_OFF_AT`: `HH:MM` (IST) after which, each day, working
    /// `INTRADAY` orders are cancelled and open `INTRADAY` positions closed at market.
    /// Empty turns square-off off.
    #[serde(default)]
    pub square_off_at: SquareOffAt,
    /// `PINNACLE_WORKER_SQUARE_OFF_BAND_BPS`: how far from the last price, in basis points,
    /// a square-off's closing LIMIT order is priced (sells below, buys above), so that it
    /// fills at once without being a MARKET order.
    #[serde(default = "default_square_off_band_bps")]
    pub square_off_band_bps: u32,
    /// `PINNACLE_WORKER_RECONCILE_INTERVAL_MS`: how often each worker sweeps for such orders.
    #[serde(default = "default_reconcile_interval_ms")]
    pub reconcile_interval_ms: u64,
    /// `PINNACLE_WORKER_ORDER_BOOK_SWEEP_MS`: how often a worker reads the order book of
    /// each Angel One account whose order-update socket is connected and which has working
    /// orders, and applies it like the catch-up after a reconnect: a socket that stays
    /// open but stops delivering is otherwise noticed by nothing, and fills at the broker
    /// would never reach Pinnacle. `0` turns the sweep off.
    #[serde(default = "default_order_book_sweep_ms")]
    pub order_book_sweep_ms: u64,
    /// `PINNACLE_WORKER_SMARTAPI_URL`: SmartAPI's REST root for `angel_one` accounts
    /// (a simulator's address in development and tests).
    #[serde(default = "default_smartapi_url")]
    pub smartapi_url: String,
    /// `PINNACLE_WORKER_SMARTAPI_ORDER_WS_URL`: SmartAPI's order-update WebSocket.
    #[serde(default = "default_smartapi_order_ws_url")]
    pub smartapi_order_ws_url: String,
    /// `PINNACLE_WORKER_SMARTAPI_TIMEOUT_MS`: per-request timeout; an order request that
    /// times out is looked up by its tag, never sent again.
    #[serde(default = "default_smartapi_timeout_ms")]
    pub smartapi_timeout_ms: u64,
    /// `PINNACLE_WORKER_SESSION_CHECK_MS`: how often each worker looks for `angel_one`
    /// sessions to renew in the background (0 turns background renewal off).
    #[serde(default = "default_session_check_ms")]
    pub session_check_ms: u64,
    /// `PINNACLE_WORKER_SESSION_RENEW_AHEAD_MS`: a session that ends before the daily
    /// rollover (the JWT's `exp`) is refreshed this long before it ends.
    #[serde(default = "default_session_renew_ahead_ms")]
    pub session_renew_ahead_ms: u64,
    /// `PINNACLE_WORKER_SESSION_AFTER_ROLLOVER_MS`: a session that ends at the daily
    /// rollover is replaced by a new login this long after it (a renewal before the
    /// rollover would end at the same rollover).
    #[serde(default = "default_session_after_rollover_ms")]
    pub session_after_rollover_ms: u64,
    /// `PINNACLE_WORKER_SIM_NOW`: for tests and simulations only, run the worker's clock
    /// from this RFC 3339 time (`2026-12-02T23:59:50+05:30`); empty is the real clock.
    /// Session expiry, the daily rollover and the paper broker's market hours
    /// ([`WorkerSettings::paper_hours`]) follow it.
    #[serde(default)]
    pub sim_now: SimNow,
    /// When the paper broker's exchanges are open (`PINNACLE_SIM_HOURS`,
    /// `PINNACLE_MD_HOLIDAYS`: the publisher's variables, read by the worker too); not a
    /// `PINNACLE_WORKER_*` variable.
    #[serde(skip)]
    pub paper_hours: PaperHours,
}

/// When the paper broker treats an exchange as open: the settings the publisher's
/// simulated feed follows, so that paper prices and paper fills keep the same hours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaperHours {
    /// `PINNACLE_SIM_HOURS`: `always` (the default: every order is taken and filled as if
    /// the market were open) or `exchange`: an order placed while its exchange is closed
    /// is an after-market order, filled at the next session's first tick.
    pub hours: SimHours,
    /// `PINNACLE_MD_HOLIDAYS`: the holiday calendar file; the bundled one when unset.
    pub holidays: Option<String>,
}

/// `PINNACLE_SIM_HOURS` alone.
#[derive(Deserialize)]
struct HoursVariable {
    #[serde(default)]
    hours: SimHours,
}

/// `PINNACLE_MD_HOLIDAYS` alone.
#[derive(Deserialize)]
struct HolidaysVariable {
    #[serde(default)]
    holidays: Option<String>,
}

impl PaperHours {
    /// Loads `PINNACLE_SIM_HOURS` and `PINNACLE_MD_HOLIDAYS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads `PINNACLE_SIM_HOURS` and `PINNACLE_MD_HOLIDAYS` from `vars` (name, value).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let hours: HoursVariable = envy::prefixed("PINNACLE_SIM_")
            .from_iter(vars.iter().cloned())
            .map_err(|e| ConfigError(format!("PINNACLE_SIM_*: {e}")))?;
        let holidays: HolidaysVariable = envy::prefixed("PINNACLE_MD_")
            .from_iter(vars)
            .map_err(|e| ConfigError(format!("PINNACLE_MD_*: {e}")))?;
        Ok(Self {
            hours: hours.hours,
            holidays: holidays.holidays,
        })
    }
}

fn default_session_check_ms() -> u64 {
    30_000
}

fn default_session_renew_ahead_ms() -> u64 {
    300_000
}

fn default_session_after_rollover_ms() -> u64 {
    60_000
}

fn default_smartapi_url() -> String {
    "https://apiconnect.angelone.in".into()
}

fn default_smartapi_order_ws_url() -> String {
    "wss://tns.angelone.in/smart-order-update".into()
}

fn default_smartapi_timeout_ms() -> u64 {
    7_000
}

fn default_reconcile_after_ms() -> u64 {
    10_000
}

fn default_square_off_band_bps() -> u32 {
    100
}

fn default_lease_ms() -> u64 {
    5_000
}

fn default_lease_grace_ms() -> u64 {
    2_000
}

fn default_ready_timeout_ms() -> u64 {
    10_000
}

fn default_reconcile_interval_ms() -> u64 {
    2_000
}

fn default_order_book_sweep_ms() -> u64 {
    30_000
}

fn default_paper_cash() -> i64 {
    100_000_000
}

fn default_concurrency() -> usize {
    64
}

fn default_queue_depth() -> usize {
    64
}

fn default_max_quantity() -> i64 {
    1_000_000
}

fn default_audit_timeout_ms() -> u64 {
    2_000
}

impl WorkerSettings {
    /// Loads `PINNACLE_WORKER_*`, `PINNACLE_AUDIT_*` into [`WorkerSettings::audit`], and
    /// `PINNACLE_SIM_HOURS` and `PINNACLE_MD_HOLIDAYS` into [`WorkerSettings::paper_hours`].
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut settings: Self = load("PINNACLE_WORKER_")?;
        settings.audit = AuditSettings::from_env()?;
        settings.paper_hours = PaperHours::from_env()?;
        Ok(settings)
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            queue_depth: default_queue_depth(),
            sender_share: None,
            max_payload: default_max_payload(),
            max_quantity: default_max_quantity(),
            audit_timeout_ms: default_audit_timeout_ms(),
            audit: AuditSettings::default(),
            paper_cash: default_paper_cash(),
            reconcile_after_ms: default_reconcile_after_ms(),
            reconcile_interval_ms: default_reconcile_interval_ms(),
            order_book_sweep_ms: default_order_book_sweep_ms(),
            lease_ms: default_lease_ms(),
            lease_grace_ms: default_lease_grace_ms(),
            ready_timeout_ms: default_ready_timeout_ms(),
            square_off_at: SquareOffAt::default(),
            square_off_band_bps: default_square_off_band_bps(),
            smartapi_url: default_smartapi_url(),
            smartapi_order_ws_url: default_smartapi_order_ws_url(),
            smartapi_timeout_ms: default_smartapi_timeout_ms(),
            session_check_ms: default_session_check_ms(),
            session_renew_ahead_ms: default_session_renew_ahead_ms(),
            session_after_rollover_ms: default_session_after_rollover_ms(),
            sim_now: SimNow::REAL,
            paper_hours: PaperHours::default(),
        }
    }
}
