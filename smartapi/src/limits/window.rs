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

/// Moves one send stamped at `from` to `now`: a request counted when its turn came and
/// sent later is counted when it is sent, as the broker counts it. Returns the new stamp,
/// or `None` (the log unchanged but pruned) when `from` is no longer in the log or is a
/// second or more old; the caller then admits the request afresh.
///
/// Moving a send later never overfills a window. A window that holds `now` but not
/// `from` starts after `from`, so it holds only sends stamped after `from` and up to `now`
/// (less than a second, the shortest window, apart); each of those was admitted with
/// `from` in its window, so together with `from` they never exceeded any limit, and the
/// moved stamp takes `from`'s place among them.
pub fn restamp(log: &mut Vec<u64>, from: u64, now: u64, limit: Limit) -> Option<u64> {
    prune(log, now, limit);
    if now.saturating_sub(from) >= 1_000 {
        return None;
    }
    let at = log.iter().rposition(|t| *t == from)?;
    log.remove(at);
    let stamp = log.last().map_or(now, |last| now.max(*last));
    log.push(stamp);
    Some(stamp)
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

    #[test]
    fn a_send_moved_later_never_overfills_a_window() {
        let limit = Bucket::Orders.limit();
        // Every way of admitting sends at 1 ms steps, then moving the first one's stamp
        // to each later moment under a second: no 1.05 s window ever holds ten.
        for late in [1, 30, 120, 500, 999] {
            let mut log = Vec::new();
            let mut sent = Vec::new();
            for now in 0..late {
                if admit(&mut log, now, limit).is_none() {
                    sent.push(now);
                }
            }
            let from = sent[0];
            let moved = restamp(&mut log, from, late, limit).expect("still in the log");
            assert_eq!(moved, late);
            // Go on admitting after the move; every window stays within nine.
            for now in late..late + 3_000 {
                let _ = admit(&mut log, now, limit);
            }
            for w in log.windows(10) {
                assert!(w[9] - w[0] >= SECOND_MS, "ten sends within a window: {w:?}");
            }
        }
        // Gone from the log, or a second old: admit afresh.
        let mut log = vec![10, 20];
        assert_eq!(restamp(&mut log, 15, 30, limit), None);
        assert_eq!(restamp(&mut log, 10, 1_010, limit), None);
        assert_eq!(log, vec![10, 20]);
    }
}
