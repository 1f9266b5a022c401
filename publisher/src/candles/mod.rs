//! Historical candles: Angel One's interval names and per-interval range limits (SPEC §4),
//! request validation, and a deterministic simulated history.
//!
//! A simulated candle depends only on (seed, exchange, symbol, start time), so the same
//! candle is identical whatever range it was asked in. Candles fall inside the exchange's
//! trading hours on trading days (see [`crate::calendar`]), and none is later than the
//! clock: the candle in progress covers the minutes up to now.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{Candle, CandleRequest};

use crate::calendar::{ist, Calendar};

/// Angel One's candle intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// `ONE_MINUTE`, at most 30 days per request.
    OneMinute,
    /// `THREE_MINUTE`, 60 days.
    ThreeMinute,
    /// `FIVE_MINUTE`, 100 days.
    FiveMinute,
    /// `TEN_MINUTE`, 100 days.
    TenMinute,
    /// `FIFTEEN_MINUTE`, 200 days.
    FifteenMinute,
    /// `THIRTY_MINUTE`, 200 days.
    ThirtyMinute,
    /// `ONE_HOUR`, 400 days.
    OneHour,
    /// `ONE_DAY`, 2000 days.
    OneDay,
}

impl Interval {
    /// Every interval, in order.
    pub const ALL: [Interval; 8] = [
        Self::OneMinute,
        Self::ThreeMinute,
        Self::FiveMinute,
        Self::TenMinute,
        Self::FifteenMinute,
        Self::ThirtyMinute,
        Self::OneHour,
        Self::OneDay,
    ];

    /// The Angel One name.
    pub fn name(self) -> &'static str {
        match self {
            Self::OneMinute => "ONE_MINUTE",
            Self::ThreeMinute => "THREE_MINUTE",
            Self::FiveMinute => "FIVE_MINUTE",
            Self::TenMinute => "TEN_MINUTE",
            Self::FifteenMinute => "FIFTEEN_MINUTE",
            Self::ThirtyMinute => "THIRTY_MINUTE",
            Self::OneHour => "ONE_HOUR",
            Self::OneDay => "ONE_DAY",
        }
    }

    /// Parses an Angel One name (exact, upper case).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Candle length in minutes (a day counts as one session).
    pub fn minutes(self) -> i64 {
        match self {
            Self::OneMinute => 1,
            Self::ThreeMinute => 3,
            Self::FiveMinute => 5,
            Self::TenMinute => 10,
            Self::FifteenMinute => 15,
            Self::ThirtyMinute => 30,
            Self::OneHour => 60,
            Self::OneDay => 24 * 60,
        }
    }

    /// The broker's longest range per request, in days.
    pub fn max_days(self) -> i64 {
        match self {
            Self::OneMinute => 30,
            Self::ThreeMinute => 60,
            Self::FiveMinute | Self::TenMinute => 100,
            Self::FifteenMinute | Self::ThirtyMinute => 200,
            Self::OneHour => 400,
            Self::OneDay => 2000,
        }
    }
}

/// A validated candle request.
#[derive(Debug, Clone)]
pub struct CandleQuery {
    /// The interval.
    pub interval: Interval,
    /// Inclusive start.
    pub from: DateTime<Utc>,
    /// Inclusive end.
    pub to: DateTime<Utc>,
}

/// Angel One's `yyyy-MM-dd HH:mm` in IST.
pub fn parse_ist(text: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M").ok()?;
    Some(
        ist()
            .from_local_datetime(&naive)
            .single()?
            .with_timezone(&Utc),
    )
}

/// Checks the interval and the range against the broker's limits.
pub fn validate(request: &CandleRequest) -> Result<CandleQuery, ErrorBody> {
    let interval = Interval::parse(&request.interval).ok_or_else(|| {
        let names: Vec<_> = Interval::ALL.iter().map(|i| i.name()).collect();
        ErrorBody::new(
            ErrorCode::InvalidInterval,
            format!(
                "unknown interval {:?}; use one of {}",
                truncate(&request.interval),
                names.join(", ")
            ),
        )
    })?;
    let parse = |field: &str, text: &str| {
        parse_ist(text).ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::InvalidRequest,
                format!(
                    "{field} must be \"yyyy-MM-dd HH:mm\" (IST), got {:?}",
                    truncate(text)
                ),
            )
        })
    };
    let from = parse("from", &request.from)?;
    let to = parse("to", &request.to)?;
    if to < from {
        return Err(ErrorBody::new(
            ErrorCode::RangeTooLarge,
            "to is before from",
        ));
    }
    if to - from > Duration::days(interval.max_days()) {
        return Err(ErrorBody::new(
            ErrorCode::RangeTooLarge,
            format!(
                "{} allows at most {} days per request",
                interval.name(),
                interval.max_days()
            ),
        ));
    }
    Ok(CandleQuery { interval, from, to })
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

/// splitmix64: a cheap, good 64-bit mix, so candles need no generator state.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn hash_str(seed: u64, text: &str) -> u64 {
    text.bytes().fold(mix(seed), |h, b| mix(h ^ u64::from(b)))
}

/// Deterministic simulated history around a reference price.
#[derive(Debug, Clone)]
pub struct SimHistory {
    /// Fixes every simulated candle.
    pub seed: u64,
}

impl SimHistory {
    /// The price (paise, on the tick grid) at minute `t` for an instrument keyed by `key`.
    fn price_at(&self, key: u64, base: i64, tick: i64, minute: i64) -> i64 {
        // A slow drift (±10 % over ~40 days) plus a per-minute wobble (±0.5 %).
        let slow = (minute as f64 / 9_000.0 + (key % 628) as f64 / 100.0).sin() * 0.10;
        let wobble = ((mix(key ^ minute as u64) % 1001) as f64 - 500.0) / 100_000.0;
        let price = (base as f64 * (1.0 + slow + wobble)).max(tick as f64);
        let price = price as i64;
        (price - price % tick).max(tick)
    }

    /// Candles for `query` around `base` paise on a `tick` grid, at most `limit` of them
    /// (`None` when there would be more). Nothing after `now` exists: a candle appears once
    /// its interval has begun, and one still in progress is made of the minutes up to
    /// `now` (its close is the price now).
    #[allow(clippy::too_many_arguments)]
    pub fn candles(
        &self,
        calendar: &Calendar,
        exchange: &str,
        symbol: &str,
        (base, tick): (i64, i64),
        query: &CandleQuery,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Option<Vec<Candle>> {
        let key = hash_str(self.seed, &format!("{exchange}:{symbol}"));
        let step = query.interval.minutes();
        let (open_min, close_min) = session(exchange);
        let mut out = Vec::new();
        let first = query.from.with_timezone(&ist()).date_naive();
        let last = query.to.with_timezone(&ist()).date_naive();
        let mut date = first;
        while date <= last {
            if calendar.closed_reason(exchange, date).is_none() {
                let midnight = ist()
                    .from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
                    .single()?
                    .with_timezone(&Utc);
                // A day candle is one whole session; shorter ones tile it.
                let (mut start, end) = (open_min, close_min);
                while start < end {
                    let full = step.min(end - start);
                    let ts = midnight + Duration::minutes(start);
                    // Whole minutes of this candle that have passed (at least its first).
                    let length = full.min(((now - ts).num_minutes()).max(1));
                    if ts >= query.from && ts <= query.to && ts <= now {
                        if out.len() >= limit {
                            return None;
                        }
                        let epoch_min = ts.timestamp() / 60;
                        let open = self.price_at(key, base, tick, epoch_min);
                        let close = self.price_at(key, base, tick, epoch_min + length);
                        let mid = self.price_at(key, base, tick, epoch_min + length / 2);
                        let spread = (mix(key ^ epoch_min as u64 ^ 0xA5) % 4) as i64 * tick;
                        let high = open.max(close).max(mid) + spread;
                        let low = (open.min(close).min(mid) - spread).max(tick);
                        let volume = length * (100 + (mix(key ^ epoch_min as u64) % 900) as i64);
                        out.push(Candle {
                            ts_ms: ts.timestamp_millis(),
                            open,
                            high,
                            low,
                            close,
                            volume,
                        });
                    }
                    start += full;
                }
            }
            date = date.succ_opt()?;
        }
        Some(out)
    }
}

/// Continuous-session minutes after IST midnight used for candles.
fn session(exchange: &str) -> (i64, i64) {
    match exchange {
        "MCX" => (9 * 60, 23 * 60 + 30),
        "CDS" => (9 * 60, 17 * 60),
        _ => (9 * 60 + 15, 15 * 60 + 30),
    }
}

#[cfg(test)]
mod tests;
