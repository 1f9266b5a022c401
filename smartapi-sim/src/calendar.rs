//! Simulated time: the simulator's [`SimClock`] (the real clock, shifted or frozen for
//! tests) and the exchange calendar ([`SimCalendar`]: trading hours per exchange,
//! weekends and a configurable holiday list) that orders, fills, ticks and candles obey.
//!
//! Hours (IST, Monday to Friday; SPEC.md gives none, these are the exchanges'): NSE, BSE,
//! NFO and BFO 09:15–15:30; CDS and NCDEX 09:00–17:00; MCX 09:00–23:30. Holidays come from
//! a JSON file `{"holidays":[{"date":"2026-12-25","name":"Christmas","exchanges":["NSE",…]}]}`;
//! the bundled list is Pinnacle's sample 2026 calendar (`publisher/data/holidays.json`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc, Weekday};
use serde::Deserialize;

use crate::error::SimError;

/// The bundled holiday list.
const BUNDLED_HOLIDAYS: &str = include_str!("../../publisher/data/holidays.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClockState {
    /// Real time plus this many milliseconds.
    Running(i64),
    /// Always this instant.
    Frozen(DateTime<Utc>),
}

/// The simulator's clock, shared by every part of one simulator. Cloning shares it.
#[derive(Debug, Clone)]
pub struct SimClock(Arc<Mutex<ClockState>>);

impl Default for SimClock {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(ClockState::Running(0))))
    }
}

impl SimClock {
    fn state(&self) -> ClockState {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now, by the simulator.
    pub fn now(&self) -> DateTime<Utc> {
        match self.state() {
            ClockState::Running(offset) => Utc::now() + Duration::milliseconds(offset),
            ClockState::Frozen(at) => at,
        }
    }

    /// Now in IST.
    pub fn now_ist(&self) -> DateTime<FixedOffset> {
        self.now().with_timezone(&ist())
    }

    /// Epoch milliseconds now.
    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Makes it `at` now; it runs on from there, or stays there when `frozen`.
    pub fn set(&self, at: DateTime<Utc>, frozen: bool) {
        let state = if frozen {
            ClockState::Frozen(at)
        } else {
            ClockState::Running(at.timestamp_millis() - Utc::now().timestamp_millis())
        };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Back to the real clock.
    pub fn reset(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = ClockState::Running(0);
    }

    /// Whether it is frozen.
    pub fn is_frozen(&self) -> bool {
        matches!(self.state(), ClockState::Frozen(_))
    }
}

#[derive(Debug, Deserialize)]
struct HolidayFile {
    holidays: Vec<HolidayEntry>,
}

#[derive(Debug, Deserialize)]
struct HolidayEntry {
    date: NaiveDate,
    #[serde(default)]
    name: String,
    exchanges: Vec<String>,
}

/// Exchange hours, weekends and holidays.
#[derive(Debug, Clone, Default)]
pub struct SimCalendar {
    /// (exchange, date) → holiday name.
    holidays: HashMap<(String, NaiveDate), String>,
}

impl SimCalendar {
    /// The bundled 2026 holiday list.
    pub fn bundled() -> Self {
        // The bundled file is part of the source tree; a broken one fails the unit tests.
        Self::parse(BUNDLED_HOLIDAYS, "bundled").unwrap_or_default()
    }

    /// No holidays at all (weekends and hours still apply).
    pub fn no_holidays() -> Self {
        Self::default()
    }

    /// Parses a holiday file.
    pub fn parse(json: &str, source: &str) -> Result<Self, SimError> {
        let file: HolidayFile = serde_json::from_str(json).map_err(|e| SimError::Holidays {
            path: source.to_owned(),
            reason: e.to_string(),
        })?;
        let mut calendar = Self::default();
        for entry in file.holidays {
            for exchange in entry.exchanges {
                calendar.holidays.insert(
                    (exchange.trim().to_ascii_uppercase(), entry.date),
                    entry.name.clone(),
                );
            }
        }
        Ok(calendar)
    }

    /// Reads a holiday file.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, SimError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SimError::Holidays {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Adds a holiday.
    pub fn with_holiday(mut self, exchange: &str, date: NaiveDate, name: &str) -> Self {
        self.holidays
            .insert((exchange.to_ascii_uppercase(), date), name.to_owned());
        self
    }

    /// The continuous session of `exchange`, minutes after IST midnight: [open, close).
    pub fn session(exchange: &str) -> (i64, i64) {
        match exchange {
            "MCX" => (9 * 60, 23 * 60 + 30),
            "CDS" | "NCDEX" => (9 * 60, 17 * 60),
            _ => (9 * 60 + 15, 15 * 60 + 30),
        }
    }

    /// Why `date` is no trading day on `exchange`, if it is not one.
    pub fn closed_reason(&self, exchange: &str, date: NaiveDate) -> Option<String> {
        if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            return Some("weekend".into());
        }
        self.holidays
            .get(&(exchange.to_owned(), date))
            .map(|name| format!("holiday: {name}"))
    }

    /// Whether `exchange` trades on `date` at all.
    pub fn is_trading_day(&self, exchange: &str, date: NaiveDate) -> bool {
        self.closed_reason(exchange, date).is_none()
    }

    /// Whether `exchange`'s continuous session is running at `t`.
    pub fn is_open(&self, exchange: &str, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&ist());
        if !self.is_trading_day(exchange, local.date_naive()) {
            return false;
        }
        let minute = i64::from(local.time().hour_minute());
        let (open, close) = Self::session(exchange);
        (open..close).contains(&minute)
    }

    /// The next time `exchange` opens after `t` (within 30 days), or `t` if it is open.
    pub fn next_open(&self, exchange: &str, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(exchange, t) {
            return Some(t);
        }
        let local = t.with_timezone(&ist());
        let (open, _) = Self::session(exchange);
        for day in 0..=30 {
            let date = local.date_naive() + Duration::days(day);
            if !self.is_trading_day(exchange, date) {
                continue;
            }
            let at = ist()
                .from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
                .single()?
                .with_timezone(&Utc)
                + Duration::minutes(open);
            if at > t {
                return Some(at);
            }
        }
        None
    }
}

/// Minutes after midnight.
trait HourMinute {
    fn hour_minute(&self) -> u32;
}

impl HourMinute for chrono::NaiveTime {
    fn hour_minute(&self) -> u32 {
        use chrono::Timelike;
        self.hour() * 60 + self.minute()
    }
}

/// India Standard Time (UTC+05:30).
pub fn ist() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600 + 1800).expect("+05:30 is a valid offset")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn hours_weekends_and_holidays() {
        let cal = SimCalendar::bundled();
        assert!(cal.is_open("NSE", at("2026-12-02T09:15:00+05:30")));
        assert!(cal.is_open("NSE", at("2026-12-02T15:29:59+05:30")));
        assert!(!cal.is_open("NSE", at("2026-12-02T15:30:00+05:30")));
        assert!(!cal.is_open("NSE", at("2026-12-02T03:16:00+05:30")));
        assert!(cal.is_open("MCX", at("2026-12-02T20:00:00+05:30")));
        assert!(
            !cal.is_open("NSE", at("2026-12-05T11:00:00+05:30")),
            "Saturday"
        );
        assert!(
            !cal.is_open("NSE", at("2026-12-25T11:00:00+05:30")),
            "Christmas"
        );
        // Christmas is a Friday: the next open is Monday 09:15.
        assert_eq!(
            cal.next_open("NSE", at("2026-12-24T20:00:00+05:30")),
            Some(at("2026-12-28T09:15:00+05:30"))
        );
        assert_eq!(
            cal.next_open("NSE", at("2026-12-02T03:16:00+05:30")),
            Some(at("2026-12-02T09:15:00+05:30"))
        );
        let custom = SimCalendar::no_holidays().with_holiday(
            "NSE",
            NaiveDate::from_ymd_opt(2026, 12, 3).expect("date"),
            "test",
        );
        assert!(!custom.is_open("NSE", at("2026-12-03T11:00:00+05:30")));
        assert!(custom.is_open("MCX", at("2026-12-03T11:00:00+05:30")));
        assert!(SimCalendar::parse("{}", "x").is_err());
    }

    #[test]
    fn the_clock_can_be_moved_and_frozen() {
        let clock = SimClock::default();
        let then = at("2026-12-02T20:00:00+05:30");
        clock.set(then, true);
        assert_eq!(clock.now(), then);
        clock.set(then, false);
        assert!(clock.now() >= then && clock.now() - then < Duration::seconds(5));
        clock.reset();
        assert!((clock.now() - Utc::now()).num_seconds().abs() < 5);
    }
}
