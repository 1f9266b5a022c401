//! `PINNACLE_MD_*`: the publisher's market-data services and feed choice, and `ANGEL_ONE_*`:
//! the platform-wide Angel One credentials of its live feed.

use secrecy::SecretString;
use serde::Deserialize;

use super::load::{default_max_payload, load, shown, ConfigError};

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
