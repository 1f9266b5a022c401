//! Intraday square-off on an Angel One account, against the SmartAPI simulator: working
//! INTRADAY orders are cancelled at the broker, open INTRADAY positions are closed once
//! with a marketable LIMIT order inside the band (never MARKET), a refused closing order is
//! retried under the next attempt's id, and DELIVERY positions are left alone.

use std::time::Duration;

use pinnacle_smartapi_sim::{Fault, SimOrder};
use pinnacle_tests::angel::AngelStack;
use pinnacle_tests::eventually;
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

async fn status(
    stack: &pinnacle_tests::TestStack,
    user: &pinnacle_tests::TestUser,
    id: &str,
) -> Value {
    let got = stack
        .call(user, "get", json!({"client_order_id": id}))
        .await;
    got["result"]["status"].clone()
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
            let reply = stack
                .call(&user, "place", with_product(AngelStack::limit(id, "BUY", quantity, fills), product))
                .await;
            result(&reply);
            eventually(Duration::from_secs(10), "the opening buy fills", || async {
                (status(stack, &user, id).await == "FILLED").then_some(())
            })
            .await;
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

        // Let a few more sweeps run: nothing more is sent.
        tokio::time::sleep(Duration::from_millis(500)).await;

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
