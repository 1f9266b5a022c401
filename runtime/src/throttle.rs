//! Warnings one sender can provoke at will (a reconnect per malformed message, a request
//! with a protected reply subject), kept to one line per interval with a count of the
//! rest, so that nobody can fill a service's logs.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most one warning per `every`; the rest are counted.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// When the last warning was let through, and how many were held back since.
    last: Mutex<Option<(Instant, u64)>>,
}

impl Throttle {
    /// One warning per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(None),
        }
    }

    /// Something to warn about at `now`: `Some(n)` to warn, `n` being how many were held
    /// back since the last warning; `None` to log it at `debug` instead.
    pub fn next(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *last {
            Some((at, held)) if now.duration_since(*at) < self.every => {
                *held += 1;
                None
            }
            previous => {
                let since = previous.map_or(0, |(_, held)| held);
                *previous = Some((now, 0));
                Some(since)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_warning_per_interval_with_the_count() {
        let every = Duration::from_secs(10);
        let throttle = Throttle::new(every);
        let start = Instant::now();
        assert_eq!(throttle.next(start), Some(0));
        for i in 1..=99 {
            assert_eq!(throttle.next(start + Duration::from_millis(i)), None);
        }
        assert_eq!(throttle.next(start + every), Some(99));
        assert_eq!(throttle.next(start + every), None);
        assert_eq!(throttle.next(start + 3 * every), Some(1));
    }
}
