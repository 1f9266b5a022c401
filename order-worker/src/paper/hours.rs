//! When the paper market is open: always (`PINNACLE_SIM_HOURS=always`, the default), or
//! by the exchange calendar (hours, weekends, holidays; [`Calendar`]) at the worker's
//! clock (`PINNACLE_WORKER_SIM_NOW`, else the real one) with `PINNACLE_SIM_HOURS=exchange`.
//!
//! An order the paper broker takes while its exchange is closed is an after-market order:
//! it rests `OPEN` and the matcher fills it at the first tick of the next session.

use std::sync::Arc;

use pinnacle_common::calendar::{Calendar, CalendarError};
use pinnacle_common::clock::Clock;
use pinnacle_common::config::{PaperHours, SimHours};

/// The paper broker's and the matcher's market hours. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MarketHours(Option<Arc<(Calendar, Clock)>>);

impl MarketHours {
    /// Every exchange always open: nothing is ever an after-market order.
    pub fn always() -> Self {
        Self(None)
    }

    /// Open while `calendar` says so at `clock`.
    pub fn exchange(calendar: Calendar, clock: Clock) -> Self {
        Self(Some(Arc::new((calendar, clock))))
    }

    /// From the worker's settings: `hours` (`PINNACLE_SIM_HOURS`, with its holiday file)
    /// judged at `clock`. An unreadable holiday file is an error.
    pub fn from_settings(hours: &PaperHours, clock: Clock) -> Result<Self, CalendarError> {
        match hours.hours {
            SimHours::Always => Ok(Self::always()),
            SimHours::Exchange => Ok(Self::exchange(
                Calendar::load(hours.holidays.as_deref())?,
                clock,
            )),
        }
    }

    /// Whether `exchange`'s continuous session is running now. An exchange the calendar
    /// does not know is closed when hours apply.
    pub fn is_open(&self, exchange: &str) -> bool {
        self.0.as_ref().is_none_or(|calendar_and_clock| {
            let (calendar, clock) = calendar_and_clock.as_ref();
            calendar.is_open(exchange, clock.now())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Clock {
        Clock::starting_at(
            chrono::DateTime::parse_from_rfc3339(text)
                .expect("RFC 3339")
                .with_timezone(&chrono::Utc),
        )
    }

    #[test]
    fn hours_follow_the_calendar_at_the_clock_unless_always() {
        let calendar = || Calendar::load(None).expect("bundled");
        let open = |now: &str, exchange: &str| {
            MarketHours::exchange(calendar(), at(now)).is_open(exchange)
        };
        // Wednesday 2 December 2026.
        assert!(open("2026-12-02T10:00:00+05:30", "NSE"));
        assert!(!open("2026-12-02T20:00:00+05:30", "NSE"), "after hours");
        assert!(open("2026-12-02T20:00:00+05:30", "MCX"), "MCX trades late");
        assert!(
            !open("2026-12-02T09:10:00+05:30", "NSE"),
            "pre-open is closed"
        );
        assert!(!open("2026-12-05T10:00:00+05:30", "NSE"), "Saturday");
        assert!(!open("2026-12-25T10:00:00+05:30", "NSE"), "Christmas");
        assert!(
            !open("2026-12-02T10:00:00+05:30", "NOPE"),
            "unknown exchange"
        );
        assert!(MarketHours::always().is_open("NOPE"));
        let always = PaperHours::default();
        assert!(
            MarketHours::from_settings(&always, at("2026-12-05T10:00:00+05:30"))
                .expect("always")
                .is_open("NSE")
        );
        let exchange = PaperHours {
            hours: SimHours::Exchange,
            holidays: None,
        };
        assert!(
            !MarketHours::from_settings(&exchange, at("2026-12-05T10:00:00+05:30"))
                .expect("bundled calendar")
                .is_open("NSE")
        );
        let missing = PaperHours {
            hours: SimHours::Exchange,
            holidays: Some("/nonexistent/holidays.json".into()),
        };
        assert!(MarketHours::from_settings(&missing, Clock::real()).is_err());
    }
}
