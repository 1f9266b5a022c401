//! Configuration types: the simulator's settings, accounts and instruments (with the
//! built-in instrument set and a loader for `OpenAPIScripMaster.json`, SPEC §5).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::calendar::SimCalendar;
use crate::error::SimError;

/// When the tokens issued at login stop working (SPEC §2 "Session validity").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionExpiry {
    /// The documented behaviour: the session lives until the next 00:00 IST.
    #[default]
    NextMidnightIst,
    /// A fixed lifetime after login, for tests of expiry handling.
    After(Duration),
}

/// Everything the simulator needs to start.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where REST and both WebSockets listen (one port for all three).
    pub bind: SocketAddr,
    /// Lifetime of the JWT / refresh / feed tokens.
    pub session_expiry: SessionExpiry,
    /// Enforce SPEC §6 per client code; a breach answers plain-text HTTP 403.
    pub enforce_rate_limits: bool,
    /// How often each subscribed (token, mode) pair gets a tick.
    pub tick_interval: Duration,
    /// Send one tick per new subscription immediately (not verified on the live feed).
    pub snapshot_on_subscribe: bool,
    /// Keep ticking outside 09:15–15:30 IST on NSE trading days (not verified on the live
    /// feed). Prices that move outside hours fill nothing while `enforce_market_hours`.
    pub ticks_outside_market_hours: bool,
    /// The tradable universe; orders and subscriptions refer to these.
    pub instruments: Vec<SimInstrument>,
    /// Exchange hours, weekends and holidays (the bundled 2026 list by default).
    pub calendar: SimCalendar,
    /// Apply the calendar to orders: outside the exchange's hours an order is taken as an
    /// after-market order and works from the next open, and nothing fills while the
    /// exchange is closed. Off, the market never closes (for tests that do not care what
    /// time it is). Candles always follow the calendar and the clock.
    pub enforce_market_hours: bool,
    /// Start the simulator's clock at this instant (it runs on from there); None is the
    /// real time. Tests can also move it later (`Simulator::set_now`, `POST /__sim/clock`).
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            session_expiry: SessionExpiry::NextMidnightIst,
            enforce_rate_limits: true,
            tick_interval: Duration::from_millis(200),
            snapshot_on_subscribe: true,
            ticks_outside_market_hours: true,
            instruments: SimInstrument::builtin(),
            calendar: SimCalendar::bundled(),
            enforce_market_hours: true,
            start_at: None,
        }
    }
}

/// A broker account that can log in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimAccount {
    pub client_code: String,
    /// The 4-digit PIN / MPIN sent as `password`.
    pub pin: String,
    /// Base32 TOTP secret (RFC 6238, SHA-1, 6 digits, 30 s).
    pub totp_seed: String,
    /// Must arrive as `X-PrivateKey` on every REST call.
    pub api_key: String,
    /// When set, place/modify/cancel from any other socket source IP are rejected.
    #[serde(default)]
    pub static_ip: Option<IpAddr>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub available_cash_paise: i64,
}

/// One tradable instrument. Prices are paise (1/100 rupee) for every exchange; on the
/// market WebSocket CDS (exchangeType 13) prices are scaled to the 10^7 divisor unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimInstrument {
    /// NSE, NFO, BSE, BFO, MCX, CDS (or NCDEX).
    pub exchange: String,
    pub token: String,
    pub symbol: String,
    pub name: String,
    pub ltp_paise: i64,
    pub lot_size: i64,
}

/// One row of the scrip master; every value is a string (SPEC §5).
#[derive(Debug, Deserialize)]
struct ScripRow {
    token: String,
    symbol: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    lotsize: String,
    exch_seg: String,
}

impl SimInstrument {
    fn new(
        exchange: &str,
        token: &str,
        symbol: &str,
        name: &str,
        ltp_paise: i64,
        lot: i64,
    ) -> Self {
        Self {
            exchange: exchange.to_owned(),
            token: token.to_owned(),
            symbol: symbol.to_owned(),
            name: name.to_owned(),
            ltp_paise,
            lot_size: lot,
        }
    }

    /// The default universe, aligned with `publisher/data/OpenAPIScripMaster.sample.json`.
    pub fn builtin() -> Vec<SimInstrument> {
        vec![
            Self::new("NSE", "3045", "SBIN-EQ", "SBIN", 80_000, 1),
            Self::new("NSE", "2885", "RELIANCE-EQ", "RELIANCE", 290_000, 1),
            Self::new("NSE", "1594", "INFY-EQ", "INFY", 180_000, 1),
            Self::new("NSE", "11536", "TCS-EQ", "TCS", 400_000, 1),
            Self::new("NSE", "99926000", "Nifty 50", "NIFTY", 2_440_000, 1),
            Self::new("NFO", "35001", "NIFTY30DEC26FUT", "NIFTY", 2_450_000, 75),
            Self::new(
                "MCX",
                "441811",
                "CRUDEOIL18DEC26FUT",
                "CRUDEOIL",
                650_000,
                100,
            ),
            Self::new("CDS", "1167", "USDINR29DEC26FUT", "USDINR", 8_350, 1000),
        ]
    }

    /// Reads an `OpenAPIScripMaster.json` array. Prices are not in the file, so each
    /// instrument gets a deterministic starting price derived from its token (built-in
    /// instruments keep their built-in price).
    pub fn load_scrip_master(path: impl AsRef<Path>) -> Result<Vec<SimInstrument>, SimError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ScripMaster {
            path: path.display().to_string(),
            reason: source.to_string(),
        })?;
        let rows: Vec<ScripRow> =
            serde_json::from_str(&text).map_err(|e| SimError::ScripMaster {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let builtin = Self::builtin();
        Ok(rows
            .into_iter()
            .map(|r| {
                let known = builtin
                    .iter()
                    .find(|b| b.exchange == r.exch_seg && b.token == r.token);
                let ltp =
                    known.map_or_else(|| synthetic_price(&r.exch_seg, &r.token), |b| b.ltp_paise);
                SimInstrument {
                    lot_size: r.lotsize.trim().parse().unwrap_or(1).max(1),
                    exchange: r.exch_seg,
                    token: r.token,
                    symbol: r.symbol,
                    name: r.name,
                    ltp_paise: ltp,
                }
            })
            .collect())
    }

    /// Index feeds (e.g. NIFTY 50, 99926000) carry no sequence number or volume.
    pub fn is_index(&self) -> bool {
        matches!(self.exchange.as_str(), "NSE" | "BSE")
            && self.token.len() == 8
            && self.token.starts_with("999")
    }
}

/// A stable pseudo price between ₹100 and ₹3,000 for instruments loaded without one.
fn synthetic_price(exchange: &str, token: &str) -> i64 {
    let h = crate::hash::hash_str(&format!("{exchange}:{token}"));
    10_000 + (h % 290_000) as i64 / 5 * 5
}

/// SPEC §4: REST exchange name ↔ WebSocket exchangeType.
pub fn exchange_type(exchange: &str) -> Option<u8> {
    Some(match exchange {
        "NSE" => 1,
        "NFO" => 2,
        "BSE" => 3,
        "BFO" => 4,
        "MCX" => 5,
        "NCDEX" => 7,
        "CDS" => 13,
        _ => return None,
    })
}

/// The inverse of [`exchange_type`].
pub fn exchange_name(exchange_type: u8) -> Option<&'static str> {
    Some(match exchange_type {
        1 => "NSE",
        2 => "NFO",
        3 => "BSE",
        4 => "BFO",
        5 => "MCX",
        7 => "NCDEX",
        13 => "CDS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<SimInstrument> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../publisher/data/OpenAPIScripMaster.sample.json"
        );
        SimInstrument::load_scrip_master(path).expect("sample scrip master loads")
    }

    #[test]
    fn builtins_agree_with_the_sample_scrip_master() {
        let sample = sample();
        assert!(sample.len() > 30);
        for b in SimInstrument::builtin() {
            let row = sample
                .iter()
                .find(|s| s.exchange == b.exchange && s.token == b.token)
                .unwrap_or_else(|| panic!("{} {} missing from the sample", b.exchange, b.token));
            assert_eq!(
                (&row.symbol, row.lot_size, row.ltp_paise),
                (&b.symbol, b.lot_size, b.ltp_paise)
            );
        }
        assert!(sample.iter().all(|i| i.ltp_paise > 0 && i.lot_size >= 1));
        assert!(sample.iter().any(|i| i.is_index() && i.token == "99926000"));
    }

    #[test]
    fn a_missing_or_broken_file_is_an_error() {
        assert!(SimInstrument::load_scrip_master("/nonexistent.json").is_err());
        assert_eq!(exchange_type("CDS"), Some(13));
        assert_eq!(exchange_name(13), Some("CDS"));
    }
}
