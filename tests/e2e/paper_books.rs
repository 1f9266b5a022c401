//! The paper broker's books kept in tables (issue 11 item 7): reservations taken
//! atomically, so concurrent buys cannot overspend; stop-market buys reserved at their
//! reference price; the short-selling rule; tick sizes; books that survive a restart and
//! never read the order history.

use std::time::Duration;

use pinnacle_common::entities::orders;
use pinnacle_tests::{eventually, market, TestStack, TestUser};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};

use crate::each_backend;

/// Publishes `ltp` for NSE `symbol` and waits until the paper broker takes orders on it: a
/// probe buy (which reserves 5 paise) is placed, then cancelled.
async fn price(stack: &TestStack, user: &TestUser, symbol: &str, ltp: i64) {
    stack.publish_tick(symbol, 1, ltp, 1).await;
    let probe = json!({"client_order_id": format!("probe-{symbol}"), "exchange": "NSE",
        "symbol": symbol, "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": 5});
    let placed = eventually(Duration::from_secs(10), "a price", || async {
        let reply = stack.call(user, "place", probe.clone()).await;
        (reply["ok"] == true).then_some(reply)
    })
    .await;
    assert_eq!(placed["result"]["status"], "OPEN", "{placed}");
    let cancelled = stack
        .call(
            user,
            "cancel",
            json!({"client_order_id": format!("probe-{symbol}")}),
        )
        .await;
    assert_eq!(cancelled["result"]["status"], "CANCELLED", "{cancelled}");
}

/// A trader whose order rate is capped at 1,000 a second rather than Angel One's 9, for
/// tests that send many orders in a moment.
async fn busy_trader(stack: &TestStack, name: &str) -> TestUser {
    let user = stack.trader(name).await;
    stack.lift_order_rate(&user.id, 1_000).await;
    user
}

fn limit(id: &str, symbol: &str, side: &str, quantity: i64, price: i64, product: &str) -> Value {
    json!({"client_order_id": id, "exchange": "NSE", "symbol": symbol, "side": side,
        "order_type": "LIMIT", "quantity": quantity, "price": price, "product": product})
}

async fn funds(stack: &TestStack, user: &TestUser) -> Value {
    stack.call(user, "funds", json!({})).await["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_buys_cannot_overspend_and_cancel_and_modify_settle_the_reservation() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 1_000_000).await;
        // Twenty orders in one go: above Angel One's 9 per second, which is not tested here.
        let user = busy_trader(&stack, "reserver").await;
        price(&stack, &user, "RSVSYM", 200_000).await;
        let f = funds(&stack, &user).await;
        assert_eq!(
            (&f["blocked"], &f["available"]),
            (&json!(0), &json!(1_000_000)),
            "a cancelled order holds nothing: {f}"
        );

        // Twenty resting buys of ₹1,000 each at once; the account can pay for ten.
        let replies = futures::future::join_all((0..20).map(|i| {
            let body = limit(&format!("c-{i}"), "RSVSYM", "BUY", 1, 100_000, "DELIVERY");
            let (stack, user) = (&stack, &user);
            async move { stack.call(user, "place", body).await }
        }))
        .await;
        let open = replies
            .iter()
            .filter(|r| r["result"]["status"] == "OPEN")
            .count();
        let refused = replies
            .iter()
            .filter(|r| r["error"]["code"] == "INSUFFICIENT_FUNDS")
            .count();
        assert_eq!((open, refused), (10, 10), "{replies:?}");
        let f = funds(&stack, &user).await;
        assert_eq!(
            (&f["blocked"], &f["available"]),
            (&json!(1_000_000), &json!(0)),
            "{f}"
        );

        // A cancel gives its reservation back.
        let open_ids: Vec<String> = replies
            .iter()
            .filter(|r| r["result"]["status"] == "OPEN")
            .map(|r| {
                r["result"]["client_order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let cancelled = stack
            .call(&user, "cancel", json!({"client_order_id": open_ids[0]}))
            .await;
        assert_eq!(cancelled["result"]["status"], "CANCELLED", "{cancelled}");
        assert_eq!(funds(&stack, &user).await["available"], 100_000);

        // A modify re-reserves the difference: 1 → 3 needs ₹2,000 more (refused, nothing
        // changes); 1 → 2 needs the ₹1,000 that is free.
        let too_big = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": open_ids[1], "quantity": 3}),
            )
            .await;
        assert_eq!(too_big["error"]["code"], "INSUFFICIENT_FUNDS", "{too_big}");
        let kept = stack
            .call(&user, "get", json!({"client_order_id": open_ids[1]}))
            .await;
        assert_eq!(
            (&kept["result"]["status"], &kept["result"]["quantity"]),
            (&json!("OPEN"), &json!(1))
        );
        assert_eq!(funds(&stack, &user).await["available"], 100_000);
        let grown = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": open_ids[1], "quantity": 2}),
            )
            .await;
        assert_eq!(grown["result"]["quantity"], 2, "{grown}");
        let f = funds(&stack, &user).await;
        assert_eq!(
            (&f["blocked"], &f["available"]),
            (&json!(1_000_000), &json!(0)),
            "{f}"
        );

        // A resting buy that fills pays its fill price and gives back its reservation.
        // (Ticks until every order is filled: the matcher learns of the modified one from
        // its events.)
        let mut seq = 1;
        let filled = eventually(Duration::from_secs(10), "the fills", || {
            seq += 1;
            let (stack, user) = (&stack, &user);
            async move {
                stack.publish_tick("RSVSYM", seq, 95_000, 1_000).await;
                let f = funds(stack, user).await;
                (f["blocked"] == 0).then_some(f)
            }
        })
        .await;
        assert_eq!(filled["used"], 10 * 95_000, "{filled}");
        assert_eq!(filled["available"], 1_000_000 - 10 * 95_000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_market_buys_are_reserved_and_prices_must_be_on_the_tick() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 1_000_000).await;
        let user = busy_trader(&stack, "stopper").await;
        price(&stack, &user, "SLMSYM", 10_000).await;

        // The order of issue 11: a stop-market buy worth 10^15 paise.
        let huge = stack
            .call(
                &user,
                "place",
                json!({"client_order_id": "huge", "exchange": "NSE",
                "symbol": "SLMSYM", "side": "BUY", "order_type": "STOPLOSS_MARKET",
                "quantity": 1, "trigger_price": 1_000_000_000_000_000_i64}),
            )
            .await;
        assert_eq!(huge["error"]["code"], "INSUFFICIENT_FUNDS", "{huge}");
        let f = funds(&stack, &user).await;
        assert_eq!(
            (&f["used"], &f["blocked"], &f["available"]),
            (&json!(0), &json!(0), &json!(1_000_000))
        );

        // A resting stop-market buy holds its trigger plus 1 %, up to the tick.
        let stop = stack
            .call(
                &user,
                "place",
                json!({"client_order_id": "stop", "exchange": "NSE",
                "symbol": "SLMSYM", "side": "BUY", "order_type": "STOPLOSS_MARKET",
                "quantity": 10, "trigger_price": 10_500}),
            )
            .await;
        assert_eq!(stop["result"]["status"], "OPEN", "{stop}");
        assert_eq!(funds(&stack, &user).await["blocked"], 10 * 10_605);

        // Off-tick prices are refused before anything is stored.
        let off = stack
            .call(
                &user,
                "place",
                limit("off-tick", "SLMSYM", "BUY", 1, 9_999, "DELIVERY"),
            )
            .await;
        assert_eq!(off["error"]["code"], "INVALID_REQUEST", "{off}");
        let stored = stack
            .call(&user, "get", json!({"client_order_id": "off-tick"}))
            .await;
        assert_eq!(stored["error"]["code"], "NOT_FOUND", "{stored}");
        // The tick size comes from the instrument master: IDEA-EQ trades in whole paise.
        price(&stack, &user, "IDEA-EQ", 1_000).await;
        let paisa = stack
            .call(
                &user,
                "place",
                limit("paisa", "IDEA-EQ", "BUY", 1, 999, "DELIVERY"),
            )
            .await;
        assert_eq!(paisa["result"]["status"], "OPEN", "{paisa}");
        let off_trigger = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "stop", "trigger_price": 10_502}),
            )
            .await;
        assert_eq!(
            off_trigger["error"]["code"], "INVALID_REQUEST",
            "{off_trigger}"
        );
        // A modify that changes nothing is refused too. Neither refusal moved the order:
        // it is as placed, and its history has no PENDING_MODIFY.
        let same = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "stop", "quantity": 10, "trigger_price": 10_500}),
            )
            .await;
        assert_eq!(same["error"]["code"], "INVALID_REQUEST", "{same}");
        assert!(
            same["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("changes nothing")),
            "{same}"
        );
        // So is a change of order type (it cannot change), never silently ignored; the
        // order's own type is accepted.
        let retyped = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "stop", "order_type": "MARKET", "quantity": 9}),
            )
            .await;
        assert_eq!(retyped["error"]["code"], "INVALID_REQUEST", "{retyped}");
        assert!(
            retyped["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("order type cannot be modified")),
            "{retyped}"
        );
        let own_type = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "stop", "order_type": "STOPLOSS_MARKET", "quantity": 10, "trigger_price": 10_500}),
            )
            .await;
        assert!(
            own_type["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("changes nothing")),
            "{own_type}"
        );
        let stop = stack
            .call(&user, "get", json!({"client_order_id": "stop"}))
            .await;
        assert_eq!(
            (&stop["result"]["status"], &stop["result"]["trigger_price"]),
            (&json!("OPEN"), &json!(10_500)),
            "{stop}"
        );
        let cancelled = stack
            .call(&user, "cancel", json!({"client_order_id": "stop"}))
            .await;
        assert_eq!(cancelled["result"]["status"], "CANCELLED", "{cancelled}");
        let order_id = stop["result"]["order_id"].as_str().expect("an order id");
        let history = eventually(Duration::from_secs(10), "the cancel's event", || async {
            let events = pinnacle_tests::order_events(&stack.client, &user.id).await;
            let statuses: Vec<String> = events
                .iter()
                .filter(|e| e.order.order_id == order_id)
                .map(|e| e.order.status.as_str().to_string())
                .collect();
            (statuses.last().map(String::as_str) == Some("CANCELLED")).then_some(statuses)
        })
        .await;
        assert_eq!(
            history,
            ["NEW", "SUBMITTED", "OPEN", "PENDING_CANCEL", "CANCELLED"],
            "refused modifies left no trace"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paper_account_without_a_client_code_stores_nothing_until_it_has_one() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 1_000_000).await;
        let user = stack.create_user("bare").await;
        let path = format!("/v1/users/{}/broker-accounts/paper", user.id);
        let (status, body) = stack
            .api_put(&path, &user.token, &json!({"broker": "paper"}))
            .await;
        assert_eq!(status, 200, "{body}");
        stack.publish_tick("BARESYM", 1, 10_000, 1_000).await;
        let order = json!({"client_order_id": "bare-1", "exchange": "NSE",
            "symbol": "BARESYM", "side": "BUY", "order_type": "MARKET", "quantity": 1,
            "product": "DELIVERY"});
        let refused = eventually(Duration::from_secs(10), "a price", || async {
            let reply = stack.call(&user, "place", order.clone()).await;
            (reply["error"]["code"] != "PRICE_UNAVAILABLE").then_some(reply)
        })
        .await;
        assert_eq!(refused["error"]["code"], "BROKER_REJECTED", "{refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("client_code")),
            "{refused}"
        );
        let stored = stack
            .call(&user, "get", json!({"client_order_id": "bare-1"}))
            .await;
        assert_eq!(stored["error"]["code"], "NOT_FOUND", "{stored}");
        // Nothing was stored, so the same order is placed once the account has a client code.
        let (status, body) = stack
            .api_put(
                &path,
                &user.token,
                &json!({"broker": "paper", "client_code": "BARE1"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let placed = stack.call(&user, "place", order).await;
        assert_eq!(placed["result"]["status"], "FILLED", "{placed}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_intraday_sells_go_short_and_delivery_sells_come_from_holdings() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 1_000_000).await;
        let user = stack.trader("shorter").await;
        price(&stack, &user, "SHRTSYM", 10_000).await;
        let sell = |id: &str, quantity: i64, product: &str| {
            json!({"client_order_id": id, "exchange": "NSE", "symbol": "SHRTSYM", "side": "SELL",
                "order_type": "MARKET", "quantity": quantity, "product": product})
        };

        let naked = stack
            .call(&user, "place", sell("naked", 5, "DELIVERY"))
            .await;
        assert_eq!(naked["error"]["code"], "INSUFFICIENT_HOLDINGS", "{naked}");

        let short = stack
            .call(&user, "place", sell("short", 5, "INTRADAY"))
            .await;
        assert_eq!(short["result"]["status"], "FILLED", "{short}");
        let f = funds(&stack, &user).await;
        // The proceeds are held back, and the same again as margin.
        assert_eq!(
            (&f["used"], &f["blocked"]),
            (&json!(-50_000), &json!(100_000)),
            "{f}"
        );
        assert_eq!(f["available"], 1_000_000 - 50_000);
        let positions = stack.call(&user, "positions", json!({})).await;
        let p = &positions["result"]["positions"][0];
        assert_eq!(
            (&p["product"], &p["net_quantity"]),
            (&json!("INTRADAY"), &json!(-5)),
            "{positions}"
        );

        // Delivery: buy 3, then two resting sells of 3 at once: one holds the 3, the other
        // finds nothing left to sell.
        let mut buy = market("buy-3", "SHRTSYM", 3);
        buy.product = pinnacle_common::model::Product::Delivery;
        assert!(stack.place(&user, &buy).await.ok);
        let holdings = stack.call(&user, "holdings", json!({})).await;
        assert_eq!(
            holdings["result"]["holdings"][0]["quantity"], 3,
            "{holdings}"
        );
        let (a, b) = tokio::join!(
            stack.call(
                &user,
                "place",
                limit("sell-a", "SHRTSYM", "SELL", 3, 20_000, "DELIVERY")
            ),
            stack.call(
                &user,
                "place",
                limit("sell-b", "SHRTSYM", "SELL", 3, 20_000, "DELIVERY")
            ),
        );
        let mut outcomes = [
            a["result"]["status"]
                .as_str()
                .or(a["error"]["code"].as_str())
                .unwrap_or_default()
                .to_string(),
            b["result"]["status"]
                .as_str()
                .or(b["error"]["code"].as_str())
                .unwrap_or_default()
                .to_string(),
        ];
        outcomes.sort();
        assert_eq!(outcomes, ["INSUFFICIENT_HOLDINGS", "OPEN"], "{a} {b}");
    })
    .await;
}

/// Every portfolio read, as the worker answers it.
async fn books(stack: &TestStack, user: &TestUser) -> Vec<Value> {
    let mut all = Vec::new();
    for verb in ["funds", "positions", "holdings", "trades"] {
        all.push(stack.call(user, verb, json!({})).await["result"].clone());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_survive_a_restart_and_never_read_the_order_history() {
    each_backend(|backend| async move {
        let mut stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 10_000_000).await;
        let user = stack.trader("keeper").await;
        price(&stack, &user, "KEEPSYM", 10_000).await;
        assert!(
            stack
                .place(&user, &market("buy-10", "KEEPSYM", 10))
                .await
                .ok
        );
        let mut sell = market("sell-4", "KEEPSYM", 4);
        sell.side = pinnacle_common::model::Side::Sell;
        assert!(stack.place(&user, &sell).await.ok);
        let rest = stack
            .call(
                &user,
                "place",
                limit("rest", "KEEPSYM", "BUY", 2, 5_000, "DELIVERY"),
            )
            .await;
        assert_eq!(rest["result"]["status"], "OPEN", "{rest}");
        let before = books(&stack, &user).await;
        assert_eq!(before[0]["blocked"], 10_000, "{:?}", before[0]);
        assert_eq!(before[1]["positions"][0]["net_quantity"], 6);

        stack.restart().await;
        assert_eq!(
            books(&stack, &user).await,
            before,
            "the books are in the database"
        );

        // Thousands of orders in the account's history change nothing: the books never
        // read it (these rows claim huge fills that no books row knows of).
        let account = stack.broker_account(&user.id).await;
        let now = chrono::Utc::now();
        let fake = (0..2_000).map(|i| orders::ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            user_id: Set(user.id.clone()),
            broker_account_id: Set(account.id.clone()),
            client_order_id: Set(format!("history-{i}")),
            exchange: Set("NSE".into()),
            symbol: Set("KEEPSYM".into()),
            side: Set("BUY".into()),
            order_type: Set("MARKET".into()),
            quantity: Set(1_000),
            price: Set(None),
            trigger_price: Set(None),
            product: Set("DELIVERY".into()),
            status: Set("FILLED".into()),
            filled_quantity: Set(1_000),
            average_price: Set(Some(1_000_000)),
            filled_value: Set(None),
            broker_order_id: Set(Some(format!("PAPER-history-{i}"))),
            broker_unique_id: Set(None),
            reject_code: Set(None),
            reject_reason: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            lease_owner: Set(None),
            lease_until_ms: Set(None),
        });
        let rows: Vec<_> = fake.collect();
        for chunk in rows.chunks(200) {
            orders::Entity::insert_many(chunk.to_vec())
                .exec(&stack.db)
                .await
                .expect("insert history");
        }
        assert_eq!(
            books(&stack, &user).await,
            before,
            "history rows are not read"
        );
        // ... and neither are the real ones.
        orders::Entity::delete_many()
            .filter(orders::Column::UserId.eq(user.id.as_str()))
            .filter(orders::Column::Status.is_in(["FILLED", "CANCELLED"]))
            .exec(&stack.db)
            .await
            .expect("delete history");
        assert_eq!(books(&stack, &user).await, before);

        // The resting order, placed before the restart, still releases its reservation.
        let cancelled = stack
            .call(&user, "cancel", json!({"client_order_id": "rest"}))
            .await;
        assert_eq!(cancelled["result"]["status"], "CANCELLED", "{cancelled}");
        assert_eq!(funds(&stack, &user).await["blocked"], 0);
    })
    .await;
}

/// Ticks NSE `symbol` at `ltp` for `last_qty` units until `client_order_id` has some units
/// filled, and returns the order.
async fn partly_filled(
    stack: &TestStack,
    user: &TestUser,
    symbol: &str,
    client_order_id: &str,
    ltp: i64,
    last_qty: i64,
) -> Value {
    // One tick at a time, each given a moment to fill before the next, so that few
    // fills are still on their way once a part is seen.
    let mut seq = 1;
    eventually(Duration::from_secs(10), "a part filled", || {
        seq += 1;
        async move {
            stack.publish_tick(symbol, seq, ltp, last_qty).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let order = stack
                .call(user, "get", json!({"client_order_id": client_order_id}))
                .await;
            (order["result"]["status"] == "PARTIALLY_FILLED").then_some(order["result"].clone())
        }
    })
    .await
}

/// The units and paise of `order_id`'s fills in the trade book.
async fn traded(stack: &TestStack, user: &TestUser, order_id: &Value) -> (i64, i64) {
    let trades = stack.call(user, "trades", json!({})).await;
    trades["result"]["trades"]
        .as_array()
        .expect("trades")
        .iter()
        .filter(|t| t["order_id"] == *order_id)
        .fold((0, 0), |(units, paise), t| {
            let quantity = t["quantity"].as_i64().expect("quantity");
            let price = t["price"].as_i64().expect("price");
            (units + quantity, paise + quantity * price)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_filled_order_keeps_its_fill_through_a_modify_and_a_cancel() {
    each_backend(|backend| async move {
        let cash = 10_000_000;
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = cash).await;
        let user = busy_trader(&stack, "partfill").await;

        // A resting buy of 10 at ₹990; ticks at ₹980 fill 3 units at a time.
        price(&stack, &user, "PARTSYM", 100_000).await;
        let placed = stack
            .call(
                &user,
                "place",
                limit("pm", "PARTSYM", "BUY", 10, 99_000, "DELIVERY"),
            )
            .await;
        assert_eq!(placed["result"]["status"], "OPEN", "{placed}");
        let order_id = placed["result"]["order_id"].clone();
        let part = partly_filled(&stack, &user, "PARTSYM", "pm", 98_000, 3).await;
        let filled = part["filled_quantity"].as_i64().expect("filled");
        assert!((1..10).contains(&filled), "{part}");
        assert_eq!(part["average_price"], 98_000, "{part}");

        // Modified to 12 below the market: it rests, and what filled stays filled (a tick
        // still on its way may have filled a few more meanwhile).
        let rested = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "pm", "quantity": 12, "price": 97_000}),
            )
            .await;
        let rested = &rested["result"];
        assert_eq!(
            (
                &rested["status"],
                &rested["quantity"],
                &rested["average_price"]
            ),
            (&json!("PARTIALLY_FILLED"), &json!(12), &json!(98_000)),
            "{rested}"
        );
        let kept = rested["filled_quantity"].as_i64().expect("filled");
        assert!(kept >= filled && kept < 12, "{rested}");
        assert_eq!(
            traded(&stack, &user, &order_id).await,
            (kept, kept * 98_000)
        );
        // Priced into the market (the last price is ₹980): only the rest fills.
        let done = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "pm", "price": 99_000}),
            )
            .await;
        let done = &done["result"];
        assert_eq!(
            (
                &done["status"],
                &done["filled_quantity"],
                &done["average_price"]
            ),
            (&json!("FILLED"), &json!(12), &json!(98_000)),
            "{done}"
        );
        assert_eq!(
            traded(&stack, &user, &order_id).await,
            (12, 12 * 98_000),
            "each unit traded once"
        );

        // A cancel ends the rest of a partly filled order, not its fill.
        price(&stack, &user, "PARTSYM2", 100_000).await;
        let placed = stack
            .call(
                &user,
                "place",
                limit("pc", "PARTSYM2", "BUY", 10, 99_000, "DELIVERY"),
            )
            .await;
        let order_id = placed["result"]["order_id"].clone();
        let part = partly_filled(&stack, &user, "PARTSYM2", "pc", 98_000, 4).await;
        let part_filled = part["filled_quantity"].as_i64().expect("filled");
        let cancelled = stack
            .call(&user, "cancel", json!({"client_order_id": "pc"}))
            .await;
        let cancelled = &cancelled["result"];
        assert_eq!(
            (&cancelled["status"], &cancelled["average_price"]),
            (&json!("CANCELLED"), &json!(98_000)),
            "{cancelled}"
        );
        let filled = cancelled["filled_quantity"].as_i64().expect("filled");
        assert!(filled >= part_filled && filled < 10, "{cancelled}");
        let again = stack
            .call(&user, "get", json!({"client_order_id": "pc"}))
            .await;
        assert_eq!(again["result"]["filled_quantity"], filled, "{again}");
        assert_eq!(
            traded(&stack, &user, &order_id).await,
            (filled, filled * 98_000)
        );

        // The books agree: the positions hold what traded, nothing is still held back, and
        // the cash paid is exactly the fills' value.
        let positions = stack.call(&user, "positions", json!({})).await;
        let net = |symbol: &str| {
            positions["result"]["positions"]
                .as_array()
                .expect("positions")
                .iter()
                .filter(|p| p["symbol"] == symbol)
                .map(|p| p["net_quantity"].as_i64().expect("net"))
                .sum::<i64>()
        };
        assert_eq!(
            (net("PARTSYM"), net("PARTSYM2")),
            (12, filled),
            "{positions}"
        );
        let f = funds(&stack, &user).await;
        assert_eq!(
            (&f["blocked"], &f["used"]),
            (&json!(0), &json!((12 + filled) * 98_000)),
            "{f}"
        );
    })
    .await;
}

/// A matcher fills an order only from the view of it the tick crossed: an order whose
/// stored fill has moved on (another worker's matcher filled it, from this tick or a later
/// one, and its event has not arrived yet) is left alone, so one tick's quantity never
/// fills an order twice. The other worker's fill is written here in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matcher_leaves_an_order_filled_since_its_view_to_the_worker_that_filled_it() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 100_000_000).await;
        let user = busy_trader(&stack, "lagging").await;
        price(&stack, &user, "LAGSYM", 100_000).await;
        for id in ["lag-target", "lag-probe"] {
            let placed = stack
                .call(
                    &user,
                    "place",
                    limit(id, "LAGSYM", "BUY", 30, 99_000, "INTRADAY"),
                )
                .await;
            assert_eq!(placed["result"]["status"], "OPEN", "{placed}");
        }
        // Both are in the matcher's book once their OPEN events are out.
        eventually(Duration::from_secs(10), "the OPEN events", || async {
            let events = pinnacle_tests::order_events(&stack.client, &user.id).await;
            let open = |id: &str| {
                events
                    .iter()
                    .any(|e| e.order.client_order_id == id && e.order.status.as_str() == "OPEN")
            };
            (open("lag-target") && open("lag-probe")).then_some(())
        })
        .await;
        let moved = orders::Entity::update_many()
            .col_expr(orders::Column::Status, "PARTIALLY_FILLED".into())
            .col_expr(orders::Column::FilledQuantity, 3.into())
            .col_expr(orders::Column::AveragePrice, 98_000.into())
            .filter(orders::Column::UserId.eq(user.id.as_str()))
            .filter(orders::Column::ClientOrderId.eq("lag-target"))
            .exec(&stack.db)
            .await
            .expect("another worker's fill");
        assert_eq!(moved.rows_affected, 1);

        // Two ticks, each crossing both orders: the probe fills 3 units at each, so each
        // tick has been matched once it has; the target is left as the other worker has it.
        for (seq, probe_filled) in [(2, 3), (3, 6)] {
            stack.publish_tick("LAGSYM", seq, 98_000, 3).await;
            eventually(Duration::from_secs(10), "the probe's part", || async {
                let got = stack
                    .call(&user, "get", json!({"client_order_id": "lag-probe"}))
                    .await;
                (got["result"]["filled_quantity"] == probe_filled).then_some(())
            })
            .await;
        }
        let target = stack
            .call(&user, "get", json!({"client_order_id": "lag-target"}))
            .await;
        assert_eq!(target["result"]["filled_quantity"], 3, "{target}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_book_each_part_of_a_resting_order_once() {
    each_backend(|backend| async move {
        let cash = 100_000_000;
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = cash).await;
        let user = busy_trader(&stack, "twofill").await;
        // A second worker: every worker's matcher follows the ticks and crosses the same
        // resting orders with them.
        let (mut second, stop) = stack
            .second_worker(pinnacle_common::config::WorkerSettings {
                paper_cash: cash,
                ..pinnacle_tests::worker_settings()
            })
            .await;

        // Resting buys of 40 at ₹990; ticks at ₹980 fill 3 units at a time, in parts.
        price(&stack, &user, "TWOSYM", 100_000).await;
        // The probe may have gone to the first worker: make sure the second has the price.
        eventually(
            Duration::from_secs(10),
            "a price at both workers",
            || async {
                stack.publish_tick("TWOSYM", 1, 100_000, 1).await;
                let probes = futures::future::join_all((0..4).map(|_| {
                    let probe = json!({"exchange": "NSE", "symbol": "TWOSYM", "side": "BUY",
                    "order_type": "LIMIT", "quantity": 1, "price": 5,
                    "client_order_id": format!("two-probe-{}", uuid::Uuid::new_v4())});
                    let (stack, user) = (&stack, &user);
                    async move { stack.call(user, "place", probe).await }
                }))
                .await;
                probes.iter().all(|p| p["ok"] == true).then_some(())
            },
        )
        .await;
        let mut ids = Vec::new();
        for n in 0..4 {
            let placed = stack
                .call(
                    &user,
                    "place",
                    limit(&format!("two-{n}"), "TWOSYM", "BUY", 40, 99_000, "INTRADAY"),
                )
                .await;
            assert_eq!(placed["result"]["status"], "OPEN", "{placed}");
            ids.push(placed["result"]["order_id"].clone());
        }
        for seq in 2..40 {
            stack.publish_tick("TWOSYM", seq, 98_000, 3).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Each order's units in the trade book are the units its row says filled, and its
        // events hold each part once.
        let events = eventually(Duration::from_secs(20), "the fills settle", || async {
            let mut rows = Vec::new();
            for n in 0..4 {
                let got = stack
                    .call(&user, "get", json!({"client_order_id": format!("two-{n}")}))
                    .await;
                rows.push(got["result"].clone());
            }
            let events = pinnacle_tests::order_events(&stack.client, &user.id).await;
            let settled = rows.iter().all(|row| {
                events.iter().any(|e| {
                    row["order_id"] == e.order.order_id.as_str()
                        && e.order.filled_quantity == row["filled_quantity"].as_i64().unwrap_or(-1)
                        && row["status"] == e.order.status.as_str()
                })
            });
            settled.then_some((rows, events))
        })
        .await;
        let (rows, events) = events;
        let mut parts = 0;
        for row in &rows {
            let filled = row["filled_quantity"].as_i64().expect("filled");
            assert!(filled > 3, "more than one part filled: {row}");
            let (units, _) = traded(&stack, &user, &row["order_id"]).await;
            assert_eq!(units, filled, "booked once: {row}");
            let id = row["order_id"].as_str().expect("id");
            let status = row["status"]
                .as_str()
                .expect("status")
                .parse()
                .expect("known status");
            pinnacle_tests::assert_complete_history(&events, id, status);
            let mut fills: Vec<i64> = events
                .iter()
                .filter(|e| e.order.order_id == id)
                .map(|e| e.order.filled_quantity)
                .filter(|&q| q > 0)
                .collect();
            let all = fills.len();
            fills.dedup();
            assert_eq!(fills.len(), all, "a part's event came twice: {fills:?}");
            parts += all;
        }
        assert!(parts >= 8, "parts filled: {parts}");
        let position = stack.call(&user, "positions", json!({})).await;
        let held: i64 = position["result"]["positions"]
            .as_array()
            .expect("positions")
            .iter()
            .filter(|p| p["symbol"] == "TWOSYM")
            .map(|p| p["net_quantity"].as_i64().expect("net"))
            .sum();
        let filled: i64 = rows
            .iter()
            .map(|r| r["filled_quantity"].as_i64().expect("filled"))
            .sum();
        assert_eq!(held, filled, "the position holds what the orders filled");
        stop.cancel();
        while second.join_next().await.is_some() {}
    })
    .await;
}

/// An order's average price and a position's realised P&L are exact however many uneven
/// parts fill: the order's average is every part's value over its units, rounded down
/// once (not a running average rounded at each part), and a position that goes flat has
/// booked exactly what was sold less what was bought.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn averages_and_realised_pnl_stay_exact_over_many_uneven_fills() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 100_000_000).await;
        let user = busy_trader(&stack, "exact").await;
        price(&stack, &user, "EXACTSYM", 100_000).await;
        let placed = stack
            .call(
                &user,
                "place",
                limit("ex-buy", "EXACTSYM", "BUY", 40, 99_000, "DELIVERY"),
            )
            .await;
        assert_eq!(placed["result"]["status"], "OPEN", "{placed}");
        let order_id = placed["result"]["order_id"].clone();

        // Ticks of 1 to 3 units at prices whose running average rounds differently from
        // the whole, one at a time until the order has filled.
        let mut seq: i64 = 1;
        let filled = eventually(Duration::from_secs(30), "the buy filled", || {
            seq += 1;
            let (ltp, last_qty) = (97_001 + (seq * 37) % 71, 1 + seq % 3);
            let stack = &stack;
            let user = &user;
            async move {
                stack
                    .publish_tick("EXACTSYM", seq.unsigned_abs(), ltp, last_qty)
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let order = stack
                    .call(user, "get", json!({"client_order_id": "ex-buy"}))
                    .await;
                (order["result"]["status"] == "FILLED").then_some(order["result"].clone())
            }
        })
        .await;
        let (units, value) = traded(&stack, &user, &order_id).await;
        assert_eq!(units, 40);
        let parts = stack.call(&user, "trades", json!({})).await["result"]["trades"]
            .as_array()
            .expect("trades")
            .iter()
            .filter(|t| t["order_id"] == order_id)
            .count();
        assert!(parts >= 14, "many parts: {parts}");
        assert_eq!(filled["average_price"], value / units, "{filled}");
        let position = |positions: &Value| {
            positions["result"]["positions"]
                .as_array()
                .expect("positions")
                .iter()
                .find(|p| p["symbol"] == "EXACTSYM")
                .cloned()
                .expect("the position")
        };
        let long = position(&stack.call(&user, "positions", json!({})).await);
        assert_eq!(long["average_price"], value / units, "{long}");

        // Sold off in three uneven parts at three prices: flat, with the round trip's P&L
        // booked to the paisa.
        let mut sold = 0;
        for (n, (quantity, ltp)) in [(7, 101_003), (11, 100_991), (22, 101_017)]
            .into_iter()
            .enumerate()
        {
            stack
                .publish_tick("EXACTSYM", 1_000 + n as u64, ltp, 1)
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let sell = stack
                .call(
                    &user,
                    "place",
                    limit(
                        &format!("ex-sell-{n}"),
                        "EXACTSYM",
                        "SELL",
                        quantity,
                        90_000,
                        "DELIVERY",
                    ),
                )
                .await;
            assert_eq!(sell["result"]["status"], "FILLED", "{sell}");
            let (units, paise) = traded(&stack, &user, &sell["result"]["order_id"]).await;
            assert_eq!(units, quantity);
            sold += paise;
        }
        let flat = position(&stack.call(&user, "positions", json!({})).await);
        assert_eq!(
            (&flat["net_quantity"], &flat["average_price"]),
            (&json!(0), &Value::Null),
            "{flat}"
        );
        assert_eq!(flat["realized_pnl"], sold - value, "{flat}");
        let f = funds(&stack, &user).await;
        assert_eq!(
            (&f["used"], &f["blocked"]),
            (&json!(value - sold), &json!(0)),
            "{f}"
        );
    })
    .await;
}

/// Black-box finding (helper-60 F1): long 50 intraday, a resting sell holds the 50 units
/// it will close, and a market sell of 50 (finding none free) reserves cash to go short.
/// The market sell fills first and closes the long, so the resting sell will be the one to
/// go short: its units become cash held at its own price, at once, and the cash the market
/// sell gave back is not free to spend. Before, the resting sell kept holding units of a
/// flat position; a buy for nearly all the cash was accepted, and the resting sell's fill
/// then opened a short with no margin, taking the account below zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sell_that_closes_units_a_resting_sell_held_leaves_no_cash_to_overspend() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 1_000_000).await;
        let user = stack.trader("closer").await;
        price(&stack, &user, "CLOSESYM", 10_000).await;
        let market_order = |id: &str, side: &str| {
            json!({"client_order_id": id, "exchange": "NSE", "symbol": "CLOSESYM",
                "side": side, "order_type": "MARKET", "quantity": 50, "product": "INTRADAY"})
        };
        let long = stack
            .call(&user, "place", market_order("long", "BUY"))
            .await;
        assert_eq!(long["result"]["status"], "FILLED", "{long}");
        let resting = stack
            .call(
                &user,
                "place",
                limit("resting", "CLOSESYM", "SELL", 50, 12_000, "INTRADAY"),
            )
            .await;
        assert_eq!(resting["result"]["status"], "OPEN", "{resting}");
        let closing = stack
            .call(&user, "place", market_order("closing", "SELL"))
            .await;
        assert_eq!(closing["result"]["status"], "FILLED", "{closing}");

        // Flat, and the resting sell's short (50 × 12,000) is held.
        let f = funds(&stack, &user).await;
        assert_eq!(
            (&f["used"], &f["blocked"], &f["available"]),
            (&json!(0), &json!(600_000), &json!(400_000)),
            "{f}"
        );
        // The attack: a resting buy for 98 % of what is available.
        let units = 400_000 * 98 / 100 / 9_000;
        let buy = stack
            .call(
                &user,
                "place",
                limit("spend", "CLOSESYM", "BUY", units, 9_000, "INTRADAY"),
            )
            .await;
        assert_eq!(buy["result"]["status"], "OPEN", "{buy}");
        let over = stack
            .call(
                &user,
                "place",
                limit("overspend", "CLOSESYM", "BUY", 10, 9_000, "INTRADAY"),
            )
            .await;
        assert_eq!(over["error"]["code"], "INSUFFICIENT_FUNDS", "{over}");

        // The resting sell fills and opens the short with the margin it held.
        stack.publish_tick("CLOSESYM", 2, 12_000, 50).await;
        eventually(
            Duration::from_secs(10),
            "the resting sell filled",
            || async {
                let order = stack
                    .call(&user, "get", json!({"client_order_id": "resting"}))
                    .await;
                (order["result"]["status"] == "FILLED").then_some(())
            },
        )
        .await;
        let f = funds(&stack, &user).await;
        assert_eq!(
            (&f["used"], &f["blocked"]),
            (&json!(-600_000), &json!(1_200_000 + units * 9_000)),
            "{f}"
        );
        assert_eq!(f["available"], 400_000 - units * 9_000, "{f}");
        assert!(f["available"].as_i64() >= Some(0), "never below zero: {f}");
    })
    .await;
}
