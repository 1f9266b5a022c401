//! Typed settings, loaded from environment variables with `envy`.
//!
//! Every variable is listed, with its default, in `.env.example` at the workspace root
//! and in `docs/CONFIGURATION.md`. Secrets are held as [`SecretString`], whose `Debug`
//! prints `[REDACTED]`, so logging a settings struct never leaks one.

use secrecy::SecretString;
use serde::Deserialize;

/// A settings group could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A configuration error with a message for the operator.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn load<T: serde::de::DeserializeOwned>(prefix: &str) -> Result<T, ConfigError> {
    envy::prefixed(prefix)
        .from_env()
        .map_err(|e| ConfigError(format!("{prefix}*: {e}")))
}

/// How to reach NATS (`NATS_*`).
#[derive(Clone, Deserialize)]
pub struct NatsSettings {
    /// `NATS_URL`: one server URL, or several separated by commas (the seed nodes of a
    /// cluster; the client also learns the others from the server). Credentials in a URL
    /// are refused: use the variables below, which apply to every server.
    #[serde(default = "default_nats_url")]
    pub url: String,
    /// `NATS_USER`: user name for user/password authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// `NATS_PASSWORD`: password for user/password authentication.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// `NATS_CREDS_FILE`: path to a `.creds` file (JWT + NKey), an alternative to user/password.
    #[serde(default)]
    pub creds_file: Option<String>,
    /// `NATS_SUBSCRIPTION_CAPACITY`: messages buffered per subscription before the client
    /// drops them as a slow consumer. Sized well above async-nats's 65,536 default.
    #[serde(default = "default_subscription_capacity")]
    pub subscription_capacity: usize,
    /// `NATS_INBOX_PREFIX`: where request replies arrive. A trader login on the shipped
    /// cluster config may subscribe only to `_INBOX.<user_id>.>`, so its clients set
    /// `_INBOX.<user_id>`; unset is the default `_INBOX`.
    #[serde(default)]
    pub inbox_prefix: Option<String>,
}

fn default_nats_url() -> String {
    "nats://127.0.0.1:4222".into()
}

fn default_subscription_capacity() -> usize {
    1 << 20
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("creds_file", &self.creds_file)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

impl NatsSettings {
    /// Loads `NATS_*`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("NATS_")
    }

    /// The servers of `NATS_URL`, in the order given. A URL that does not parse, or that
    /// carries `user:pass@` (async-nats would ignore it silently), is an error naming the
    /// URL's position, never its text, which may hold a secret.
    pub fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, ConfigError> {
        let mut servers = Vec::new();
        for (i, url) in self.url.split(',').map(str::trim).enumerate() {
            let position = i + 1;
            if url.is_empty() {
                return Err(ConfigError(format!("NATS_URL: server {position} is empty")));
            }
            // The parser's message names the fault ("invalid port number"), never the URL.
            let server: async_nats::ServerAddr = url
                .parse()
                .map_err(|e| ConfigError(format!("NATS_URL: server {position}: {e}")))?;
            if server.has_user_pass() {
                return Err(ConfigError(format!(
                    "NATS_URL: server {position} has credentials in its URL; \
                     use NATS_USER and NATS_PASSWORD (or NATS_CREDS_FILE)"
                )));
            }
            servers.push(server);
        }
        Ok(servers)
    }

    /// Settings for a server URL with no authentication.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: None,
            password: None,
            creds_file: None,
            inbox_prefix: None,
            subscription_capacity: default_subscription_capacity(),
        }
    }
}

/// Where the database is (`DATABASE_URL`). `Debug` hides a password in the URL.
#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: `sqlite://path?mode=rwc` or `postgres://user@host/db`.
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS`: pool size.
    #[serde(default = "default_max_connections")]
    pub database_max_connections: u32,
}

fn default_max_connections() -> u32 {
    10
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .finish()
    }
}

/// Hides the password in a `scheme://user:password@host/…` URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl DatabaseSettings {
    /// Loads `DATABASE_URL` and `DATABASE_MAX_CONNECTIONS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("")
    }
}

/// The credential vault's master key ring (`PINNACLE_MASTER_KEY*`, see `crate::crypto::ring`).
#[derive(Clone, Debug, Deserialize)]
pub struct VaultSettings {
    /// `PINNACLE_MASTER_KEY`: a one-key ring, 32 random bytes, base64-encoded. Generate
    /// one with `pinnacle keys generate`.
    #[serde(default)]
    pub master_key: Option<SecretString>,
    /// `PINNACLE_MASTER_KEY_ID`: the id of `PINNACLE_MASTER_KEY`.
    #[serde(default = "default_key_id")]
    pub master_key_id: u32,
    /// `PINNACLE_MASTER_KEYS`: the ring inline, `1:<base64>,2:<base64>`.
    #[serde(default)]
    pub master_keys: Option<SecretString>,
    /// `PINNACLE_MASTER_KEY_FILE`: a file with one `<id>:<base64>` per line.
    #[serde(default)]
    pub master_key_file: Option<String>,
    /// `PINNACLE_MASTER_KEY_CURRENT`: the id new data keys are wrapped under (default:
    /// the highest id in the ring).
    #[serde(default)]
    pub master_key_current: Option<u32>,
    /// `PINNACLE_PEPPER_KEY_ID`: the key the API-token pepper and audit-chain key derive
    /// from (default: the lowest id). Keep it in the ring: it survives rotation.
    #[serde(default)]
    pub pepper_key_id: Option<u32>,
    /// `PINNACLE_KEY_MAX_ENCRYPTIONS`: wraps one master key may make before it refuses and
    /// must be rotated (default 2^30, a quarter of NIST's 2^32 random-nonce limit).
    #[serde(default = "default_key_max_encryptions")]
    pub key_max_encryptions: i64,
}

fn default_key_id() -> u32 {
    1
}

fn default_key_max_encryptions() -> i64 {
    crate::crypto::DEFAULT_MAX_ENCRYPTIONS
}

impl VaultSettings {
    /// Loads `PINNACLE_MASTER_KEY*`, `PINNACLE_PEPPER_KEY_ID` and `PINNACLE_KEY_MAX_ENCRYPTIONS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("PINNACLE_")
    }

    /// A one-key ring.
    pub fn single(master_key: SecretString, key_id: u32) -> Self {
        Self {
            master_key: Some(master_key),
            master_key_id: key_id,
            master_keys: None,
            master_key_file: None,
            master_key_current: None,
            pepper_key_id: None,
            key_max_encryptions: default_key_max_encryptions(),
        }
    }

    /// The ring in a key file (`<id>:<base64>` per line; the highest id is current).
    pub fn file(path: impl Into<String>) -> Self {
        Self {
            master_key: None,
            master_key_file: Some(path.into()),
            ..Self::single(SecretString::from(String::new()), default_key_id())
        }
    }
}

/// The simulated market feed (`PINNACLE_SIM_*`).
#[derive(Clone, Debug, Deserialize)]
pub struct SimFeedSettings {
    /// `PINNACLE_SIM_SYMBOLS`: comma-separated `EXCHANGE:SYMBOL[@PRICE]`, price in rupees.
    #[serde(default = "default_symbols")]
    pub symbols: String,
    /// `PINNACLE_SIM_SEED`: seed of the random walk; the same seed gives the same ticks.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `PINNACLE_SIM_INTERVAL_MS`: milliseconds between rounds; each round ticks every symbol.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// `PINNACLE_SIM_SYNTHETIC`: this many generated NSE equities (`SIM00001-EQ`, …) on top
    /// of the list, for load tests with thousands of symbols.
    #[serde(default)]
    pub synthetic: usize,
    /// `PINNACLE_SIM_DEPTH`: also publish the five-level book on `md.depth.*`.
    #[serde(default = "default_true")]
    pub depth: bool,
    /// `PINNACLE_SIM_HOURS`: `always` (default: development and tests see prices at any
    /// hour) or `exchange`, which ticks each symbol only while its exchange is open
    /// (hours, weekends, holidays), so paper orders fill only then.
    #[serde(default)]
    pub hours: SimHours,
    /// `PINNACLE_SIM_NOW`: run the publisher's clock from this RFC 3339 time
    /// (`2026-12-02T20:00:00+05:30`) for simulated ticks, candles and market status; empty
    /// is the real clock. For tests and demonstrations.
    #[serde(default)]
    pub now: String,
}

/// When the simulated feed ticks (`PINNACLE_SIM_HOURS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimHours {
    /// At any hour, weekends and holidays included.
    #[default]
    Always,
    /// Only while the symbol's exchange is open.
    Exchange,
}

fn default_true() -> bool {
    true
}

fn default_symbols() -> String {
    "NSE:RELIANCE-EQ@1290,NSE:SBIN-EQ@820.50,NSE:TCS-EQ@3410,NSE:INFY-EQ@1530.25,NSE:HDFCBANK-EQ@1745".into()
}

fn default_seed() -> u64 {
    42
}

fn default_interval_ms() -> u64 {
    200
}

impl SimFeedSettings {
    /// Loads `PINNACLE_SIM_*`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("PINNACLE_SIM_")
    }
}

impl Default for SimFeedSettings {
    fn default() -> Self {
        Self {
            symbols: default_symbols(),
            seed: default_seed(),
            interval_ms: default_interval_ms(),
            synthetic: 0,
            depth: true,
            hours: SimHours::Always,
            now: String::new(),
        }
    }
}

/// Deserializes a setting through its `FromStr`, whose error names the variable.
macro_rules! deserialize_from_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The first 40 characters of a rejected value, for an error message.
fn shown(text: &str) -> String {
    text.chars().take(40).collect()
}

/// Which tick source the publisher runs (`PINNACLE_MD_FEED`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FeedKind {
    /// `sim`: the simulated random walk (`PINNACLE_SIM_*`).
    #[default]
    Sim,
    /// `replay`: a recording (`PINNACLE_MD_REPLAY_*`).
    Replay,
    /// `angel_one`: Angel One's SmartWebSocketV2 feed (`ANGEL_ONE_*`).
    AngelOne,
}

impl FeedKind {
    /// Every feed.
    pub const ALL: [Self; 3] = [Self::Sim, Self::Replay, Self::AngelOne];

    /// The setting's spelling: `sim`, `replay` or `angel_one`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Replay => "replay",
            Self::AngelOne => "angel_one",
        }
    }
}

impl std::str::FromStr for FeedKind {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == text.trim())
            .ok_or_else(|| {
                ConfigError(format!(
                    "PINNACLE_MD_FEED must be sim, replay or angel_one, not {:?}",
                    shown(text)
                ))
            })
    }
}

deserialize_from_str!(FeedKind);

/// The Angel One feed's subscription mode (`PINNACLE_MD_ANGEL_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AngelMode {
    /// `LTP`: last traded price only.
    Ltp,
    /// `QUOTE`: LTP plus the day's OHLC and volume.
    Quote,
    /// `SNAP_QUOTE` (also `SNAPQUOTE`, `FULL`): quote plus the five-level book.
    #[default]
    SnapQuote,
    /// `DEPTH`: SNAP_QUOTE plus the 20-level book for NSE cash symbols.
    Depth,
}

impl AngelMode {
    /// Every mode.
    pub const ALL: [Self; 4] = [Self::Ltp, Self::Quote, Self::SnapQuote, Self::Depth];

    /// The canonical spelling: `LTP`, `QUOTE`, `SNAP_QUOTE` or `DEPTH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ltp => "LTP",
            Self::Quote => "QUOTE",
            Self::SnapQuote => "SNAP_QUOTE",
            Self::Depth => "DEPTH",
        }
    }
}

impl std::str::FromStr for AngelMode {
    type Err = ConfigError;

    /// Case-insensitive, surrounding spaces ignored; `SNAPQUOTE` and `FULL` are
    /// `SNAP_QUOTE`.
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let upper = text.trim().to_ascii_uppercase();
        match upper.as_str() {
            "SNAPQUOTE" | "FULL" => Ok(Self::SnapQuote),
            other => Self::ALL
                .into_iter()
                .find(|m| m.as_str() == other)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "PINNACLE_MD_ANGEL_MODE must be LTP, QUOTE, SNAP_QUOTE or DEPTH, not {:?}",
                        shown(text)
                    ))
                }),
        }
    }
}

deserialize_from_str!(AngelMode);

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

/// The market-data services of the publisher (`PINNACLE_MD_*`).
#[derive(Clone, Debug, Deserialize)]
pub struct MarketDataSettings {
    /// `PINNACLE_MD_FEED`: `sim` (default), `replay`, or `angel_one` (Angel One's
    /// SmartWebSocketV2 live feed, logged in with the `ANGEL_ONE_*` credentials).
    #[serde(default)]
    pub feed: FeedKind,
    /// `PINNACLE_MD_REPLAY_FILE`: JSON-lines file of ticks or candles, for `replay`.
    #[serde(default)]
    pub replay_file: Option<String>,
    /// `PINNACLE_MD_REPLAY_SPEED`: replay speed factor; `2` is twice as fast, `0` as fast
    /// as possible.
    #[serde(default = "default_speed")]
    pub replay_speed: f64,
    /// `PINNACLE_MD_REPLAY_LOOP`: start the file again when it ends.
    #[serde(default)]
    pub replay_loop: bool,
    /// `PINNACLE_MD_INSTRUMENTS`: instrument master (OpenAPIScripMaster.json format), a
    /// path or an `http(s)://` URL; the bundled sample when unset.
    #[serde(default)]
    pub instruments: Option<String>,
    /// `PINNACLE_MD_HOLIDAYS`: holiday calendar file; the bundled one when unset.
    #[serde(default)]
    pub holidays: Option<String>,
    /// `PINNACLE_MD_STALL_MS`: the watchdog resets the feed after this long without a tick.
    #[serde(default = "default_stall_ms")]
    pub stall_ms: u64,
    /// `PINNACLE_MD_MAX_PAYLOAD`: largest accepted request body, bytes.
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    /// `PINNACLE_MD_ANGEL_SYMBOLS`: comma-separated `EXCHANGE:SYMBOL` the Angel One feed
    /// subscribes, resolved to tokens through the instrument master.
    #[serde(default = "default_angel_symbols")]
    pub angel_symbols: String,
    /// `PINNACLE_MD_ANGEL_MODE`: the subscription mode, `LTP`, `QUOTE`, `SNAP_QUOTE`
    /// (default) or `DEPTH` (SNAP_QUOTE plus the 20-level book for NSE cash symbols).
    #[serde(default)]
    pub angel_mode: AngelMode,
    /// `PINNACLE_MD_ANGEL_REST_URL`: SmartAPI's REST root for the platform login and
    /// historical candles (a simulator's address in development and tests).
    #[serde(default = "default_angel_rest_url")]
    pub angel_rest_url: String,
    /// `PINNACLE_MD_ANGEL_FEED_URL`: the SmartWebSocketV2 market-feed URL.
    #[serde(default = "default_angel_feed_url")]
    pub angel_feed_url: String,
    /// `PINNACLE_MD_ANGEL_TIMEOUT_MS`: per-request timeout of SmartAPI REST calls.
    #[serde(default = "default_angel_timeout_ms")]
    pub angel_timeout_ms: u64,
    /// `PINNACLE_MD_TICK_TRACE_RATIO`: fraction of ticks published with a trace context
    /// (e.g. `0.001` for one in a thousand); `0` traces none.
    #[serde(default)]
    pub tick_trace_ratio: f64,
}

fn default_angel_symbols() -> String {
    "NSE:RELIANCE-EQ,NSE:SBIN-EQ,NSE:TCS-EQ,NSE:INFY-EQ,NSE:HDFCBANK-EQ".into()
}

fn default_angel_rest_url() -> String {
    "https://apiconnect.angelone.in".into()
}

fn default_angel_feed_url() -> String {
    "wss://smartapisocket.angelone.in/smart-stream".into()
}

fn default_angel_timeout_ms() -> u64 {
    7_000
}

fn default_speed() -> f64 {
    1.0
}

fn default_stall_ms() -> u64 {
    10_000
}

impl MarketDataSettings {
    /// Loads `PINNACLE_MD_*`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("PINNACLE_MD_")
    }
}

impl Default for MarketDataSettings {
    fn default() -> Self {
        Self {
            feed: FeedKind::default(),
            replay_file: None,
            replay_speed: default_speed(),
            replay_loop: false,
            instruments: None,
            holidays: None,
            stall_ms: default_stall_ms(),
            max_payload: default_max_payload(),
            angel_symbols: default_angel_symbols(),
            angel_mode: AngelMode::default(),
            angel_rest_url: default_angel_rest_url(),
            angel_feed_url: default_angel_feed_url(),
            angel_timeout_ms: default_angel_timeout_ms(),
            tick_trace_ratio: 0.0,
        }
    }
}

/// The platform-wide Angel One market-data credentials (`ANGEL_ONE_*`).
///
/// These are the only Angel One credentials the publisher ever reads, and they come only
/// from the environment. The simulated feed needs none of them. Where to reach SmartAPI
/// is not a credential: it lives in [`MarketDataSettings`] (`PINNACLE_MD_ANGEL_*`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AngelOneMarketDataSettings {
    /// `ANGEL_ONE_API_KEY`: the platform's SmartAPI key.
    pub api_key: Option<SecretString>,
    /// `ANGEL_ONE_CLIENT_ID`: the platform's Angel One client code.
    pub client_id: Option<String>,
    /// `ANGEL_ONE_PIN`: the client's PIN/MPIN, for login.
    pub pin: Option<SecretString>,
    /// `ANGEL_ONE_TOTP_SECRET`: base32 TOTP seed, for login.
    pub totp_secret: Option<SecretString>,
}

impl AngelOneMarketDataSettings {
    /// Loads `ANGEL_ONE_*`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("ANGEL_ONE_")
    }

    /// Whether the key and client id are both set.
    pub fn is_configured(&self) -> bool {
        self.api_key.is_some() && self.client_id.is_some()
    }

    /// Whether none of the variables is set (Angel One is not in use).
    pub fn is_empty(&self) -> bool {
        self.api_key.is_none()
            && self.client_id.is_none()
            && self.pin.is_none()
            && self.totp_secret.is_none()
    }

    /// The names of the variables a login needs that are unset (or blank).
    pub fn missing(&self) -> Vec<&'static str> {
        use secrecy::ExposeSecret;
        let blank = |s: &Option<SecretString>| {
            s.as_ref()
                .is_none_or(|v| v.expose_secret().trim().is_empty())
        };
        let mut missing = Vec::new();
        if blank(&self.api_key) {
            missing.push("ANGEL_ONE_API_KEY");
        }
        if self
            .client_id
            .as_deref()
            .is_none_or(|c| c.trim().is_empty())
        {
            missing.push("ANGEL_ONE_CLIENT_ID");
        }
        if blank(&self.pin) {
            missing.push("ANGEL_ONE_PIN");
        }
        if blank(&self.totp_secret) {
            missing.push("ANGEL_ONE_TOTP_SECRET");
        }
        missing
    }
}

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
    /// Session expiry and the daily rollover follow it.
    #[serde(default)]
    pub sim_now: String,
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

fn default_paper_cash() -> i64 {
    100_000_000
}

fn default_concurrency() -> usize {
    64
}

fn default_queue_depth() -> usize {
    64
}

fn default_max_payload() -> usize {
    16 * 1024
}

fn default_max_quantity() -> i64 {
    1_000_000
}

fn default_audit_timeout_ms() -> u64 {
    2_000
}

impl WorkerSettings {
    /// Loads `PINNACLE_WORKER_*`, and `PINNACLE_AUDIT_*` into [`WorkerSettings::audit`].
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut settings: Self = load("PINNACLE_WORKER_")?;
        settings.audit = AuditSettings::from_env()?;
        Ok(settings)
    }
}

/// When audit writers checkpoint their chains, and how stale an unsealed link may be before
/// `pinnacle audit verify` reports it (`PINNACLE_AUDIT_*`; see docs/AUDIT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct AuditSettings {
    /// `PINNACLE_AUDIT_CHECKPOINT_EVERY`: a writer checkpoints a chain after appending this
    /// many events to it.
    #[serde(default = "default_audit_checkpoint_every")]
    pub checkpoint_every: u64,
    /// `PINNACLE_AUDIT_CHECKPOINT_SECS`: and at the latest this many seconds after its first
    /// append since its last checkpoint of that chain (a timer, no further append needed).
    #[serde(default = "default_audit_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// `PINNACLE_AUDIT_SEAL_GRACE_SECS`: `pinnacle audit verify` reports a chain whose last
    /// link is older than `CHECKPOINT_SECS` + this and covered by no checkpoint.
    #[serde(default = "default_audit_seal_grace_secs")]
    pub seal_grace_secs: u64,
}

fn default_audit_checkpoint_every() -> u64 {
    100
}

fn default_audit_checkpoint_secs() -> u64 {
    10
}

fn default_audit_seal_grace_secs() -> u64 {
    50
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_every: default_audit_checkpoint_every(),
            checkpoint_secs: default_audit_checkpoint_secs(),
            seal_grace_secs: default_audit_seal_grace_secs(),
        }
    }
}

impl AuditSettings {
    /// Loads `PINNACLE_AUDIT_*`; refuses the old worker-only names, which would otherwise
    /// be ignored in silence, and a zero interval.
    pub fn from_env() -> Result<Self, ConfigError> {
        for (old, new) in [
            (
                "PINNACLE_WORKER_AUDIT_CHECKPOINT_EVERY",
                "PINNACLE_AUDIT_CHECKPOINT_EVERY",
            ),
            (
                "PINNACLE_WORKER_AUDIT_CHECKPOINT_SECS",
                "PINNACLE_AUDIT_CHECKPOINT_SECS",
            ),
        ] {
            if std::env::var_os(old).is_some() {
                return Err(ConfigError(format!(
                    "{old} was renamed {new} (it applies to every audit writer)"
                )));
            }
        }
        let settings: Self = load("PINNACLE_AUDIT_")?;
        if settings.checkpoint_every == 0 || settings.checkpoint_secs == 0 {
            return Err(ConfigError(
                "PINNACLE_AUDIT_CHECKPOINT_EVERY and PINNACLE_AUDIT_CHECKPOINT_SECS must be at least 1"
                    .into(),
            ));
        }
        Ok(settings)
    }

    /// The writers' policy.
    pub fn policy(&self) -> crate::audit::CheckpointPolicy {
        crate::audit::CheckpointPolicy {
            every_events: self.checkpoint_every,
            every: std::time::Duration::from_secs(self.checkpoint_secs),
        }
    }

    /// How old an unsealed link may be before `verify` reports it.
    pub fn max_unsealed(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.checkpoint_secs.saturating_add(self.seal_grace_secs))
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            queue_depth: default_queue_depth(),
            max_payload: default_max_payload(),
            max_quantity: default_max_quantity(),
            audit_timeout_ms: default_audit_timeout_ms(),
            audit: AuditSettings::default(),
            paper_cash: default_paper_cash(),
            reconcile_after_ms: default_reconcile_after_ms(),
            reconcile_interval_ms: default_reconcile_interval_ms(),
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
            sim_now: String::new(),
        }
    }
}

/// The user API (`PINNACLE_API_*`).
#[derive(Clone, Debug, Deserialize)]
pub struct UserApiSettings {
    /// `PINNACLE_API_BIND`: address to listen on.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// `PINNACLE_API_ADMIN_TOKEN`: bearer token for admin routes (creating users). Unset
    /// disables them.
    #[serde(default)]
    pub admin_token: Option<SecretString>,
}

fn default_bind() -> String {
    "127.0.0.1:8080".into()
}

impl UserApiSettings {
    /// Loads `PINNACLE_API_*`.
    pub fn from_env() -> Result<Self, ConfigError> {
        load("PINNACLE_API_")
    }
}

/// Observability endpoints (`PINNACLE_METRICS_*`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MetricsSettings {
    /// `PINNACLE_METRICS_ADDR`: where to serve Prometheus metrics on `GET /metrics`
    /// (e.g. `127.0.0.1:9464`); unset serves none.
    #[serde(default)]
    pub addr: Option<String>,
}

impl MetricsSettings {
    /// Loads `PINNACLE_METRICS_*`; an empty address counts as unset.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut settings: Self = load("PINNACLE_METRICS_")?;
        settings.addr = settings.addr.filter(|a| !a.trim().is_empty());
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn nats_url_takes_a_list_of_seed_servers_and_refuses_credentials_in_it() {
        let list = NatsSettings::for_url(" nats://127.0.0.1:4222, 127.0.0.1:4223,tls://n3:4224 ");
        let servers = list.servers().expect("three servers");
        let ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
        assert_eq!(ports, [4222, 4223, 4224]);
        assert!(servers[2].tls_required());

        for (url, want) in [
            ("nats://a:1,,nats://b:2", "server 2 is empty"),
            ("nats://a:1,nats://b:99999", "server 2"),
            ("http://a:1", "server 1"),
            (
                "nats://a:1,nats://admin:hunter2@b:2",
                "server 2 has credentials",
            ),
        ] {
            let error = NatsSettings::for_url(url)
                .servers()
                .expect_err(url)
                .to_string();
            assert!(error.contains(want), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let settings = NatsSettings {
            password: Some(SecretString::from("hunter2-nats")),
            ..NatsSettings::for_url("nats://127.0.0.1:4222")
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let vault = VaultSettings {
            master_keys: Some(SecretString::from("2:c2VjcmV0LW1hc3Rlci1rZXk=")),
            ..VaultSettings::single(SecretString::from("c2VjcmV0LW1hc3Rlci1rZXk="), 1)
        };
        assert!(!format!("{vault:?}").contains("c2VjcmV0"));
        assert_eq!(
            vault
                .master_key
                .as_ref()
                .map(|k| k.expose_secret().to_string()),
            Some("c2VjcmV0LW1hc3Rlci1rZXk=".to_string())
        );
    }

    #[test]
    fn database_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/p"),
            "postgres://app:***@db:5432/p"
        );
        assert_eq!(
            redact_url("sqlite:///x.db?mode=rwc"),
            "sqlite:///x.db?mode=rwc"
        );
        let settings = DatabaseSettings {
            database_url: "postgres://app:s3cret@db/p".into(),
            database_max_connections: 1,
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn enum_settings_parse_with_an_error_naming_the_variable() {
        for feed in FeedKind::ALL {
            assert_eq!(feed.as_str().parse::<FeedKind>().ok(), Some(feed));
        }
        for mode in AngelMode::ALL {
            assert_eq!(mode.as_str().parse::<AngelMode>().ok(), Some(mode));
        }
        assert_eq!(
            " snap_quote ".parse::<AngelMode>().ok(),
            Some(AngelMode::SnapQuote)
        );
        assert_eq!("FULL".parse::<AngelMode>().ok(), Some(AngelMode::SnapQuote));
        assert_eq!("ltp".parse::<AngelMode>().ok(), Some(AngelMode::Ltp));
        let at = |t: &str| t.parse::<SquareOffAt>().map(SquareOffAt::time);
        assert_eq!(at("").ok(), Some(None));
        assert_eq!(at("  ").ok(), Some(None));
        assert_eq!(
            at("09:05").ok(),
            chrono::NaiveTime::from_hms_opt(9, 5, 0).map(Some)
        );
        assert_eq!(
            SquareOffAt::default().time(),
            chrono::NaiveTime::from_hms_opt(15, 15, 0)
        );
        for (error, variable) in [
            ("kafka".parse::<FeedKind>().err(), "PINNACLE_MD_FEED"),
            ("Sim".parse::<FeedKind>().err(), "PINNACLE_MD_FEED"),
            ("FAST".parse::<AngelMode>().err(), "PINNACLE_MD_ANGEL_MODE"),
            (
                "25:00".parse::<SquareOffAt>().err(),
                "PINNACLE_WORKER_SQUARE_OFF_AT",
            ),
            (
                "3pm".parse::<SquareOffAt>().err(),
                "PINNACLE_WORKER_SQUARE_OFF_AT",
            ),
            (
                "15:15:00".parse::<SquareOffAt>().err(),
                "PINNACLE_WORKER_SQUARE_OFF_AT",
            ),
        ] {
            let error = error.expect(variable).to_string();
            assert!(error.contains(variable), "{error}");
        }
    }

    #[test]
    fn a_malformed_setting_fails_loading_with_its_name() {
        let vars = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let worker: Result<WorkerSettings, _> = envy::prefixed("PINNACLE_WORKER_")
            .from_iter(vars(&[("PINNACLE_WORKER_SQUARE_OFF_AT", "15.15")]));
        let error = worker.expect_err("refused").to_string();
        assert!(error.contains("PINNACLE_WORKER_SQUARE_OFF_AT"), "{error}");
        let worker: WorkerSettings = envy::prefixed("PINNACLE_WORKER_")
            .from_iter(vars(&[("PINNACLE_WORKER_SQUARE_OFF_AT", "")]))
            .expect("empty is off");
        assert_eq!(worker.square_off_at, SquareOffAt::OFF);
        let md: Result<MarketDataSettings, _> =
            envy::prefixed("PINNACLE_MD_").from_iter(vars(&[("PINNACLE_MD_FEED", "kafka")]));
        let error = md.expect_err("refused").to_string();
        assert!(error.contains("PINNACLE_MD_FEED"), "{error}");
        let md: MarketDataSettings = envy::prefixed("PINNACLE_MD_")
            .from_iter(vars(&[("PINNACLE_MD_ANGEL_MODE", "depth")]))
            .expect("loads");
        assert_eq!((md.feed, md.angel_mode), (FeedKind::Sim, AngelMode::Depth));
    }

    #[test]
    fn defaults_are_sane() {
        let sim = SimFeedSettings::default();
        assert!(sim.symbols.contains("NSE:SBIN-EQ"));
        assert!(WorkerSettings::default().max_quantity > 0);
    }
}
