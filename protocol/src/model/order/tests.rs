//! Orders on the wire: enums, validation and replies.

use super::*;

fn request() -> OrderRequest {
    OrderRequest {
        client_order_id: "c-1".into(),
        exchange: "NSE".into(),
        symbol: "SBIN-EQ".into(),
        side: Side::Buy,
        order_type: OrderType::Market,
        quantity: 10,
        price: None,
        trigger_price: None,
        product: Default::default(),
        account: None,
    }
}

#[test]
fn the_state_machine_has_no_exit_from_terminal_states() {
    for from in OrderStatus::ALL {
        assert_eq!(OrderStatus::parse(from.as_str()), Some(from));
        let json = serde_json::to_string(&from).expect("serialize");
        assert_eq!(json, format!("\"{}\"", from.as_str()));
        for to in OrderStatus::ALL {
            if from.is_terminal() {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }
    use OrderStatus::*;
    assert!(New.can_become(Submitted));
    assert!(
        !New.can_become(Filled),
        "an order must be submitted before it fills"
    );
    assert!(!Open.can_become(New));
    assert!(PendingCancel.can_become(Filled), "a fill may beat a cancel");
    assert!(
        Open.can_become(Rejected) && !PartiallyFilled.can_become(Rejected),
        "an acknowledged order can be rejected until something fills"
    );
    assert!(Unknown.can_become(Filled) && Unknown.can_become(Rejected));
    assert!(
        PendingModify.can_become_with(Rejected, 0) && PendingCancel.can_become_with(Rejected, 0),
        "a change can find the order already rejected at the broker"
    );
    assert!(
        !PendingModify.can_become_with(Rejected, 1)
            && !PendingCancel.can_become_with(Rejected, 2)
            && !Unknown.can_become_with(Rejected, 1)
            && PendingCancel.can_become_with(Filled, 2)
            && Unknown.can_become_with(Cancelled, 1),
        "what filled stands"
    );
    assert_eq!(
        (
            Rejected.recorded_as(0),
            Rejected.recorded_as(3),
            Filled.recorded_as(3)
        ),
        (Rejected, Cancelled, Filled),
        "a rejection of an order with fills is recorded as its end"
    );
    assert!(
        !Unknown.can_become(Submitted),
        "an ambiguous order is never re-sent"
    );
}

#[test]
fn stop_orders_trigger_then_fill_as_market_or_limit() {
    use OrderType::*;
    // A sell stop-market at 950 triggers on the way down.
    assert!(!StoplossMarket.fills_at(Side::Sell, None, Some(950), 960));
    assert!(StoplossMarket.fills_at(Side::Sell, None, Some(950), 950));
    // A buy stop-limit 100/102 fills between its trigger and its limit.
    assert!(!StoplossLimit.fills_at(Side::Buy, Some(102), Some(100), 99));
    assert!(StoplossLimit.fills_at(Side::Buy, Some(102), Some(100), 101));
    assert!(!StoplossLimit.fills_at(Side::Buy, Some(102), Some(100), 103));
    assert!(Limit.fills_at(Side::Buy, Some(102), None, 101));
    assert!(Market.fills_at(Side::Sell, None, None, 1));
    let stop = OrderRequest {
        order_type: StoplossLimit,
        price: Some(102),
        trigger_price: Some(100),
        ..request()
    };
    assert!(stop.validate(100).is_ok());
    for bad in [
        OrderRequest {
            trigger_price: None,
            product: Default::default(),
            ..stop.clone()
        },
        OrderRequest {
            trigger_price: Some(0),
            ..stop.clone()
        },
        OrderRequest {
            trigger_price: Some(105),
            ..stop.clone()
        },
        OrderRequest {
            price: None,
            ..stop.clone()
        },
    ] {
        assert_eq!(
            bad.validate(100).err().map(|e| e.code),
            Some(ErrorCode::InvalidRequest)
        );
    }
    let json = serde_json::to_string(&StoplossMarket).expect("serialize");
    assert_eq!(json, "\"STOPLOSS_MARKET\"");
}

#[test]
fn rejects_bad_quantities_and_prices() {
    assert!(request().validate(100).is_ok());
    for qty in [0, -5, 101, i64::MAX, i64::MIN] {
        let err = OrderRequest {
            quantity: qty,
            ..request()
        }
        .validate(100)
        .expect_err("must reject");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }
    let limit = OrderRequest {
        order_type: OrderType::Limit,
        ..request()
    };
    assert!(limit.validate(100).is_err());
    assert!(OrderRequest {
        price: Some(-1),
        ..limit.clone()
    }
    .validate(100)
    .is_err());
    assert!(OrderRequest {
        price: Some(82_000),
        ..limit
    }
    .validate(100)
    .is_ok());
    assert!(OrderRequest {
        client_order_id: "x".repeat(65),
        ..request()
    }
    .validate(100)
    .is_err());
    assert!(OrderRequest {
        client_order_id: "drop table;".into(),
        ..request()
    }
    .validate(100)
    .is_err());
}

#[test]
fn a_modify_is_checked_for_ranges_before_its_order() {
    let change = |quantity, price, trigger_price| ModifyRequest {
        order: OrderRef {
            order_id: Some("o".into()),
            client_order_id: None,
        },
        quantity,
        price,
        trigger_price,
        order_type: None,
    };
    assert!(change(Some(3), None, None).validate(100).is_ok());
    assert!(change(None, Some(1), Some(1)).validate(100).is_ok());
    for (bad, why) in [
        (
            change(None, None, None),
            "a new quantity, price or trigger_price",
        ),
        (change(Some(0), None, None), "quantity must be positive"),
        (change(Some(-5), None, None), "quantity must be positive"),
        (change(Some(101), None, None), "exceeds the maximum of 100"),
        (change(None, Some(0), None), "price must be positive"),
        (change(None, Some(i64::MIN), None), "price must be positive"),
        (
            change(None, None, Some(-1)),
            "trigger_price must be positive",
        ),
        (
            ModifyRequest {
                order_type: Some(OrderType::Market),
                ..change(None, None, None)
            },
            "the order type cannot be modified",
        ),
    ] {
        let error = bad.validate(100).expect_err(why);
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert!(error.message.contains(why), "{}", error.message);
    }
}

#[test]
fn each_type_keeps_only_the_prices_it_uses() {
    let kept = |order_type| {
        let order = OrderRequest {
            order_type,
            price: Some(61_540),
            trigger_price: Some(60_880),
            ..request()
        }
        .without_ignored_fields();
        (order.price, order.trigger_price)
    };
    assert_eq!(kept(OrderType::Market), (None, None));
    assert_eq!(kept(OrderType::Limit), (Some(61_540), None));
    assert_eq!(kept(OrderType::StoplossLimit), (Some(61_540), Some(60_880)));
    assert_eq!(kept(OrderType::StoplossMarket), (None, Some(60_880)));
}
