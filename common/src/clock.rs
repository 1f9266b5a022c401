//! Indian market time.

use chrono::FixedOffset;

/// India Standard Time, UTC+05:30 (no daylight saving).
pub fn ist() -> FixedOffset {
    const IST_SECONDS: i32 = 5 * 3600 + 1800;
    match FixedOffset::east_opt(IST_SECONDS) {
        Some(offset) => offset,
        None => unreachable!("+05:30 is a valid offset"),
    }
}
