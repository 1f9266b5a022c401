//! Tests of candles: interval and range checks, nothing after now, stable in-session history.

use super::*;

fn request(interval: &str, from: &str, to: &str) -> CandleRequest {
    CandleRequest {
        exchange: "NSE".into(),
        symbol: "SBIN-EQ".into(),
        interval: interval.into(),
        from: from.into(),
        to: to.into(),
    }
}

#[test]
fn intervals_and_ranges_are_checked() {
    let code = |r: CandleRequest| validate(&r).err().map(|e| e.code);
    assert_eq!(
        code(request(
            "ONE_MINUTE",
            "2026-11-02 09:15",
            "2026-11-02 15:30"
        )),
        None
    );
    assert_eq!(
        code(request("1m", "2026-11-02 09:15", "2026-11-02 15:30")),
        Some(ErrorCode::InvalidInterval)
    );
    assert_eq!(
        code(request(
            "one_minute",
            "2026-11-02 09:15",
            "2026-11-02 15:30"
        )),
        Some(ErrorCode::InvalidInterval)
    );
    assert_eq!(
        code(request(
            "ONE_MINUTE",
            "2026-01-01 09:15",
            "2026-03-01 15:30"
        )),
        Some(ErrorCode::RangeTooLarge)
    );
    assert_eq!(
        code(request("ONE_DAY", "2021-01-01 09:15", "2026-03-01 15:30")),
        None
    );
    assert_eq!(
        code(request("ONE_DAY", "2000-01-01 09:15", "2026-03-01 15:30")),
        Some(ErrorCode::RangeTooLarge)
    );
    assert_eq!(
        code(request("ONE_HOUR", "2026-03-02 09:15", "2026-03-01 15:30")),
        Some(ErrorCode::RangeTooLarge)
    );
    assert_eq!(
        code(request("ONE_HOUR", "yesterday", "2026-03-01 15:30")),
        Some(ErrorCode::InvalidRequest)
    );
}

/// A "now" after every range these tests ask for.
fn far() -> DateTime<Utc> {
    parse_ist("2030-01-01 00:00").expect("time")
}

#[test]
fn no_candle_is_later_than_now() {
    let cal = Calendar::load(None).expect("calendar");
    let history = SimHistory { seed: 42 };
    let ask = |interval: &str, now: &str| {
        let q =
            validate(&request(interval, "2026-12-01 00:00", "2026-12-04 23:59")).expect("valid");
        history
            .candles(
                &cal,
                "NSE",
                "SBIN-EQ",
                (82_000, 5),
                &q,
                10_000,
                parse_ist(now).expect("now"),
            )
            .expect("fits")
    };
    // 03:16 on Wednesday 2 December: Tuesday's session only.
    assert_eq!(ask("ONE_HOUR", "2026-12-02 03:16").len(), 7);
    assert_eq!(ask("ONE_DAY", "2026-12-02 03:16").len(), 1);
    // 10:00: Wednesday's first hour has begun and is made of 45 minutes so far.
    let hours = ask("ONE_HOUR", "2026-12-02 10:00");
    assert_eq!(hours.len(), 8);
    let later = ask("ONE_HOUR", "2026-12-02 10:30");
    assert_eq!(hours[..7], later[..7], "finished candles do not change");
    assert_eq!(hours[7].open, later[7].open);
    assert_eq!(ask("ONE_DAY", "2026-12-02 10:00").len(), 2);
    assert!(ask("ONE_MINUTE", "2026-12-02 10:00")
        .iter()
        .all(|c| c.ts_ms <= parse_ist("2026-12-02 10:00").expect("t").timestamp_millis()));
}

#[test]
fn simulated_candles_are_stable_and_in_session() {
    let cal = Calendar::load(None).expect("calendar");
    let history = SimHistory { seed: 42 };
    let day = validate(&request(
        "FIVE_MINUTE",
        "2026-11-23 00:00",
        "2026-11-25 23:59",
    ))
    .expect("valid");
    let candles = history
        .candles(&cal, "NSE", "SBIN-EQ", (82_000, 5), &day, 10_000, far())
        .expect("fits");
    // Monday and Wednesday (Tuesday 24th is a holiday in the bundled calendar): 75 each.
    assert_eq!(candles.len(), 150);
    for c in &candles {
        assert!(c.low <= c.open.min(c.close) && c.high >= c.open.max(c.close));
        assert!(c.low > 0 && c.open % 5 == 0 && c.volume > 0);
    }
    let one = validate(&request(
        "FIVE_MINUTE",
        "2026-11-25 10:00",
        "2026-11-25 10:00",
    ))
    .expect("valid");
    let again = history
        .candles(&cal, "NSE", "SBIN-EQ", (82_000, 5), &one, 10, far())
        .expect("fits");
    assert_eq!(again.len(), 1);
    assert!(
        candles.contains(&again[0]),
        "same candle whatever the range"
    );
    assert!(history
        .candles(&cal, "NSE", "SBIN-EQ", (82_000, 5), &day, 10, far())
        .is_none());
    let daily =
        validate(&request("ONE_DAY", "2026-11-23 00:00", "2026-11-27 23:59")).expect("valid");
    assert_eq!(
        history
            .candles(&cal, "NSE", "X", (1000, 5), &daily, 100, far())
            .map(|c| c.len()),
        Some(4)
    );
}
