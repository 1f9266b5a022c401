//! Intraday square-off on an Angel One account, against the SmartAPI simulator: working
//! INTRADAY orders are cancelled at the broker, open INTRADAY positions are closed once
//! with a marketable LIMIT order inside the band (never MARKET), a refused closing order is
//! retried under the next attempt's id, and DELIVERY positions are left alone. The same on
//! demand, through the `squareoff` verb, on both brokers (the paper broker's daily sweep is
//! tested in `portfolio`).

use std::time::Duration;

use pinnacle_common::entities::risk_limits::Model as Limits;
use pinnacle_common::model::{Product, Side};
use pinnacle_smartapi_sim::{Fault, SimOrder};
use pinnacle_tests::angel::AngelStack;
use pinnacle_tests::{eventually, market, no_limits, TestStack, TestUser, ADMIN_TOKEN};
use serde_json::{json, Value};

use crate::each_backend;

fn result(reply: &Value) -> &Value {
    assert_eq!(reply["ok"], true, "{reply}");
    &reply["result"]
}

fn with_product(mut order: Value, product: &str) -> Value {
    order["product"] = json!(product);
    order
}

async fn status(stack: &TestStack, user: &TestUser, id: &str) -> Value {
    let got = stack
        .call(user, "get", json!({"client_order_id": id}))
        .await;
    got["result"]["status"].clone()
}

/// Places `opening`, a marketable buy, as `user` and waits until it has filled.
async fn buy_filled(stack: &TestStack, user: &TestUser, opening: Value) {
    let id = opening["client_order_id"]
        .as_str()
        .expect("an id")
        .to_string();
    result(&stack.call(user, "place", opening).await);
    eventually(Duration::from_secs(10), "the opening buy fills", || async {
        (status(stack, user, &id).await == "FILLED").then_some(())
    })
    .await;
}

/// The square-off's orders at the broker: SELLs of INTRADAY SBIN-EQ other than the test's.
fn closing_at_broker(orders: &[SimOrder]) -> Vec<SimOrder> {
    orders
        .iter()
        .filter(|o| o.side == "SELL" && o.producttype == "INTRADAY")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn angel_one_intraday_positions_are_squared_off_with_one_limit_order_each() {
    each_backend(|backend| async move {
        // Square-off off while the positions are opened; on (at once) after the restart.
        let mut angel = AngelStack::start_with(
            backend,
            |_| {},
            |s| {
                s.worker.square_off_at = pinnacle_common::config::SquareOffAt::OFF;
                s.worker.reconcile_interval_ms = 50;
            },
        )
        .await;
        let (user, account) = angel.angel_trader("sqoff", 21, json!({})).await;
        let cc = account.client_code.clone();
        let (fills, rests) = angel.prices();
        let stack = &angel.stack;

        for (id, quantity, product) in [("mis-1", 5, "INTRADAY"), ("cnc-1", 3, "DELIVERY")] {
            buy_filled(stack, &user, with_product(AngelStack::limit(id, "BUY", quantity, fills), product)).await;
        }
        let resting = stack
            .call(&user, "place", with_product(AngelStack::limit("mis-rest", "BUY", 1, rests), "INTRADAY"))
            .await;
        assert_eq!(result(&resting)["status"], "OPEN", "{resting}");
        assert_eq!(angel.sim.orders(&cc).len(), 3);

        // The first closing order is refused by the broker; the next sweep tries again.
        angel.sim.inject(Fault::BusinessError {
            route: "placeOrder".into(),
            code: "AB1004".into(),
            message: "Something Went Wrong, Please Try After Sometime".into(),
            times: 1,
        });
        angel
            .stack
            .restart_with(|s| s.worker.square_off_at = "00:00".parse().expect("a time"))
            .await;
        let stack = &angel.stack;

        let positions = eventually(Duration::from_secs(20), "the square-off", || async {
            let positions = stack.call(&user, "positions", json!({})).await;
            let flat = positions["result"]["positions"]
                .as_array()?
                .iter()
                .filter(|p| p["product"] == "INTRADAY")
                .all(|p| p["net_quantity"] == 0);
            let cancelled = status(stack, &user, "mis-rest").await == "CANCELLED";
            (flat && cancelled).then_some(positions)
        })
        .await;
        let delivery = positions["result"]["positions"]
            .as_array()
            .expect("positions")
            .iter()
            .find(|p| p["product"] == "DELIVERY")
            .cloned()
            .expect("a delivery position");
        assert_eq!(delivery["net_quantity"], 3, "delivery positions are left alone: {positions}");

        // Sweeps run every 50 ms. Once the account is settled, none reads its positions
        // again (Angel One allows one read a second per client code, and each read is an
        // audited credential use), and nothing more is sent.
        let position_reads = || {
            angel
                .sim
                .requests()
                .iter()
                .filter(|r| r.path.ends_with("/getPosition") && r.client_code.as_deref() == Some(cc.as_str()))
                .count()
        };
        // (Sweeps still queued in the rate limiter settle it first.)
        eventually(Duration::from_secs(20), "the sweep to stop reading positions", || async {
            let before = position_reads();
            tokio::time::sleep(Duration::from_millis(2500)).await;
            (position_reads() == before).then_some(())
        })
        .await;

        // At the broker: the working order cancelled, one closing LIMIT SELL, filled, inside
        // the band below the price it filled at; the delivery buy untouched.
        let book = angel.sim.orders(&cc);
        let rest = book.iter().find(|o| o.price_paise == rests).expect("mis-rest at the broker");
        assert_eq!(rest.status, "cancelled", "{rest:?}");
        let closing = closing_at_broker(&book);
        assert_eq!(closing.len(), 1, "closed exactly once: {book:?}");
        let closing = &closing[0];
        assert_eq!(closing.ordertype, "LIMIT", "never MARKET: {closing:?}");
        assert_eq!((closing.quantity, closing.filled), (5, 5), "{closing:?}");
        assert_eq!(closing.status, "complete", "{closing:?}");
        let fill = closing.average_price_paise;
        assert!(
            closing.price_paise <= fill && closing.price_paise >= fill - fill / 100 - 10,
            "a marketable limit within 1% (and a tick or two of drift) of the last price {fill}: {closing:?}"
        );
        assert_eq!(closing.price_paise % 5, 0, "on the 5-paise tick: {closing:?}");
        assert_eq!(book.len(), 4, "three of the test's, one closing: {book:?}");
        assert!(book.iter().all(|o| o.ordertype == "LIMIT"), "{book:?}");

        // In Pinnacle: the refused first attempt, then one filled closing order.
        let orders = stack.call(&user, "list", json!({})).await;
        let mut closing: Vec<(String, Value, Value, Value)> = result(&orders)["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .filter_map(|o| {
                let id = o["client_order_id"].as_str()?;
                id.starts_with("sqoff-")
                    .then(|| (id.to_string(), o["side"].clone(), o["order_type"].clone(), o["status"].clone()))
            })
            .collect();
        closing.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(closing.len(), 2, "{closing:?}");
        assert!(closing[0].0.ends_with("-1") && closing[1].0.ends_with("-2"), "{closing:?}");
        assert_eq!(closing[0].3, "REJECTED", "{closing:?}");
        assert_eq!(
            (&closing[1].1, &closing[1].2, &closing[1].3),
            (&json!("SELL"), &json!("LIMIT"), &json!("FILLED")),
            "{closing:?}"
        );
        let filled = stack.call(&user, "get", json!({"client_order_id": closing[1].0})).await;
        assert_eq!(result(&filled)["broker_order_id"], closing_at_broker(&angel.sim.orders(&cc))[0].orderid.as_str());
    })
    .await;
}

/// `(client order id, side, type, product, quantity, status)` of each order in `orders`.
fn summary(orders: &Value) -> Vec<(String, Value, Value, Value, Value, Value)> {
    let mut rows: Vec<_> = orders
        .as_array()
        .expect("a list of orders")
        .iter()
        .map(|o| {
            let id = o["client_order_id"].as_str().expect("an id").to_string();
            let fields =
                ["side", "order_type", "product", "quantity", "status"].map(|f| o[f].clone());
            let [side, kind, product, quantity, status] = fields;
            (id, side, kind, product, quantity, status)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// The client order ids of `user`'s closing orders (`sqoff-…`).
async fn closing_ids(stack: &TestStack, user: &TestUser) -> Vec<String> {
    let orders = stack.call(user, "list", json!({})).await;
    let mut ids: Vec<String> = result(&orders)["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .filter_map(|o| o["client_order_id"].as_str())
        .filter(|id| id.starts_with("sqoff-"))
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trader_squares_off_a_paper_account_on_demand_once() {
    each_backend(|backend| async move {
        // The daily sweep is off: only the verb squares off.
        let stack = TestStack::start_with(backend, |s| {
            s.worker.square_off_at = pinnacle_common::config::SquareOffAt::OFF;
        })
        .await;
        let user = stack.trader("sqoff-now").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        stack.wait_for_ticks("TCS-EQ", 2).await;

        // A long and a short INTRADAY position, a DELIVERY one, and a resting order of each.
        let mut long = market("mis-long", "SBIN-EQ", 5);
        long.product = Product::Intraday;
        let mut short = market("mis-short", "TCS-EQ", 2);
        (short.product, short.side) = (Product::Intraday, Side::Sell);
        for order in [long, short, market("cnc-1", "SBIN-EQ", 3)] {
            let placed = stack.place(&user, &order).await;
            assert_eq!(placed.result.expect("placed").status.as_str(), "FILLED");
        }
        for (id, product) in [("mis-rest", "INTRADAY"), ("cnc-rest", "DELIVERY")] {
            let resting = stack
                .call(
                    &user,
                    "place",
                    json!({"client_order_id": id, "exchange": "NSE",
                    "symbol": "SBIN-EQ", "side": "BUY", "order_type": "LIMIT", "quantity": 1,
                    "price": 100, "product": product}),
                )
                .await;
            assert_eq!(result(&resting)["status"], "OPEN", "{resting}");
        }

        // Refusals: a read-only token, an unknown account, a malformed request. Nothing moves.
        let (code, issued) = stack
            .api_post(
                &format!("/v1/users/{}/tokens", user.id),
                ADMIN_TOKEN,
                &json!({"scopes": ["read"], "expires_in_secs": 600}),
            )
            .await;
        assert_eq!(code, 201, "{issued}");
        let reader = TestUser {
            id: user.id.clone(),
            token: issued["token"].as_str().expect("a token").into(),
        };
        let refused = [
            (&reader, json!({}), "FORBIDDEN"),
            (&user, json!({"account": "nope"}), "NO_BROKER_ACCOUNT"),
            (&user, json!({"account": 5}), "BAD_PAYLOAD"),
        ];
        for (who, body, expected) in refused {
            let reply = stack.call(who, "squareoff", body.clone()).await;
            assert_eq!(reply["ok"], false, "{body}: {reply}");
            assert_eq!(reply["error"]["code"], expected, "{body}: {reply}");
        }
        assert!(closing_ids(&stack, &user).await.is_empty());
        assert_eq!(status(&stack, &user, "mis-rest").await, "OPEN");

        // A kill switch does not keep a position open.
        stack
            .set_limits(Limits {
                kill_switch: true,
                ..no_limits(&user.id)
            })
            .await;
        let reply = stack
            .call(&user, "squareoff", json!({"account": "paper"}))
            .await;
        let done = result(&reply);
        assert_eq!(done["failed"], json!([]), "{reply}");
        assert_eq!(
            summary(&done["cancelled"]),
            [(
                "mis-rest".into(),
                json!("BUY"),
                json!("LIMIT"),
                json!("INTRADAY"),
                json!(1),
                json!("CANCELLED")
            )],
            "{reply}"
        );
        let closing = summary(&done["closing"]);
        assert_eq!(closing.len(), 2, "one closing order per position: {reply}");
        let mut closed: Vec<_> = closing
            .iter()
            .map(|(id, side, kind, product, quantity, status)| {
                assert!(id.starts_with("sqoff-") && id.ends_with("-1"), "{id}");
                assert_eq!(
                    (kind, product, status),
                    (&json!("LIMIT"), &json!("INTRADAY"), &json!("FILLED")),
                    "{reply}"
                );
                (side.clone(), quantity.clone())
            })
            .collect();
        closed.sort_by_key(|(side, _)| side.to_string());
        assert_eq!(
            closed,
            [(json!("BUY"), json!(2)), (json!("SELL"), json!(5))],
            "{reply}"
        );
        for order in done["closing"].as_array().expect("closing") {
            // Priced 1% through the last price; the feed may move a little before the fill.
            let fill = order["average_price"].as_i64().expect("filled");
            let price = order["price"].as_i64().expect("a limit");
            let through = if order["side"] == "SELL" {
                price <= fill
            } else {
                price >= fill
            };
            assert!(
                through && (price - fill).abs() <= fill / 50,
                "marketable near 1%: {order}"
            );
            assert_eq!(price % 5, 0, "on the tick: {order}");
        }

        // Flat in INTRADAY; DELIVERY and its resting order untouched.
        let positions = stack.call(&user, "positions", json!({})).await;
        for position in result(&positions)["positions"]
            .as_array()
            .expect("positions")
        {
            let expected = if position["product"] == "DELIVERY" {
                3
            } else {
                0
            };
            assert_eq!(position["net_quantity"], expected, "{positions}");
        }
        assert_eq!(status(&stack, &user, "cnc-rest").await, "OPEN");

        // Again: nothing is left to do, and nothing more is placed.
        let again = stack.call(&user, "squareoff", json!({})).await;
        assert_eq!(
            result(&again),
            &json!({"cancelled": [], "closing": [], "failed": []}),
            "{again}"
        );
        assert_eq!(closing_ids(&stack, &user).await.len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trader_squares_off_an_angel_one_account_on_demand_with_limit_orders() {
    each_backend(|backend| async move {
        let angel = AngelStack::start_with(
            backend,
            |_| {},
            |s| s.worker.square_off_at = pinnacle_common::config::SquareOffAt::OFF,
        )
        .await;
        let (user, account) = angel.angel_trader("sqoff-now", 22, json!({})).await;
        let cc = account.client_code.clone();
        let (fills, rests) = angel.prices();
        let stack = &angel.stack;
        let opening = with_product(AngelStack::limit("mis-1", "BUY", 4, fills), "INTRADAY");
        buy_filled(stack, &user, opening).await;
        let resting = with_product(AngelStack::limit("mis-rest", "BUY", 1, rests), "INTRADAY");
        assert_eq!(
            result(&stack.call(&user, "place", resting).await)["status"],
            "OPEN"
        );

        let reply = stack.call(&user, "squareoff", json!({})).await;
        let done = result(&reply);
        assert_eq!(done["failed"], json!([]), "{reply}");
        assert_eq!(
            done["cancelled"][0]["client_order_id"], "mis-rest",
            "{reply}"
        );
        assert_eq!(done["cancelled"][0]["status"], "CANCELLED", "{reply}");
        let closing = &done["closing"];
        assert_eq!(closing.as_array().map(Vec::len), Some(1), "{reply}");
        assert_eq!(
            (
                &closing[0]["side"],
                &closing[0]["order_type"],
                &closing[0]["quantity"]
            ),
            (&json!("SELL"), &json!("LIMIT"), &json!(4)),
            "{reply}"
        );
        let closing_id = closing[0]["client_order_id"]
            .as_str()
            .expect("an id")
            .to_string();
        eventually(
            Duration::from_secs(10),
            "the closing order fills",
            || async { (status(stack, &user, &closing_id).await == "FILLED").then_some(()) },
        )
        .await;

        // A second square-off, before or after the broker reports the position flat, places
        // nothing more at the broker.
        let again = stack.call(&user, "squareoff", json!({})).await;
        assert_eq!(result(&again)["failed"], json!([]), "{again}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let book = angel.sim.orders(&cc);
        let rest = book
            .iter()
            .find(|o| o.price_paise == rests)
            .expect("mis-rest at the broker");
        assert_eq!(rest.status, "cancelled", "{rest:?}");
        let closing = closing_at_broker(&book);
        assert_eq!(closing.len(), 1, "closed exactly once: {book:?}");
        assert_eq!(closing[0].ordertype, "LIMIT", "never MARKET: {closing:?}");
        assert_eq!(
            (closing[0].quantity, closing[0].filled),
            (4, 4),
            "{closing:?}"
        );
        assert_eq!(closing_ids(stack, &user).await, [closing_id]);
    })
    .await;
}

/// A position is not closed while an order of it may still fill. A long of 4 has a
/// working sell of the same 4 above the market; the square-off's cancel of it never reaches
/// the broker, so it is `UNKNOWN` and may still fill: closing the long as well would leave
/// the account short 4 once it does (a black-box finding). Both are in `failed` and no
/// closing order is sent. Once reconciliation has found the sell open at the broker, the
/// next square-off cancels it and closes the long, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_with_an_order_that_may_still_fill_is_not_closed_twice() {
    each_backend(|backend| async move {
        let angel = AngelStack::start_with(
            backend,
            |_| {},
            |s| {
                s.worker.square_off_at = pinnacle_common::config::SquareOffAt::OFF;
                s.worker.smartapi_timeout_ms = 700;
                s.worker.reconcile_after_ms = 300;
                s.worker.reconcile_interval_ms = 100;
            },
        )
        .await;
        let (user, account) = angel.angel_trader("sqoff-unsettled", 23, json!({})).await;
        let cc = account.client_code.clone();
        let (fills, _) = angel.prices();
        let stack = &angel.stack;
        let opening = with_product(AngelStack::limit("mis-long", "BUY", 4, fills), "INTRADAY");
        buy_filled(stack, &user, opening).await;
        // 10 % above the market: it rests.
        let exit = with_product(AngelStack::limit("mis-exit", "SELL", 4, fills), "INTRADAY");
        let exit = result(&stack.call(&user, "place", exit).await).clone();
        assert_eq!(exit["status"], "OPEN", "{exit}");

        angel.sim.inject(Fault::Unanswered {
            route: "cancelOrder".into(),
            delay: Duration::from_millis(1_500),
            times: 1,
        });
        let reply = stack.call(&user, "squareoff", json!({})).await;
        let done = result(&reply);
        assert_eq!(
            (&done["cancelled"], &done["closing"]),
            (&json!([]), &json!([])),
            "{reply}"
        );
        let failed = done["failed"].as_array().expect("failed");
        assert_eq!(failed.len(), 2, "{reply}");
        assert_eq!(failed[0]["order_id"], exit["order_id"], "{reply}");
        assert_eq!(
            (&failed[1]["symbol"], &failed[1]["order_id"]),
            (&json!("SBIN-EQ"), &Value::Null),
            "{reply}"
        );
        assert!(failed.iter().all(|f| f["error"]["code"] == "INVALID_STATE"));
        let sells = |book: &[SimOrder]| book.iter().filter(|o| o.side == "SELL").count();
        assert_eq!(
            sells(&angel.sim.orders(&cc)),
            1,
            "no closing order was sent"
        );

        eventually(
            Duration::from_secs(15),
            "reconciliation finds the sell open",
            || async { (status(stack, &user, "mis-exit").await == "OPEN").then_some(()) },
        )
        .await;
        let again = stack.call(&user, "squareoff", json!({})).await;
        let done = result(&again);
        assert_eq!(done["failed"], json!([]), "{again}");
        assert_eq!(
            (
                &done["cancelled"][0]["client_order_id"],
                &done["cancelled"][0]["status"]
            ),
            (&json!("mis-exit"), &json!("CANCELLED")),
            "{again}"
        );
        let closing_id = done["closing"][0]["client_order_id"]
            .as_str()
            .expect("one closing order")
            .to_string();
        eventually(
            Duration::from_secs(10),
            "the closing order fills",
            || async { (status(stack, &user, &closing_id).await == "FILLED").then_some(()) },
        )
        .await;
        let book = angel.sim.orders(&cc);
        let sold: Vec<(&str, i64, i64)> = book
            .iter()
            .filter(|o| o.side == "SELL")
            .map(|o| (o.status.as_str(), o.quantity, o.filled))
            .collect();
        assert_eq!(
            sold,
            [("cancelled", 4, 0), ("complete", 4, 4)],
            "the long closed once: {book:?}"
        );
    })
    .await;
}
