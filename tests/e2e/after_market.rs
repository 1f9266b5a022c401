//! Paper after-market orders (issue 13 item 5): with `PINNACLE_SIM_HOURS=exchange` and the
//! worker's and the feed's clocks shifted (`PINNACLE_WORKER_SIM_NOW`, `PINNACLE_SIM_NOW`),
//! an order placed while NSE is closed (pre-open, a holiday, a weekend) rests `OPEN`
//! however marketable it is, reserves as usual, can be modified and cancelled, is not
//! filled by ticks that arrive while the exchange is closed, and fills at the first tick of
//! the next session; in the session nothing changes.

use std::time::Duration;

use futures::StreamExt;
use pinnacle_cli::stack::StackSettings;
use pinnacle_common::codec::Encoding;
use pinnacle_common::config::SimHours;
use pinnacle_common::model::Tick;
use pinnacle_common::subjects;
use pinnacle_tests::{eventually, TestStack, TestUser};
use serde_json::{json, Value};

use crate::each_backend;

/// The sim feed's starting SBIN-EQ price (₹820.50), in paise.
const SBIN: i64 = 82_050;

/// Runs the feed and the worker from `now` (IST), with exchange hours.
fn at(now: &'static str) -> impl FnOnce(&mut StackSettings) {
    move |s| {
        s.sim.hours = SimHours::Exchange;
        s.sim.now = now.parse().expect("an RFC 3339 time");
        s.worker.sim_now = now.parse().expect("an RFC 3339 time");
        // No feed ticks while closed: serve without waiting for a price.
        s.worker.ready_timeout_ms = 300;
    }
}

fn order(id: &str, order_type: &str, quantity: i64, price: Option<i64>) -> Value {
    json!({"client_order_id": id, "exchange": "NSE", "symbol": "SBIN-EQ", "side": "BUY",
        "order_type": order_type, "quantity": quantity, "price": price})
}

/// Places `body`, retrying until the worker has the hand-published price.
async fn place(stack: &TestStack, user: &TestUser, body: Value) -> Value {
    eventually(Duration::from_secs(10), "the order placed", || async {
        let reply = stack.call(user, "place", body.clone()).await;
        (reply["ok"] == true).then(|| reply["result"].clone())
    })
    .await
}

async fn get(stack: &TestStack, user: &TestUser, id: &str) -> Value {
    stack
        .call(user, "get", json!({"client_order_id": id}))
        .await["result"]
        .clone()
}

/// Asserts `id` rests `OPEN` with nothing filled.
async fn assert_resting(stack: &TestStack, user: &TestUser, id: &str) {
    let order = get(stack, user, id).await;
    assert_eq!(
        (&order["status"], &order["filled_quantity"]),
        (&json!("OPEN"), &json!(0)),
        "{id}: {order}"
    );
}

/// Waits until `id` is `FILLED`; returns it.
async fn filled(stack: &TestStack, user: &TestUser, id: &str) -> Value {
    eventually(Duration::from_secs(30), "the order filled", || async {
        let order = get(stack, user, id).await;
        (order["status"] == "FILLED").then_some(order)
    })
    .await
}

/// Ticks `SBIN-EQ` by hand while NSE is closed: it gives the broker a price and fills
/// nothing, however far it crosses.
async fn closed_ticks(stack: &TestStack, seq: u64) {
    stack.publish_tick("SBIN-EQ", seq, SBIN, 1_000).await;
    stack.publish_tick("SBIN-EQ", seq + 1, 1_000, 1_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The feed's first SBIN-EQ tick.
async fn first_feed_tick(ticks: &mut async_nats::Subscriber) -> Tick {
    let message = tokio::time::timeout(Duration::from_secs(40), ticks.next())
        .await
        .expect("the feed ticks once NSE opens")
        .expect("subscription open");
    Encoding::MsgPack
        .decode(&message.payload)
        .expect("tick decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_hours_paper_orders_rest_and_fill_at_the_next_open() {
    each_backend(|backend| async move {
        // Wednesday 2 December 2026, NSE pre-open: closed for paper orders until 09:15.
        let mut stack = TestStack::start_with(backend, at("2026-12-02T09:05:00+05:30")).await;
        let user = stack.trader("after-hours").await;
        stack.set_limits(pinnacle_tests::no_limits(&user.id)).await;
        stack.publish_tick("SBIN-EQ", 1, SBIN, 1_000).await;

        // Marketable or not, everything rests; the reservation is as usual (a market buy
        // at the last price).
        let mkt = place(&stack, &user, order("amo-mkt", "MARKET", 2, None)).await;
        assert_eq!(
            (&mkt["status"], &mkt["filled_quantity"]),
            (&json!("OPEN"), &json!(0)),
            "{mkt}"
        );
        let high = place(&stack, &user, order("amo-high", "LIMIT", 3, Some(90_000))).await;
        assert_eq!(high["status"], "OPEN", "{high}");
        let low = place(&stack, &user, order("amo-low", "LIMIT", 1, Some(70_000))).await;
        assert_eq!(low["status"], "OPEN", "{low}");
        place(&stack, &user, order("amo-mod", "LIMIT", 5, Some(85_000))).await;
        place(&stack, &user, order("amo-cxl", "LIMIT", 1, Some(88_000))).await;
        let modified = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "amo-mod", "quantity": 2}),
            )
            .await;
        assert_eq!(
            (
                &modified["result"]["status"],
                &modified["result"]["quantity"]
            ),
            (&json!("OPEN"), &json!(2)),
            "a modified after-market order still rests: {modified}"
        );
        let cancelled = stack
            .call(&user, "cancel", json!({"client_order_id": "amo-cxl"}))
            .await;
        assert_eq!(cancelled["result"]["status"], "CANCELLED", "{cancelled}");
        let funds = stack.call(&user, "funds", json!({})).await;
        assert_eq!(
            funds["result"]["blocked"],
            2 * SBIN + 3 * 90_000 + 70_000 + 2 * 85_000,
            "{funds}"
        );
        closed_ticks(&stack, 2).await;
        for id in ["amo-mkt", "amo-high", "amo-low", "amo-mod"] {
            assert_resting(&stack, &user, id).await;
        }

        // 09:15: the feed's first tick fills what it crosses, in full at its price. The
        // clock moves to just before the open by a restart (which reloads the resting
        // orders as after-market ones), so no step above races the open however slow
        // the machine; the first tick is watched from before the restart.
        let mut ticks = stack
            .client
            .subscribe(subjects::tick("NSE", "SBIN-EQ"))
            .await
            .expect("subscribe");
        stack.client.flush().await.expect("flush");
        stack.restart_with(at("2026-12-02T09:14:50+05:30")).await;
        let open = first_feed_tick(&mut ticks).await;
        for (id, quantity) in [("amo-mkt", 2), ("amo-high", 3), ("amo-mod", 2)] {
            let order = filled(&stack, &user, id).await;
            assert_eq!(
                (&order["filled_quantity"], &order["average_price"]),
                (&json!(quantity), &json!(open.ltp)),
                "{id} fills at the open: {order}"
            );
        }
        assert_resting(&stack, &user, "amo-low").await;
        assert_eq!(get(&stack, &user, "amo-cxl").await["status"], "CANCELLED");

        // In the session nothing changes: a market order fills when placed.
        let now = place(&stack, &user, order("in-session", "MARKET", 1, None)).await;
        assert_eq!(now["status"], "FILLED", "{now}");
        stack.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holiday_and_weekend_paper_orders_wait_for_monday() {
    each_backend(|backend| async move {
        // Christmas (Friday 25 December 2026) is an NSE holiday.
        let mut stack = TestStack::start_with(backend, at("2026-12-25T11:00:00+05:30")).await;
        let user = stack.trader("holiday").await;
        stack.publish_tick("SBIN-EQ", 1, SBIN, 1_000).await;
        let xmas = place(&stack, &user, order("xmas", "MARKET", 4, None)).await;
        assert_eq!(xmas["status"], "OPEN", "{xmas}");
        closed_ticks(&stack, 2).await;
        assert_resting(&stack, &user, "xmas").await;

        // Saturday: the holiday's order still rests, and a new one joins it.
        stack.restart_with(at("2026-12-26T11:00:00+05:30")).await;
        stack.publish_tick("SBIN-EQ", 10, SBIN, 1_000).await;
        let sat = place(&stack, &user, order("saturday", "LIMIT", 3, Some(90_000))).await;
        assert_eq!(sat["status"], "OPEN", "{sat}");
        closed_ticks(&stack, 11).await;
        assert_resting(&stack, &user, "xmas").await;
        assert_resting(&stack, &user, "saturday").await;

        // Monday 09:15: both fill in full at the first tick (watched from before the
        // restart, so that it cannot be missed).
        let mut ticks = stack
            .client
            .subscribe(subjects::tick("NSE", "SBIN-EQ"))
            .await
            .expect("subscribe");
        stack.client.flush().await.expect("flush");
        stack.restart_with(at("2026-12-28T09:14:50+05:30")).await;
        let open = first_feed_tick(&mut ticks).await;
        for (id, quantity) in [("xmas", 4), ("saturday", 3)] {
            let order = filled(&stack, &user, id).await;
            assert_eq!(
                (&order["filled_quantity"], &order["average_price"]),
                (&json!(quantity), &json!(open.ltp)),
                "{id}: {order}"
            );
        }
        stack.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_started_at_night_quotes_the_previous_close_and_takes_after_market_orders() {
    each_backend(|backend| async move {
        // 03:00 IST on a Wednesday: every exchange closed, no tick will come until the open;
        // nothing is published by hand.
        let mut stack = TestStack::start_with(backend, at("2026-12-02T03:00:00+05:30")).await;
        let user = stack.trader("night").await;
        let reply = stack
            .client
            .request(
                subjects::md::LAST,
                Encoding::MsgPack
                    .encode(&json!({"exchange": "NSE", "symbol": "SBIN-EQ"}))
                    .expect("encodes"),
            )
            .await
            .expect("md.req.last answers");
        let last: Value = Encoding::MsgPack
            .decode(&reply.payload)
            .expect("reply decodes");
        assert_eq!(
            (
                &last["ok"],
                &last["result"]["ltp"],
                &last["result"]["last_qty"]
            ),
            (&json!(true), &json!(SBIN), &json!(0)),
            "the previous close, with no trade: {last}"
        );
        let night = place(&stack, &user, order("night-mkt", "MARKET", 2, None)).await;
        assert_eq!(
            (&night["status"], &night["filled_quantity"]),
            (&json!("OPEN"), &json!(0)),
            "an after-market order at the previous close: {night}"
        );
        let funds = stack.call(&user, "funds", json!({})).await;
        assert_eq!(funds["result"]["blocked"], 2 * SBIN, "{funds}");
        stack.stop().await;
    })
    .await;
}
