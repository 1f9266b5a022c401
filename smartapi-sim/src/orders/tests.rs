//! Tests of the order book: modification, refusals that change nothing, varieties.

use serde_json::json;

use super::*;

const CC: &str = "C1";

fn input(ordertype: &str, price: i64, trigger: i64) -> OrderInput {
    OrderInput {
        variety: if ordertype.starts_with("STOPLOSS") {
            "STOPLOSS"
        } else {
            "NORMAL"
        }
        .into(),
        symbol: "SBIN-EQ".into(),
        token: "3045".into(),
        exchange: "NSE".into(),
        side: "BUY".into(),
        ordertype: ordertype.into(),
        producttype: "DELIVERY".into(),
        duration: "DAY".into(),
        quantity: 2,
        disclosed_quantity: 0,
        price_paise: price,
        trigger_price_paise: trigger,
        ordertag: "t".into(),
    }
}

/// A book holding one resting order (the price is 800.00; nothing crosses).
fn resting(ordertype: &str, price: i64, trigger: i64) -> (OrderBook, String) {
    let mut book = OrderBook::default();
    let ip = IpAddr::from([127, 0, 0, 1]);
    let (order, _) = book.place(CC, &input(ordertype, price, trigger), 1, 80_000, ip);
    assert!(matches!(order.status.as_str(), "open" | "trigger pending"));
    (book, order.orderid)
}

fn modify(book: &mut OrderBook, id: &str, body: Value) -> Result<SimOrder, Refusal> {
    book.modify(CC, id, &body, |_, _| 80_000).map(|(o, _)| o)
}

#[test]
fn modify_changes_quantity_price_trigger_and_order_type() {
    let (mut book, id) = resting("LIMIT", 70_000, 0);
    let o = modify(
        &mut book,
        &id,
        json!({"variety": "NORMAL", "quantity": "3"}),
    )
    .expect("qty");
    assert_eq!(
        (o.quantity, o.price_paise, o.status.as_str()),
        (3, 70_000, "open")
    );
    let o = modify(
        &mut book,
        &id,
        json!({"variety": "NORMAL", "price": "701.50"}),
    )
    .expect("price");
    assert_eq!((o.quantity, o.price_paise), (3, 70_150));

    let (mut book, id) = resting("STOPLOSS_LIMIT", 90_500, 90_000);
    let body = json!({"variety": "STOPLOSS", "ordertype": "STOPLOSS_LIMIT",
                      "triggerprice": "910", "price": "915"});
    let o = modify(&mut book, &id, body).expect("trigger");
    assert_eq!(
        (o.trigger_price_paise, o.price_paise, o.status.as_str()),
        (91_000, 91_500, "trigger pending")
    );
    let body = json!({"variety": "STOPLOSS", "ordertype": "STOPLOSS_MARKET"});
    let o = modify(&mut book, &id, body).expect("order type");
    assert_eq!(
        (o.ordertype.as_str(), o.status.as_str()),
        ("STOPLOSS_MARKET", "trigger pending")
    );
    assert_eq!(
        book.orders(CC)[0],
        o,
        "the book holds what the reply showed"
    );
}

#[test]
fn a_refused_modification_changes_nothing() {
    let (mut book, id) = resting("LIMIT", 70_000, 0);
    let before = book.orders(CC)[0].clone();
    let body = json!({"variety": "NORMAL", "ordertype": "MARKET", "quantity": "-1"});
    assert!(modify(&mut book, &id, body).is_err());
    assert_eq!(book.orders(CC)[0], before);
}

#[test]
fn modify_and_cancel_must_name_the_variety_the_order_was_placed_with() {
    let (mut book, id) = resting("STOPLOSS_LIMIT", 90_500, 90_000);
    let wrong = modify(
        &mut book,
        &id,
        json!({"variety": "NORMAL", "quantity": "3"}),
    );
    assert_eq!(
        wrong.map(|_| ()),
        Err((codes::INVALID_VARIETY, "Invalid Order Variety".into()))
    );
    let missing = book.cancel(CC, &id, &json!({"orderid": id}));
    assert_eq!(
        missing.map(|_| ()).expect_err("no variety").0,
        codes::INVALID_VARIETY
    );
    assert_eq!(book.orders(CC)[0].quantity, 2);
    let (o, events) = book
        .cancel(CC, &id, &json!({"variety": "STOPLOSS", "orderid": id}))
        .expect("cancel");
    assert_eq!(o.status, "cancelled");
    assert_eq!(events.len(), 1);
}

#[test]
fn a_working_order_can_be_rejected_after_it_was_accepted_and_then_not_changed() {
    let (mut book, id) = resting("LIMIT", 79_000, 0);
    assert!(book.reject(CC, "no-such-order", "RMS").is_none());
    let events = book
        .reject(CC, &id, "RMS: margin exceeds")
        .expect("rejected");
    assert_eq!(events.iter().map(|e| e.code).collect::<Vec<_>>(), ["AB03"]);
    let order = &book.orders(CC)[0];
    assert_eq!(
        (order.status.as_str(), order.text.as_str()),
        ("rejected", "RMS: margin exceeds")
    );
    assert!(
        book.reject(CC, &id, "again").is_none(),
        "a rejected order is not working"
    );
    let refused = modify(
        &mut book,
        &id,
        json!({"variety": "NORMAL", "quantity": "3"}),
    );
    assert_eq!(
        refused.map(|_| ()).expect_err("not working").0,
        codes::GENERAL
    );
    let cancel = book.cancel(CC, &id, &json!({"variety": "NORMAL", "orderid": id}));
    assert!(cancel.is_err(), "a rejected order cannot be cancelled");
}

#[test]
fn a_filled_order_is_not_rejected() {
    let (mut book, id) = resting("LIMIT", 79_000, 0);
    book.on_price("NSE", "3045", 78_000);
    assert_eq!(book.orders(CC)[0].status, "complete");
    assert!(book.reject(CC, &id, "RMS").is_none());
}
