//! The simulator and the clock: candles stop at "now" and skip weekends and holidays,
//! orders placed after hours are after-market orders that work from the next open, and
//! the clock can be moved over HTTP.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use pinnacle_smartapi_sim::{SimCalendar, SimConfig};
use serde_json::{json, Value};

use crate::helpers::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

/// A simulator that keeps exchange hours, frozen at `now` (IST).
async fn at_time(now: &str) -> TestSim {
    let t = spawn_with(SimConfig {
        enforce_rate_limits: false,
        tick_interval: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    t.sim.set_now(at(now), true);
    t
}

async fn candles(t: &TestSim, jwt: &str, interval: &str, from: &str, to: &str) -> Vec<Value> {
    let v = t
        .post(
            &format!("{SECURE}/historical/v1/getCandleData"),
            Some(jwt),
            json!({"exchange": "NSE", "symboltoken": "3045", "interval": interval,
                   "fromdate": from, "todate": to}),
        )
        .await;
    assert_eq!(v["status"], true, "{v}");
    v["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn candles_stop_at_the_clock_and_skip_holidays() {
    // 03:16 IST on Wednesday 2 December 2026: nothing of today exists yet.
    let t = at_time("2026-12-02T03:16:00+05:30").await;
    let jwt = t.login().await.jwt;
    let today = candles(
        &t,
        &jwt,
        "ONE_MINUTE",
        "2026-12-02 00:00",
        "2026-12-02 23:59",
    )
    .await;
    assert!(today.is_empty(), "{today:?}");
    let hours = candles(&t, &jwt, "ONE_HOUR", "2026-12-01 00:00", "2026-12-04 23:59").await;
    assert_eq!(hours.len(), 7, "Tuesday's session only: {hours:?}");
    assert!(hours
        .iter()
        .all(|c| c[0].as_str().is_some_and(|s| s.starts_with("2026-12-01"))));

    // 10:00: today's first hour has begun, and nothing later exists.
    t.sim.set_now(at("2026-12-02T10:00:00+05:30"), true);
    let hours = candles(&t, &jwt, "ONE_HOUR", "2026-12-01 00:00", "2026-12-04 23:59").await;
    assert_eq!(hours.len(), 8);
    assert_eq!(hours[7][0], "2026-12-02T09:15:00+05:30");
    let minutes = candles(
        &t,
        &jwt,
        "ONE_MINUTE",
        "2026-12-02 00:00",
        "2026-12-02 23:59",
    )
    .await;
    assert_eq!(minutes.len(), 46, "09:15 to 10:00 inclusive");

    // Daily candles: one per trading day, none on weekends or the calendar's holidays.
    let days = candles(&t, &jwt, "ONE_DAY", "2026-11-01 00:00", "2026-11-30 23:59").await;
    let calendar = SimCalendar::bundled();
    let trading = (1..=30)
        .filter_map(|d| NaiveDate::from_ymd_opt(2026, 11, d))
        .filter(|d| calendar.is_trading_day("NSE", *d))
        .count();
    assert!(
        trading < 21,
        "November 2026 has holidays in the bundled list"
    );
    assert_eq!(days.len(), trading);
    assert!(
        !days.iter().any(|c| c[0] == "2026-11-24T00:00:00+05:30"),
        "a holiday"
    );
}

#[tokio::test]
async fn after_hours_orders_are_amo_and_work_from_the_next_open() {
    let t = at_time("2026-12-02T20:00:00+05:30").await;
    let jwt = t.login().await.jwt;
    t.sim.set_ltp("NSE", "3045", 80_000);
    // A marketable NORMAL limit at 20:00 is accepted, but as an after-market order.
    let v = t
        .place(
            &jwt,
            json!({"ordertype": "LIMIT", "price": "805", "ordertag": "amo-1"}),
        )
        .await;
    assert_eq!(v["status"], true, "{v}");
    let held = t.sim.orders(CLIENT);
    assert_eq!(held[0].status, "after market order req received");
    let book = t
        .get(&format!("{SECURE}/order/v1/getOrderBook"), &jwt)
        .await;
    assert_eq!(book["data"][0]["status"], "after market order req received");
    // Prices move in the evening, nothing fills.
    t.sim.set_ltp("NSE", "3045", 79_000);
    assert_eq!(t.sim.orders(CLIENT)[0].filled, 0);
    // It can be modified (still AMO) and a second one cancelled.
    let id = held[0].orderid.clone();
    let m = t
        .post(
            &format!("{SECURE}/order/v1/modifyOrder"),
            Some(&jwt),
            json!({"variety": "NORMAL", "orderid": id, "price": "806", "quantity": "1",
                   "ordertype": "LIMIT", "producttype": "INTRADAY", "duration": "DAY"}),
        )
        .await;
    assert_eq!(m["status"], true, "{m}");
    let held = t.sim.orders(CLIENT);
    assert_eq!(
        (held[0].status.as_str(), held[0].price_paise),
        ("after market order req received", 80_600)
    );
    t.place(
        &jwt,
        json!({"ordertype": "LIMIT", "price": "700", "ordertag": "amo-2"}),
    )
    .await;
    let second = t.sim.orders(CLIENT)[1].orderid.clone();
    let c = t
        .post(
            &format!("{SECURE}/order/v1/cancelOrder"),
            Some(&jwt),
            json!({"variety": "NORMAL", "orderid": second}),
        )
        .await;
    assert_eq!(c["status"], true, "{c}");
    assert_eq!(t.sim.orders(CLIENT)[1].status, "cancelled");

    // Thursday 09:15: the first goes to the exchange and fills at the open's price.
    t.sim.set_now(at("2026-12-03T09:15:01+05:30"), true);
    let held = t.sim.orders(CLIENT);
    assert_eq!(held[0].status, "complete", "{held:?}");
    assert_eq!(held[0].average_price_paise, 79_000);
    assert_eq!(held[1].status, "cancelled");

    // On a holiday (Christmas, a Friday) at 11:00 the market is closed too.
    t.sim.set_now(at("2026-12-25T11:00:00+05:30"), true);
    let jwt = t.login().await.jwt;
    t.place(&jwt, json!({"ordertag": "xmas"})).await;
    assert_eq!(
        t.sim.orders(CLIENT)[2].status,
        "after market order req received"
    );
}

#[tokio::test]
async fn the_clock_is_moved_over_http() {
    let t = at_time("2026-12-02T03:16:00+05:30").await;
    let http = reqwest::Client::new();
    let url = format!("{}/__sim/clock", t.sim.rest_url());
    let got: Value = http
        .get(&url)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        got,
        json!({"now": "2026-12-02T03:16:00+05:30", "frozen": true})
    );
    let set: Value = http
        .post(&url)
        .json(&json!({"now": "2026-12-02T20:00:00+05:30"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(set["frozen"], false);
    assert!(set["now"]
        .as_str()
        .is_some_and(|s| s.starts_with("2026-12-02T20:00")));
    let bad = http
        .post(&url)
        .json(&json!({"now": "tonight"}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status().as_u16(), 400);
    let reset: Value = http
        .delete(&url)
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(reset["frozen"], false);
    let real = DateTime::parse_from_rfc3339(reset["now"].as_str().expect("now")).expect("time");
    assert!((real.with_timezone(&Utc) - Utc::now()).num_seconds().abs() < 5);
}
