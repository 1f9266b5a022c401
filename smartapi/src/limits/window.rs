//! The sliding-window arithmetic both limiters share: the in-process one (milliseconds
//! since the process started) and the deployment-wide one in JetStream KV (milliseconds
//! since the Unix epoch).
//!
//! A log is the send times of one (client code, bucket), ascending, inside the bucket's
//! longest finite window. A request is admitted at `now` when each window of the bucket's
//! [`Limit`] holds fewer sends than it allows; it is then stamped into the log.

use super::bucket::{Limit, NONE};

/// A second plus a margin: the broker counts arrivals, so two requests sent just over a
/// second apart can land inside one of its seconds after network jitter.
pub const SECOND_MS: u64 = 1_050;
/// A minute.
pub const MINUTE_MS: u64 = 60_000;
/// An hour.
pub const HOUR_MS: u64 = 3_600_000;

/// The windows `limit` counts in, as (length in ms, most sends allowed).
fn spans(limit: Limit) -> impl Iterator<Item = (u64, usize)> {
    [
        (SECOND_MS, limit.per_second),
        (MINUTE_MS, limit.per_minute),
        (HOUR_MS, limit.per_hour),
    ]
    .into_iter()
    .filter(|(_, max)| *max != NONE)
    .map(|(span, max)| (span, max.max(1) as usize))
}

/// The longest window `limit` counts in: older sends no longer matter.
pub fn horizon(limit: Limit) -> u64 {
    spans(limit)
        .map(|(span, _)| span)
        .max()
        .unwrap_or(SECOND_MS)
}

/// Drops the sends older than the longest window.
pub fn prune(log: &mut Vec<u64>, now: u64, limit: Limit) {
    let horizon = horizon(limit);
    let keep_from = log
        .iter()
        .position(|t| now.saturating_sub(*t) < horizon)
        .unwrap_or(log.len());
    log.drain(..keep_from);
}

/// Admits a request at `now` if every window has room, stamping it into `log` and
/// returning `None`; otherwise returns the milliseconds until the fullest window opens
/// (the log is unchanged but pruned).
///
/// A stamp from a clock slightly ahead of `now` (another host's) counts as inside every
/// window, and a new stamp is never earlier than the last one, so the log stays ascending
/// and skew only ever makes the limiter stricter.
pub fn admit(log: &mut Vec<u64>, now: u64, limit: Limit) -> Option<u64> {
    prune(log, now, limit);
    let mut wait = 0;
    for (span, max) in spans(limit) {
        let in_span = log
            .iter()
            .rev()
            .take_while(|t| now.saturating_sub(**t) < span)
            .count();
        if in_span >= max {
            // The send that must leave the window for one more to fit.
            let leaving = log[log.len() - max];
            wait = wait.max((leaving + span).saturating_sub(now).max(1));
        }
    }
    if wait > 0 {
        return Some(wait);
    }
    let stamp = log.last().map_or(now, |last| now.max(*last));
    log.push(stamp);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::bucket::Bucket;

    #[test]
    fn nine_orders_fit_in_a_second_and_the_tenth_waits_for_the_first() {
        let limit = Bucket::Orders.limit();
        let mut log = Vec::new();
        for i in 0..9 {
            assert_eq!(admit(&mut log, 1_000 + i * 10, limit), None);
        }
        assert_eq!(
            admit(&mut log, 1_100, limit),
            Some(1_000 + SECOND_MS - 1_100)
        );
        assert_eq!(admit(&mut log, 1_000 + SECOND_MS, limit), None);
    }

    #[test]
    fn the_minute_and_hour_windows_hold_and_old_sends_are_dropped() {
        let limit = Limit {
            per_second: 100,
            per_minute: 5,
            per_hour: 7,
        };
        let mut log = Vec::new();
        for i in 0..5 {
            assert_eq!(admit(&mut log, i * 1_000, limit), None);
        }
        // Five a minute: the sixth waits for the first to leave the minute.
        assert_eq!(admit(&mut log, 10_000, limit), Some(MINUTE_MS - 10_000));
        assert_eq!(admit(&mut log, MINUTE_MS, limit), None);
        assert_eq!(admit(&mut log, MINUTE_MS + 1_000, limit), None);
        // Seven an hour: the eighth waits for the first to leave the hour.
        assert_eq!(
            admit(&mut log, 2 * MINUTE_MS, limit),
            Some(HOUR_MS - 2 * MINUTE_MS)
        );
        prune(&mut log, HOUR_MS + 2 * MINUTE_MS, limit);
        assert!(log.is_empty());
    }

    #[test]
    fn a_stamp_from_a_clock_ahead_counts_as_inside_every_window() {
        let limit = Bucket::Login.limit();
        let mut log = vec![5_000];
        let wait = admit(&mut log, 4_990, limit).expect("full");
        assert_eq!(wait, 5_000 + SECOND_MS - 4_990);
        // And a later admission is stamped no earlier than the last send.
        assert_eq!(admit(&mut log, 5_000 + SECOND_MS, limit), None);
        assert!(log.windows(2).all(|w| w[0] <= w[1]));
    }
}
