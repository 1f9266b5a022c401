//! `PINNACLE_SIM_*`: the simulated market feed, and [`SimNow`], the simulated clock the
//! feed (`PINNACLE_SIM_NOW`) and the order worker (`PINNACLE_WORKER_SIM_NOW`) can run from.

use serde::Deserialize;

use super::load::{load, shown, ConfigError};
use pinnacle_protocol::clock::Clock;

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
    pub now: SimNow,
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
            now: SimNow::REAL,
        }
    }
}

/// Where a simulated clock starts (`PINNACLE_SIM_NOW`, `PINNACLE_WORKER_SIM_NOW`): an RFC
/// 3339 time such as `2026-12-02T09:15:00+05:30`, parsed when the settings load; empty (the
/// default) is the real clock. For tests and demonstrations only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimNow(Option<chrono::DateTime<chrono::Utc>>);

impl SimNow {
    /// The real clock.
    pub const REAL: Self = Self(None);

    /// A clock that starts at `at`.
    pub fn at(at: chrono::DateTime<chrono::Utc>) -> Self {
        Self(Some(at))
    }

    /// When the simulated clock starts; `None` for the real clock.
    pub fn start(self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0
    }

    /// A clock that reads the start time now and runs on at the real rate from here.
    pub fn clock(self) -> Clock {
        self.0.map_or_else(Clock::real, Clock::starting_at)
    }
}

impl std::str::FromStr for SimNow {
    type Err = ConfigError;

    /// An RFC 3339 time (surrounding spaces ignored); empty is the real clock.
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Self::REAL);
        }
        chrono::DateTime::parse_from_rfc3339(trimmed)
            .map(|at| Self::at(at.with_timezone(&chrono::Utc)))
            .map_err(|_| {
                ConfigError(format!(
                    "PINNACLE_SIM_NOW and PINNACLE_WORKER_SIM_NOW must be an RFC 3339 time \
                     (2026-12-02T09:15:00+05:30) or empty, not {:?}",
                    shown(text)
                ))
            })
    }
}

deserialize_from_str!(SimNow);
