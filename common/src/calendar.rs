//! Market status: open, closed or pre-open per exchange, from exchange hours in IST and a
//! holiday calendar file.
//!
//! Hours (IST, Monday to Friday): NSE and BSE cash pre-open 09:00–09:15 and continuous
//! 09:15–15:30; NFO and BFO 09:15–15:30; CDS 09:00–17:00; MCX 09:00–23:30. IST has no
//! daylight saving, so it is a fixed +05:30 offset. The holiday file is JSON:
//! `{"holidays": [{"date": "2026-01-26", "name": "Republic Day", "exchanges": ["NSE", …]}]}`;
//! a bundled one (`publisher/data/holidays.json`) is used when nothing is configured.
//!
//! The publisher's market status and simulated feed and the paper broker's after-market
//! orders (`pinnacle-order-worker`) all read it.

use std::collections::HashMap;

use crate::model::{ExchangeStatus, MarketPhase};
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use serde::Deserialize;

/// The bundled holiday calendar.
pub const SAMPLE_HOLIDAYS: &str = include_str!("../../publisher/data/holidays.json");

/// The exchanges whose status is published.
pub const EXCHANGES: [&str; 6] = ["NSE", "BSE", "NFO", "BFO", "CDS", "MCX"];

pub use crate::clock::ist;

/// The holiday file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid holiday calendar {source_name}: {reason}")]
pub struct CalendarError {
    /// Path, or `bundled`.
    pub source_name: String,
    /// Why.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
struct HolidayFile {
    holidays: Vec<HolidayEntry>,
}

#[derive(Debug, Deserialize)]
struct HolidayEntry {
    date: NaiveDate,
    name: String,
    exchanges: Vec<String>,
}

/// One exchange's sessions, as minutes after IST midnight.
#[derive(Debug, Clone, Copy)]
struct Hours {
    pre_open: Option<(u32, u32)>,
    open: (u32, u32),
}

fn hours(exchange: &str) -> Option<Hours> {
    let hm = |h: u32, m: u32| h * 60 + m;
    Some(match exchange {
        "NSE" | "BSE" => Hours {
            pre_open: Some((hm(9, 0), hm(9, 15))),
            open: (hm(9, 15), hm(15, 30)),
        },
        "NFO" | "BFO" => Hours {
            pre_open: None,
            open: (hm(9, 15), hm(15, 30)),
        },
        "CDS" => Hours {
            pre_open: None,
            open: (hm(9, 0), hm(17, 0)),
        },
        "MCX" => Hours {
            pre_open: None,
            open: (hm(9, 0), hm(23, 30)),
        },
        _ => return None,
    })
}

/// Exchange hours plus holidays.
#[derive(Debug, Default, Clone)]
pub struct Calendar {
    /// (exchange, date) → holiday name.
    holidays: HashMap<(String, NaiveDate), String>,
}

impl Calendar {
    /// Parses a holiday file.
    pub fn parse(json: &str, source_name: &str) -> Result<Self, CalendarError> {
        let file: HolidayFile = serde_json::from_str(json).map_err(|e| CalendarError {
            source_name: source_name.into(),
            reason: e.to_string(),
        })?;
        let mut holidays = HashMap::new();
        for entry in file.holidays {
            for exchange in entry.exchanges {
                holidays.insert(
                    (exchange.to_ascii_uppercase(), entry.date),
                    entry.name.clone(),
                );
            }
        }
        Ok(Self { holidays })
    }

    /// Loads a holiday file, or the bundled one when `path` is `None`.
    pub fn load(path: Option<&str>) -> Result<Self, CalendarError> {
        match path.filter(|p| !p.trim().is_empty()) {
            None => Self::parse(SAMPLE_HOLIDAYS, "bundled"),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| CalendarError {
                    source_name: path.into(),
                    reason: e.to_string(),
                })?;
                Self::parse(&text, path)
            }
        }
    }

    /// Why `date` is not a trading day on `exchange`, if it is not.
    pub fn closed_reason(&self, exchange: &str, date: NaiveDate) -> Option<String> {
        if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            return Some("weekend".into());
        }
        self.holidays
            .get(&(exchange.to_string(), date))
            .map(|name| format!("holiday: {name}"))
    }

    fn phase_at(&self, exchange: &str, at: DateTime<Utc>) -> (MarketPhase, Option<String>) {
        let Some(hours) = hours(exchange) else {
            return (MarketPhase::Closed, Some("unknown exchange".into()));
        };
        let local = at.with_timezone(&ist());
        if let Some(reason) = self.closed_reason(exchange, local.date_naive()) {
            return (MarketPhase::Closed, Some(reason));
        }
        let minute = local
            .time()
            .signed_duration_since(NaiveTime::MIN)
            .num_minutes() as u32;
        if let Some((from, to)) = hours.pre_open {
            if (from..to).contains(&minute) {
                return (MarketPhase::PreOpen, None);
            }
        }
        let (open, close) = hours.open;
        if (open..close).contains(&minute) {
            (MarketPhase::Open, None)
        } else if minute < hours.pre_open.map_or(open, |(f, _)| f) {
            (MarketPhase::Closed, Some("before hours".into()))
        } else {
            (MarketPhase::Closed, Some("after hours".into()))
        }
    }

    /// Whether `exchange`'s continuous session is running at `at`.
    pub fn is_open(&self, exchange: &str, at: DateTime<Utc>) -> bool {
        self.phase_at(exchange, at).0 == MarketPhase::Open
    }

    /// `exchange`'s status at `at`, with the time of the next change.
    pub fn status(&self, exchange: &str, at: DateTime<Utc>) -> ExchangeStatus {
        let (phase, reason) = self.phase_at(exchange, at);
        ExchangeStatus {
            exchange: exchange.to_string(),
            status: phase,
            reason,
            ts_ms: at.timestamp_millis(),
            next_change_ms: self.next_change(exchange, at, phase),
        }
    }

    /// The first minute boundary within 10 days at which the phase differs.
    fn next_change(&self, exchange: &str, at: DateTime<Utc>, phase: MarketPhase) -> Option<i64> {
        let hours = hours(exchange)?;
        let local = at.with_timezone(&ist());
        let mut boundaries = vec![hours.open.0, hours.open.1];
        if let Some((from, to)) = hours.pre_open {
            boundaries.extend([from, to]);
        }
        boundaries.sort_unstable();
        for day in 0..=10 {
            let date = local.date_naive() + chrono::Duration::days(day);
            for &minute in &boundaries {
                let time = NaiveTime::from_hms_opt(minute / 60, minute % 60, 0)?;
                let candidate = ist()
                    .from_local_datetime(&date.and_time(time))
                    .single()?
                    .with_timezone(&Utc);
                if candidate > at && self.phase_at(exchange, candidate).0 != phase {
                    return Some(candidate.timestamp_millis());
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("time");
        ist()
            .from_local_datetime(&naive)
            .single()
            .expect("IST")
            .with_timezone(&Utc)
    }

    #[test]
    fn phases_follow_ist_hours() {
        let cal = Calendar::load(None).expect("bundled");
        // Wednesday 2026-11-25.
        let phase = |ex: &str, t: &str| cal.status(ex, at(t)).status;
        assert_eq!(phase("NSE", "2026-11-25 08:59"), MarketPhase::Closed);
        assert_eq!(phase("NSE", "2026-11-25 09:00"), MarketPhase::PreOpen);
        assert_eq!(phase("NSE", "2026-11-25 09:15"), MarketPhase::Open);
        assert_eq!(phase("NSE", "2026-11-25 15:29"), MarketPhase::Open);
        assert_eq!(phase("NSE", "2026-11-25 15:30"), MarketPhase::Closed);
        assert_eq!(phase("NFO", "2026-11-25 09:05"), MarketPhase::Closed);
        assert_eq!(phase("MCX", "2026-11-25 22:00"), MarketPhase::Open);
        let status = cal.status("NSE", at("2026-11-25 16:00"));
        assert_eq!(status.reason.as_deref(), Some("after hours"));
        assert_eq!(
            status.next_change_ms,
            Some(at("2026-11-26 09:00").timestamp_millis())
        );
    }

    #[test]
    fn weekends_and_holidays_are_closed() {
        let cal = Calendar::load(None).expect("bundled");
        let sat = cal.status("NSE", at("2026-11-28 10:00"));
        assert_eq!(
            (sat.status, sat.reason.as_deref()),
            (MarketPhase::Closed, Some("weekend"))
        );
        let holiday = cal.status("NSE", at("2026-12-25 10:00"));
        assert_eq!(holiday.status, MarketPhase::Closed);
        assert!(holiday
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("Christmas")));
        // Friday 2026-12-25 is a holiday and the weekend follows: next open is Monday.
        assert_eq!(
            holiday.next_change_ms,
            Some(at("2026-12-28 09:00").timestamp_millis())
        );
        assert_eq!(
            cal.status("MCX", at("2026-12-25 10:00")).status,
            MarketPhase::Open
        );
        assert!(Calendar::parse("{}", "x").is_err());
        assert!(Calendar::load(Some("/nonexistent/holidays.json")).is_err());
    }
}
