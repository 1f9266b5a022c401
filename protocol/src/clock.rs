//! Indian market time, and the clock every time-dependent decision reads.
//!
//! [`Clock`] is the real clock shifted by a fixed offset: by default no offset, and in
//! tests or simulations a setting such as `2026-12-02T20:00:00+05:30` makes "now" start
//! at that instant and run on from there, so that a whole stack can be run "at" any IST
//! time (after hours, just before the daily rollover, on a holiday).

use chrono::{DateTime, FixedOffset, Utc};

/// India Standard Time, UTC+05:30 (no daylight saving).
pub fn ist() -> FixedOffset {
    const IST_SECONDS: i32 = 5 * 3600 + 1800;
    match FixedOffset::east_opt(IST_SECONDS) {
        Some(offset) => offset,
        None => unreachable!("+05:30 is a valid offset"),
    }
}

/// A clock setting could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid clock setting {value:?}: expected an RFC 3339 time such as 2026-12-02T20:00:00+05:30"
)]
pub struct ClockError {
    /// What was given (at most 60 characters of it).
    pub value: String,
}

/// The real clock plus a fixed offset. Cheap to copy; [`Clock::default`] is the real
/// clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    /// The real clock.
    pub fn real() -> Self {
        Self::default()
    }

    /// A clock that reads `at` now and runs on at the real rate.
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Self {
            offset_ms: at.timestamp_millis() - Utc::now().timestamp_millis(),
        }
    }

    /// Parses a setting: empty (or only spaces) is the real clock, otherwise an RFC 3339
    /// time the clock starts at (`2026-12-02T20:00:00+05:30`).
    pub fn from_setting(value: &str) -> Result<Self, ClockError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(Self::real());
        }
        DateTime::parse_from_rfc3339(value)
            .map(|at| Self::starting_at(at.with_timezone(&Utc)))
            .map_err(|_| ClockError {
                value: value.chars().take(60).collect(),
            })
    }

    /// Whether this is the real clock.
    pub fn is_real(&self) -> bool {
        self.offset_ms == 0
    }

    /// How far ahead of the real clock it runs, in milliseconds (negative: behind).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// Now, by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms)
    }

    /// Now in IST, by this clock.
    pub fn now_ist(&self) -> DateTime<FixedOffset> {
        self.now().with_timezone(&ist())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_moves_now_and_time_runs_on() {
        assert!(Clock::from_setting("").expect("empty").is_real());
        let clock = Clock::from_setting("2026-12-02T20:00:00+05:30").expect("parses");
        let now = clock.now_ist();
        assert_eq!(now.format("%Y-%m-%d %H:%M").to_string(), "2026-12-02 20:00");
        assert!(clock.now() >= now);
        let err = Clock::from_setting("tonight").expect_err("not a time");
        assert!(err.to_string().contains("tonight"));
    }
}
