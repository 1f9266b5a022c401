//! The paper broker's books: funds, positions, holdings and trades follow the fills, and
//! buys refused when the account cannot pay (see also `paper_books`).

use pinnacle_tests::{market, TestStack};
use serde_json::json;

use crate::each_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funds_positions_and_trades_follow_the_fills_and_insufficient_funds_is_refused() {
    each_backend(|backend| async move {
        // ₹10,000 of paper cash.
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 1_000_000).await;
        let user = stack.trader("books").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;

        let first = stack.place(&user, &market("buy-1", "SBIN-EQ", 10)).await;
        let fill = first.result.expect("filled").average_price.expect("price");
        let funds = stack.call(&user, "funds", json!({})).await;
        assert_eq!(funds["result"]["cash"], 1_000_000, "{funds}");
        assert_eq!(funds["result"]["used"], fill * 10);
        assert_eq!(funds["result"]["available"], 1_000_000 - fill * 10);

        // Ten more shares cost more than what is left.
        let refused = stack.place(&user, &market("buy-2", "SBIN-EQ", 10)).await;
        let error = refused.error.expect("refused");
        assert_eq!(
            error.code.as_str(),
            "INSUFFICIENT_FUNDS",
            "{}",
            error.message
        );
        let stored = stack
            .call(&user, "get", json!({"client_order_id": "buy-2"}))
            .await;
        assert_eq!(stored["result"]["status"], "REJECTED");

        // A resting buy blocks its value.
        let resting = stack
            .call(
                &user,
                "place",
                json!({"client_order_id": "rest", "exchange": "NSE", "symbol": "SBIN-EQ",
                "side": "BUY", "order_type": "LIMIT", "quantity": 2, "price": 100}),
            )
            .await;
        assert_eq!(resting["result"]["status"], "OPEN", "{resting}");
        let funds = stack.call(&user, "funds", json!({})).await;
        assert_eq!(funds["result"]["blocked"], 200);

        // Selling part of the position books the P&L.
        let mut sell = market("sell-1", "SBIN-EQ", 4);
        sell.side = pinnacle_common::model::Side::Sell;
        let sold = stack.place(&user, &sell).await.result.expect("sold");
        let sell_price = sold.average_price.expect("price");
        let positions = stack.call(&user, "positions", json!({})).await;
        let p = &positions["result"]["positions"][0];
        assert_eq!(p["symbol"], "SBIN-EQ", "{positions}");
        assert_eq!(p["net_quantity"], 6);
        assert_eq!(p["average_price"], fill);
        assert_eq!(p["realized_pnl"], 4 * (sell_price - fill));

        let holdings = stack.call(&user, "holdings", json!({})).await;
        assert_eq!(
            holdings["result"]["holdings"],
            json!([{"exchange": "NSE", "symbol": "SBIN-EQ", "quantity": 6, "average_price": fill}]),
            "{holdings}"
        );

        let trades = stack.call(&user, "trades", json!({})).await;
        let sides: Vec<_> = trades["result"]["trades"]
            .as_array()
            .expect("trades")
            .iter()
            .map(|t| {
                (
                    t["side"].as_str().unwrap_or("").to_string(),
                    t["quantity"].as_i64(),
                )
            })
            .collect();
        assert_eq!(
            sides,
            [("BUY".to_string(), Some(10)), ("SELL".to_string(), Some(4))]
        );

        // Portfolio reads use the broker session, so they are audited first.
        let purposes: Vec<String> = pinnacle_tests::audit_events(&stack.client, &user.id)
            .await
            .into_iter()
            .map(|(e, _)| e.purpose)
            .filter(|p| p.starts_with("portfolio."))
            .collect();
        assert_eq!(
            purposes,
            [
                "portfolio.funds",
                "portfolio.funds",
                "portfolio.positions",
                "portfolio.holdings",
                "portfolio.trades"
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resting_limit_orders_fill_from_the_tick_stream_in_parts() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("matcher").await;
        // A symbol only this test ticks, so the prices are ours.
        let publish =
            |seq: u64, ltp: i64, last_qty: i64| stack.publish_tick("TESTSYM", seq, ltp, last_qty);
        publish(1, 1_000, 5).await;
        rest_test_buy(&stack, &user, "rest-fill", 10, 900).await;

        // Ticks above the limit do nothing; ticks at the limit fill three units each.
        publish(2, 950, 100).await;
        let mut seq = 3;
        let filled =
            pinnacle_tests::eventually(std::time::Duration::from_secs(10), "the fill", || {
                seq += 1;
                let tick = publish(seq, 900, 3);
                let stack = &stack;
                let user = &user;
                async move {
                    tick.await;
                    let order = stack
                        .call(user, "get", json!({"client_order_id": "rest-fill"}))
                        .await;
                    (order["result"]["status"] == "FILLED").then_some(order)
                }
            })
            .await;
        assert_eq!(filled["result"]["filled_quantity"], 10);
        assert_eq!(filled["result"]["average_price"], 900);
        let partial_events = {
            let js = async_nats::jetstream::new(stack.client.clone());
            let mut stream = js
                .get_stream(pinnacle_common::subjects::ORDER_EVENTS_STREAM)
                .await
                .expect("stream");
            let last = stream.info().await.expect("info").state.last_sequence;
            let mut partial = 0;
            for seq in 1..=last {
                if let Ok(m) = stream.get_raw_message(seq).await {
                    let event: pinnacle_common::model::OrderEvent =
                        rmp_serde::from_slice(&m.payload).expect("event");
                    if event.order.client_order_id == "rest-fill"
                        && event.order.status
                            == pinnacle_common::model::OrderStatus::PartiallyFilled
                    {
                        partial += 1;
                    }
                }
            }
            partial
        };
        assert!(
            partial_events >= 3,
            "filled in parts of at most 3: {partial_events} partial fills"
        );
    })
    .await;
}

/// Parts of one order filled at different tick prices are booked at those prices: the
/// order's stored average is rounded down, so working a part's value back from it gave
/// trades a few paise off (and off the tick) and cash that did not add up to the trades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_filled_at_different_prices_are_booked_at_each_tick_price() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("parts").await;
        let publish = |seq: u64, ltp: i64| stack.publish_tick("TESTSYM", seq, ltp, 1);
        publish(1, 1_100).await;
        rest_test_buy(&stack, &user, "parts", 3, 1_000).await;

        // One unit a tick, each tick 5 paise below the one before (995, 990, 985, …),
        // until the order is filled: however many ticks reach the matcher before it knows
        // the order, every part fills at a price of its own.
        let sent = std::sync::Mutex::new(Vec::new());
        pinnacle_tests::eventually(std::time::Duration::from_secs(10), "the fill", || {
            let ltp = {
                let mut sent = sent.lock().expect("lock");
                let ltp = 995 - 5 * i64::try_from(sent.len()).unwrap_or(0);
                sent.push(ltp);
                ltp
            };
            let seq = 1 + u64::try_from(1_000 - ltp).unwrap_or(0);
            let tick = publish(seq, ltp);
            let (stack, user) = (&stack, &user);
            async move {
                tick.await;
                let order = stack
                    .call(user, "get", json!({"client_order_id": "parts"}))
                    .await;
                (order["result"]["status"] == "FILLED").then_some(())
            }
        })
        .await;
        let prices = sent.into_inner().expect("lock");

        let trades = stack.call(&user, "trades", json!({})).await;
        let parts: Vec<(i64, i64)> = trades["result"]["trades"]
            .as_array()
            .expect("trades")
            .iter()
            .map(|t| {
                (
                    t["quantity"].as_i64().unwrap_or(0),
                    t["price"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(parts.iter().map(|(q, _)| q).sum::<i64>(), 3, "{trades}");
        for (_, price) in &parts {
            assert!(
                prices.contains(price),
                "every part is booked at a tick's price: {trades}"
            );
        }
        let distinct: std::collections::BTreeSet<_> = parts.iter().map(|(_, p)| p).collect();
        assert!(
            distinct.len() >= 2,
            "the parts filled at different prices: {trades}"
        );
        let value: i64 = parts.iter().map(|(q, p)| q * p).sum();
        let funds = stack.call(&user, "funds", json!({})).await;
        assert_eq!(
            funds["result"]["used"], value,
            "cash is the parts' sum: {funds} {trades}"
        );
        let positions = stack.call(&user, "positions", json!({})).await;
        assert_eq!(
            positions["result"]["positions"][0]["net_quantity"], 3,
            "{positions}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_loss_orders_rest_until_the_trigger_then_fill() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("stopper").await;
        let publish = |seq: u64, ltp: i64| stack.publish_tick("STOPSYM", seq, ltp, 1_000);
        publish(1, 1_000).await;
        let stop = json!({"client_order_id": "stop-1", "exchange": "NSE", "symbol": "STOPSYM",
            "side": "SELL", "order_type": "STOPLOSS_MARKET", "quantity": 5, "trigger_price": 950,
            "product": "INTRADAY"});
        // Above the trigger it waits.
        let placed = place_resting(&stack, &user, stop).await;
        assert_eq!(placed["result"]["trigger_price"], 950);

        let bad = stack
            .call(&user, "place", json!({"client_order_id": "stop-bad", "exchange": "NSE", "symbol": "STOPSYM",
                "side": "BUY", "order_type": "STOPLOSS_LIMIT", "quantity": 1, "price": 900, "trigger_price": 950}))
            .await;
        assert_eq!(bad["error"]["code"], "INVALID_REQUEST", "a buy stop's trigger must not exceed its limit");

        let mut seq = 2;
        let filled = pinnacle_tests::eventually(std::time::Duration::from_secs(10), "the stop", || {
            seq += 1;
            // Above the trigger first, then through it.
            let tick = publish(seq, if seq < 5 { 960 } else { 940 });
            let (stack, user) = (&stack, &user);
            async move {
                tick.await;
                let order = stack.call(user, "get", json!({"client_order_id": "stop-1"})).await;
                (order["result"]["status"] == "FILLED").then_some(order)
            }
        })
        .await;
        assert_eq!(filled["result"]["average_price"], 940, "filled at the first price through the trigger");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intraday_orders_and_positions_are_squared_off_after_the_configured_time() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| {
            s.worker.square_off_at = "00:00".parse().expect("a time");
            s.worker.reconcile_interval_ms = 50;
        })
        .await;
        let user = stack.trader("intraday").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let mut intraday = market("mis-1", "SBIN-EQ", 5);
        intraday.product = pinnacle_common::model::Product::Intraday;
        let delivery = market("cnc-1", "SBIN-EQ", 3);
        let resting = json!({"client_order_id": "mis-rest", "exchange": "NSE", "symbol": "SBIN-EQ",
            "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": 100, "product": "INTRADAY"});
        // The square-off may already be running: whatever it catches, it must close.
        let _ = stack.place(&user, &intraday).await;
        assert!(stack.place(&user, &delivery).await.ok);
        let _ = stack.call(&user, "place", resting).await;

        let positions = pinnacle_tests::eventually(std::time::Duration::from_secs(15), "the square-off", || async {
            let rest = stack.call(&user, "get", json!({"client_order_id": "mis-rest"})).await;
            let positions = stack.call(&user, "positions", json!({})).await;
            let flat = positions["result"]["positions"]
                .as_array()?
                .iter()
                .filter(|p| p["product"] == "INTRADAY")
                .all(|p| p["net_quantity"] == 0);
            (rest["result"]["status"] == "CANCELLED" && flat).then_some(positions)
        })
        .await;
        let delivery_position = positions["result"]["positions"]
            .as_array()
            .expect("positions")
            .iter()
            .find(|p| p["product"] == "DELIVERY")
            .cloned()
            .expect("delivery position");
        assert_eq!(delivery_position["net_quantity"], 3, "delivery positions are left alone");
        let closing: Vec<_> = stack.call(&user, "list", json!({})).await["result"]["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .filter(|o| o["client_order_id"].as_str().is_some_and(|id| id.starts_with("sqoff-")))
            .map(|o| (o["side"].clone(), o["quantity"].clone(), o["status"].clone()))
            .collect();
        assert_eq!(closing, [(json!("SELL"), json!(5), json!("FILLED"))], "closed once, at market");
    })
    .await;
}

/// Places `order` on a symbol only this module ticks, as soon as the worker has a price
/// for it (its first tick may still be on the way), checks that it rests, and returns the
/// reply.
async fn place_resting(
    stack: &TestStack,
    user: &pinnacle_tests::TestUser,
    order: serde_json::Value,
) -> serde_json::Value {
    let placed =
        pinnacle_tests::eventually(std::time::Duration::from_secs(5), "a price", || async {
            let reply = stack.call(user, "place", order.clone()).await;
            (reply["error"]["code"] != "UNKNOWN_SYMBOL").then_some(reply)
        })
        .await;
    assert_eq!(placed["result"]["status"], "OPEN", "it rests: {placed}");
    placed
}

/// [`place_resting`] for a LIMIT BUY of `TESTSYM`.
async fn rest_test_buy(
    stack: &TestStack,
    user: &pinnacle_tests::TestUser,
    client_order_id: &str,
    quantity: i64,
    price: i64,
) {
    let order = json!({"client_order_id": client_order_id, "exchange": "NSE",
        "symbol": "TESTSYM", "side": "BUY", "order_type": "LIMIT", "quantity": quantity,
        "price": price});
    place_resting(stack, user, order).await;
}
