//! Orders over REST: market/limit/stop-loss, the string-typed book, modify/cancel, tags,
//! static IP, and the rest of the secure catalogue.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn market_order_fills_and_book_uses_strings() {
    let t = spawn().await;
    let tokens = t.login().await;
    t.sim.set_ltp("NSE", "3045", 81_050);
    let v = t
        .place(&tokens.jwt, json!({"ordertag": "tag-1", "quantity": 2}))
        .await;
    assert_eq!(v["status"], true, "{v}");
    assert_eq!(v["data"]["script"], "SBIN-EQ");
    let orderid = v["data"]["orderid"].as_str().expect("orderid").to_owned();
    assert_eq!(orderid.len(), 15);
    let book = t
        .get(
            &format!("{SECURE}/order/v1/getOrderBook?%7B%7D"),
            &tokens.jwt,
        )
        .await;
    let rec = &book["data"][0];
    assert_eq!(rec["orderid"], orderid.as_str());
    assert_eq!(rec["status"], "complete");
    assert_eq!(rec["orderstatus"], "complete");
    assert_eq!(rec["quantity"], "2");
    assert_eq!(rec["filledshares"], "2");
    assert_eq!(rec["averageprice"], "810.50");
    assert_eq!(rec["ordertag"], "tag-1");
    let held = t.sim.orders(CLIENT);
    assert_eq!(held[0].average_price_paise, 81_050);
    assert_eq!(held[0].filled, 2);
    // Details are numeric.
    let uid = held[0].uniqueorderid.clone();
    let d = t
        .get(&format!("{SECURE}/order/v1/details/{uid}"), &tokens.jwt)
        .await;
    assert_eq!(d["data"]["averageprice"], 810.5);
    assert_eq!(d["data"]["quantity"], 2);
    assert_eq!(d["data"]["ordertag"], "tag-1");
    // Only by the unique id, as SPEC.md names the route: the order id finds nothing.
    let by_orderid = t
        .get(&format!("{SECURE}/order/v1/details/{orderid}"), &tokens.jwt)
        .await;
    assert_eq!(by_orderid["status"], false, "{by_orderid}");
    assert_eq!(by_orderid["errorcode"], "AB1013", "{by_orderid}");
    // Trade book and positions.
    let trades = t
        .get(&format!("{SECURE}/order/v1/getTradeBook"), &tokens.jwt)
        .await;
    assert_eq!(trades["data"][0]["fillsize"], "2");
    let pos = t
        .get(&format!("{SECURE}/order/v1/getPosition"), &tokens.jwt)
        .await;
    assert_eq!(pos["data"][0]["netqty"], "2");
    let recorded = t.sim.requests();
    let placed = recorded
        .iter()
        .find(|r| r.path.ends_with("placeOrder"))
        .expect("recorded");
    assert_eq!(placed.body["ordertag"], "tag-1");
    assert_eq!(
        placed.headers.get("x-sourceid").map(String::as_str),
        Some("WEB")
    );
}

#[tokio::test]
async fn limit_order_rests_then_fills_when_price_crosses() {
    let t = spawn().await;
    let tokens = t.login().await;
    t.sim.set_ltp("NSE", "3045", 80_000);
    let v = t
        .place(
            &tokens.jwt,
            json!({"ordertype": "LIMIT", "price": 790.0, "quantity": "5"}),
        )
        .await;
    let orderid = v["data"]["orderid"].as_str().expect("orderid").to_owned();
    assert_eq!(t.sim.orders(CLIENT)[0].status, "open");
    t.sim.set_ltp("NSE", "3045", 78_900);
    let o = &t.sim.orders(CLIENT)[0];
    assert_eq!(
        (o.status.as_str(), o.filled, o.average_price_paise),
        ("complete", 5, 78_900)
    );
    assert_eq!(o.orderid, orderid);
}

#[tokio::test]
async fn stop_loss_waits_for_trigger() {
    let t = spawn().await;
    let tokens = t.login().await;
    t.sim.set_ltp("NSE", "2885", 290_000);
    let body = json!({"variety": "STOPLOSS", "tradingsymbol": "RELIANCE-EQ", "symboltoken": "2885",
        "ordertype": "STOPLOSS_MARKET", "transactiontype": "SELL", "triggerprice": "2850"});
    t.place(&tokens.jwt, body).await;
    assert_eq!(t.sim.orders(CLIENT)[0].status, "trigger pending");
    t.sim.set_ltp("NSE", "2885", 284_900);
    assert_eq!(t.sim.orders(CLIENT)[0].status, "complete");
}

#[tokio::test]
async fn modify_and_cancel_open_orders() {
    let t = spawn().await;
    let tokens = t.login().await;
    t.sim.set_ltp("NSE", "3045", 80_000);
    let v = t
        .place(
            &tokens.jwt,
            json!({"ordertype": "LIMIT", "price": "700", "quantity": 1}),
        )
        .await;
    let orderid = v["data"]["orderid"].as_str().expect("orderid").to_owned();
    let m = t
        .post(
            &format!("{SECURE}/order/v1/modifyOrder"),
            Some(&tokens.jwt),
            json!({"variety": "NORMAL", "orderid": orderid,
            "ordertype": "LIMIT", "price": "710.50", "quantity": "3", "duration": "DAY",
            "tradingsymbol": "SBIN-EQ", "symboltoken": "3045", "exchange": "NSE"}),
        )
        .await;
    assert_eq!(m["status"], true, "{m}");
    let o = &t.sim.orders(CLIENT)[0];
    assert_eq!(
        (o.price_paise, o.quantity, o.status.as_str()),
        (71_050, 3, "open")
    );
    let c = t
        .post(
            &format!("{SECURE}/order/v1/cancelOrder"),
            Some(&tokens.jwt),
            json!({"variety": "NORMAL", "orderid": orderid}),
        )
        .await;
    assert_eq!(c["data"]["orderid"], orderid.as_str());
    assert_eq!(t.sim.orders(CLIENT)[0].status, "cancelled");
    let again = t
        .post(
            &format!("{SECURE}/order/v1/cancelOrder"),
            Some(&tokens.jwt),
            json!({"variety": "NORMAL", "orderid": orderid}),
        )
        .await;
    assert_eq!(again["status"], false);
    let unknown = t
        .post(
            &format!("{SECURE}/order/v1/cancelOrder"),
            Some(&tokens.jwt),
            json!({"variety": "NORMAL", "orderid": "1"}),
        )
        .await;
    assert_eq!(unknown["errorcode"], "AB1013");
}

#[tokio::test]
async fn tag_of_twenty_chars_is_ab4008_and_nothing_is_placed() {
    let t = spawn().await;
    let tokens = t.login().await;
    let v = t
        .place(&tokens.jwt, json!({"ordertag": "a".repeat(20)}))
        .await;
    assert_eq!(v["status"], false);
    assert_eq!(v["errorcode"], "AB4008");
    assert!(t.sim.orders(CLIENT).is_empty());
}

#[tokio::test]
async fn static_ip_is_checked_on_the_socket_address() {
    let t = spawn().await;
    t.sim.add_account(pinnacle_smartapi_sim::SimAccount {
        static_ip: Some(loopback(1)),
        ..account()
    });
    let tokens = t.login().await;
    let other = reqwest::Client::builder()
        .local_address(loopback(2))
        .build()
        .expect("client");
    let body = json!({"variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045", "transactiontype": "BUY",
        "exchange": "NSE", "ordertype": "MARKET", "producttype": "INTRADAY", "duration": "DAY", "quantity": "1"});
    let path = format!("{SECURE}/order/v1/placeOrder");
    let v: serde_json::Value = t
        .request(&other, reqwest::Method::POST, &path, Some(&tokens.jwt))
        .json(&body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], false, "{v}");
    assert!(v["message"]
        .as_str()
        .expect("message")
        .contains("static IP"));
    assert!(t.sim.orders(CLIENT).is_empty());
    let v = t.place(&tokens.jwt, json!({})).await;
    assert_eq!(v["status"], true, "{v}");
    assert_eq!(t.sim.orders(CLIENT)[0].source_ip, loopback(1));
}

#[tokio::test]
async fn market_data_routes_answer() {
    let t = spawn().await;
    let tokens = t.login().await;
    let jwt = Some(tokens.jwt.as_str());
    let ltp = t
        .post(
            "/order-service/rest/secure/angelbroking/order/v1/getLtpData",
            jwt,
            json!({"exchange": "NSE", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045"}),
        )
        .await;
    assert_eq!(ltp["data"]["ltp"], 800.0);
    let q = t
        .post(
            &format!("{SECURE}/market/v1/quote/"),
            jwt,
            json!({"mode": "FULL", "exchangeTokens": {"NSE": ["3045", "999", ""]}}),
        )
        .await;
    assert_eq!(q["data"]["fetched"][0]["symbolToken"], "3045");
    assert_eq!(
        q["data"]["fetched"][0]["depth"]["buy"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    // An unknown token is not found; only an empty one "cannot be empty" (SPEC §3.3, §7).
    assert_eq!(
        q["data"]["unfetched"],
        json!([
            {"exchange": "NSE", "symbolToken": "999", "message": "Symbol Not Found", "errorCode": "AB1009"},
            {"exchange": "NSE", "symbolToken": "", "message": "Symbol token cannot be empty", "errorCode": "AB4018"},
        ])
    );
    let s = t
        .post(
            &format!("{SECURE}/order/v1/searchScrip"),
            jwt,
            json!({"exchange": "NSE", "searchscrip": "sbi"}),
        )
        .await;
    assert_eq!(s["data"][0]["tradingsymbol"], "SBIN-EQ");
    let candle_req = json!({"exchange": "NSE", "symboltoken": "3045", "interval": "ONE_HOUR", "fromdate": "2024-01-01 09:15", "todate": "2024-01-03 15:30"});
    let c1 = t
        .post(
            &format!("{SECURE}/historical/v1/getCandleData"),
            jwt,
            candle_req.clone(),
        )
        .await;
    let c2 = t
        .post(
            &format!("{SECURE}/historical/v1/getCandleData"),
            jwt,
            candle_req,
        )
        .await;
    assert_eq!(c1, c2, "candles are deterministic");
    assert_eq!(
        c1["data"].as_array().map(Vec::len),
        Some(21),
        "7 hourly candles × 3 weekdays"
    );
    assert_eq!(c1["data"][0][0], "2024-01-01T09:15:00+05:30");
    let too_long = json!({"exchange": "NSE", "symboltoken": "3045", "interval": "ONE_MINUTE", "fromdate": "2024-01-01 09:15", "todate": "2024-03-01 09:15"});
    let v = t
        .post(
            &format!("{SECURE}/historical/v1/getCandleData"),
            jwt,
            too_long,
        )
        .await;
    assert_eq!(v["status"], false);
    let rms = t
        .get(&format!("{SECURE}/user/v1/getRMS"), &tokens.jwt)
        .await;
    assert_eq!(rms["data"]["availablecash"], "500000.00");
    let oi = t
        .post(&format!("{SECURE}/historical/v1/getOIData"), jwt, json!({"exchange": "NFO", "symboltoken": "35001", "interval": "ONE_DAY", "fromdate": "2024-01-01 00:00", "todate": "2024-01-05 00:00"}))
        .await;
    assert_eq!(oi["data"].as_array().map(Vec::len), Some(5));
    assert!(t
        .get(&format!("{SECURE}/portfolio/v1/getAllHolding"), &tokens.jwt)
        .await["data"]["totalholding"]
        .is_object());
}

#[tokio::test]
async fn wrong_types_get_business_errors_and_bad_lots_are_rejected_orders() {
    let t = spawn().await;
    let tokens = t.login().await;
    for extra in [
        json!({"quantity": [1]}),
        json!({"price": {"x": 1}, "ordertype": "LIMIT"}),
        json!({"variety": 7}),
        json!({"producttype": "CNC"}),
        json!({"symboltoken": "424242"}),
        json!({"tradingsymbol": "INFY-EQ"}),
        json!({"transactiontype": null}),
    ] {
        let v = t.place(&tokens.jwt, extra.clone()).await;
        assert_eq!(v["status"], false, "{extra} → {v}");
        assert!(
            v["errorcode"].as_str().is_some_and(|c| c.starts_with("AB")),
            "{v}"
        );
    }
    assert!(t.sim.orders(CLIENT).is_empty());
    let body = json!({"exchange": "NFO", "symboltoken": "35001", "tradingsymbol": "NIFTY30DEC26FUT", "producttype": "CARRYFORWARD", "quantity": "10"});
    let v = t.place(&tokens.jwt, body).await;
    assert_eq!(
        v["status"], true,
        "the request is accepted, the exchange rejects the order"
    );
    let o = &t.sim.orders(CLIENT)[0];
    assert_eq!(o.status, "rejected");
    assert!(o.text.contains("lot size"), "{}", o.text);
}
