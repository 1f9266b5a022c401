//! Market data over real NATS: tick fields and depth, the last-value cache, candles,
//! symbols, market status, and structured errors for every kind of bad request.

use bytes::Bytes;
use futures::StreamExt;
use pinnacle_common::codec::Encoding;
use pinnacle_common::model::Tick;
use pinnacle_common::subjects::{self, md};
use pinnacle_tests::{eventually, Backend, TestStack};
use serde_json::{json, Value};
use std::time::Duration;

/// Sends a market-data request and returns (decoded reply, `Pinnacle-Error` header).
async fn ask(
    stack: &TestStack,
    subject: &str,
    encoding: Encoding,
    payload: Bytes,
) -> (Value, Option<String>) {
    let reply = stack
        .request(subject.to_string(), None, encoding, payload)
        .await;
    let code = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Pinnacle-Error"))
        .map(|v| v.as_str().to_string());
    let value: Value = match encoding {
        Encoding::Json => serde_json::from_slice(&reply.payload).expect("JSON reply"),
        Encoding::MsgPack => rmp_serde::from_slice(&reply.payload).expect("MessagePack reply"),
    };
    (value, code)
}

fn msgpack(v: Value) -> Bytes {
    Bytes::from(rmp_serde::to_vec_named(&v).expect("encode"))
}

fn json_bytes(v: Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&v).expect("encode"))
}

async fn ok(stack: &TestStack, subject: &str, body: Value) -> Value {
    let (reply, code) = ask(stack, subject, Encoding::MsgPack, msgpack(body)).await;
    assert_eq!(reply["ok"], true, "{subject}: {reply}");
    assert_eq!(code, None);
    reply["result"].clone()
}

async fn error(stack: &TestStack, subject: &str, encoding: Encoding, payload: Bytes) -> String {
    let (reply, header) = ask(stack, subject, encoding, payload).await;
    assert_eq!(reply["ok"], false, "{reply}");
    let code = reply["error"]["code"].as_str().expect("code").to_string();
    assert!(reply["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(
        header.as_deref(),
        Some(code.as_str()),
        "header mirrors the code"
    );
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_carry_quote_fields_and_the_book_goes_to_md_depth() {
    let stack = TestStack::start(Backend::Sqlite).await;
    let mut depth = stack
        .client
        .subscribe(subjects::depth("NSE", "SBIN-EQ"))
        .await
        .expect("subscribe");
    let mut ticks = stack
        .client
        .subscribe(subjects::tick("NSE", "SBIN-EQ"))
        .await
        .expect("subscribe");
    let message = tokio::time::timeout(Duration::from_secs(10), ticks.next())
        .await
        .expect("tick")
        .expect("open");
    let value: Value = rmp_serde::from_slice(&message.payload).expect("map");
    assert_eq!(value["mode"], "SNAP_QUOTE");
    for field in [
        "open",
        "high",
        "low",
        "close",
        "avg_price",
        "upper_circuit",
        "lower_circuit",
        "total_buy_qty",
    ] {
        assert!(value[field].is_i64(), "{field} in {value}");
    }
    // Old consumers (the paper broker) decode the same payload with the core fields.
    let core: Tick = Encoding::MsgPack
        .decode(&message.payload)
        .expect("core tick");
    assert!(core.ltp % 5 == 0 && core.bid < core.ask);
    let book = tokio::time::timeout(Duration::from_secs(10), depth.next())
        .await
        .expect("depth")
        .expect("open");
    let book: Value = rmp_serde::from_slice(&book.payload).expect("map");
    assert_eq!(book["bids"].as_array().map(Vec::len), Some(5), "{book}");
    assert_eq!(book["asks"].as_array().map(Vec::len), Some(5));
    assert!(book["bids"][0]["price"].as_i64() < book["asks"][0]["price"].as_i64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_value_cache_answers_without_waiting_for_a_tick() {
    let stack = TestStack::start(Backend::Sqlite).await;
    let tick = eventually(Duration::from_secs(10), "a cached tick", || async {
        let (reply, _) = ask(
            &stack,
            md::LAST,
            Encoding::MsgPack,
            msgpack(json!({"exchange": "NSE", "symbol": "TCS-EQ"})),
        )
        .await;
        (reply["ok"] == true).then(|| reply["result"].clone())
    })
    .await;
    assert_eq!(
        (tick["exchange"].as_str(), tick["symbol"].as_str()),
        (Some("NSE"), Some("TCS-EQ"))
    );
    assert!(tick["seq"].as_u64() >= Some(1) && tick["ltp"].as_i64() > Some(0));
    // JSON in, JSON out; lower-case exchange is accepted.
    let (reply, _) = ask(
        &stack,
        md::LAST,
        Encoding::Json,
        json_bytes(json!({"exchange": "nse", "symbol": "TCS-EQ"})),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let later = reply["result"]["seq"].as_u64().expect("seq");
    assert!(later >= tick["seq"].as_u64().expect("seq"));
    // Listed but never ticked, and not listed at all.
    assert_eq!(
        error(
            &stack,
            md::LAST,
            Encoding::Json,
            json_bytes(json!({"exchange": "NSE", "symbol": "ITC-EQ"}))
        )
        .await,
        "NOT_FOUND"
    );
    assert_eq!(
        error(
            &stack,
            md::LAST,
            Encoding::Json,
            json_bytes(json!({"exchange": "NSE", "symbol": "NOPE-EQ"}))
        )
        .await,
        "UNKNOWN_SYMBOL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_symbols_and_status_by_request_reply() {
    let stack = TestStack::start(Backend::Sqlite).await;
    let result = ok(&stack, md::CANDLES, json!({"exchange": "NSE", "symbol": "SBIN-EQ", "interval": "FIFTEEN_MINUTE", "from": "2026-11-23 09:15", "to": "2026-11-23 15:30"})).await;
    let candles = result["candles"].as_array().expect("candles");
    assert_eq!(candles.len(), 25, "one session of 15-minute candles");
    for c in candles {
        assert!(
            c["low"].as_i64() <= c["open"].as_i64() && c["open"].as_i64() <= c["high"].as_i64(),
            "{c}"
        );
    }
    assert_eq!(result["interval"], "FIFTEEN_MINUTE");

    let found = ok(&stack, md::SYMBOLS_SEARCH, json!({"query": "sbi"})).await;
    let symbols: Vec<&str> = found["instruments"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["symbol"].as_str())
        .collect();
    assert!(
        symbols.contains(&"SBIN-EQ") && symbols.contains(&"SBIN"),
        "{symbols:?}"
    );
    let by_token = ok(
        &stack,
        md::SYMBOLS_LOOKUP,
        json!({"exchange": "NSE", "token": "3045"}),
    )
    .await;
    assert_eq!(
        (
            by_token["symbol"].as_str(),
            by_token["tick_size"].as_i64(),
            by_token["lot_size"].as_i64()
        ),
        (Some("SBIN-EQ"), Some(5), Some(1))
    );
    let by_symbol = ok(
        &stack,
        md::SYMBOLS_LOOKUP,
        json!({"exchange": "NFO", "symbol": "NIFTY30DEC2624400CE"}),
    )
    .await;
    assert_eq!(by_symbol["strike"].as_i64(), Some(2_440_000));

    let all = ok(&stack, md::STATUS, json!({})).await;
    let exchanges = all["exchanges"].as_array().expect("list");
    assert!(exchanges.len() >= 5);
    for e in exchanges {
        assert!(
            ["OPEN", "CLOSED", "PRE_OPEN"].contains(&e["status"].as_str().unwrap_or("")),
            "{e}"
        );
    }
    let (empty, _) = ask(&stack, md::STATUS, Encoding::MsgPack, Bytes::new()).await;
    assert_eq!(
        empty["ok"], true,
        "an empty status request means every exchange"
    );
    let nse = ok(&stack, md::STATUS, json!({"exchange": "NSE"})).await;
    assert_eq!(nse["exchanges"][0]["exchange"], "NSE");

    // An exchange is the same in any case, for every verb.
    let lower = ok(&stack, md::STATUS, json!({"exchange": "nse"})).await;
    assert_eq!(lower["exchanges"][0]["exchange"], "NSE");
    let lower = ok(
        &stack,
        md::SYMBOLS_LOOKUP,
        json!({"exchange": "nse", "symbol": "sbin-eq"}),
    )
    .await;
    assert_eq!(lower["symbol"], "SBIN-EQ");
    let lower = ok(
        &stack,
        md::SYMBOLS_SEARCH,
        json!({"query": "sbi", "exchange": "nse"}),
    )
    .await;
    let exchanges: Vec<&str> = lower["instruments"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["exchange"].as_str())
        .collect();
    assert!(
        !exchanges.is_empty() && exchanges.iter().all(|e| *e == "NSE"),
        "{exchanges:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_market_data_requests_get_structured_errors() {
    let stack = TestStack::start(Backend::Sqlite).await;
    let candle = json!({"exchange": "NSE", "symbol": "SBIN-EQ", "interval": "ONE_MINUTE", "from": "2026-11-02 09:15", "to": "2026-11-03 15:30"});
    let with = |key: &str, value: Value| {
        let mut v = candle.clone();
        v[key] = value;
        v
    };
    let cases: Vec<(&str, &str, Encoding, Bytes, &str)> = vec![
        (
            "invalid msgpack",
            md::LAST,
            Encoding::MsgPack,
            Bytes::from_static(&[0xc1]),
            "BAD_PAYLOAD",
        ),
        (
            "empty last",
            md::LAST,
            Encoding::MsgPack,
            Bytes::new(),
            "BAD_PAYLOAD",
        ),
        (
            "array",
            md::LAST,
            Encoding::MsgPack,
            msgpack(json!([1, 2])),
            "BAD_PAYLOAD",
        ),
        (
            "broken JSON",
            md::CANDLES,
            Encoding::Json,
            Bytes::from_static(b"{\"exchange\":"),
            "BAD_PAYLOAD",
        ),
        (
            "JSON sent as msgpack",
            md::CANDLES,
            Encoding::MsgPack,
            json_bytes(candle.clone()),
            "BAD_PAYLOAD",
        ),
        (
            "symbol as number",
            md::LAST,
            Encoding::Json,
            json_bytes(json!({"exchange": "NSE", "symbol": 5})),
            "BAD_PAYLOAD",
        ),
        (
            "missing interval",
            md::CANDLES,
            Encoding::Json,
            json_bytes(json!({"exchange": "NSE", "symbol": "SBIN-EQ", "from": "x", "to": "y"})),
            "BAD_PAYLOAD",
        ),
        (
            "bad interval",
            md::CANDLES,
            Encoding::Json,
            json_bytes(with("interval", "7m".into())),
            "INVALID_INTERVAL",
        ),
        (
            "lower-case interval",
            md::CANDLES,
            Encoding::Json,
            json_bytes(with("interval", "one_minute".into())),
            "INVALID_INTERVAL",
        ),
        (
            "range over 30 days",
            md::CANDLES,
            Encoding::Json,
            json_bytes(with("to", "2026-12-15 15:30".into())),
            "RANGE_TOO_LARGE",
        ),
        (
            "inverted range",
            md::CANDLES,
            Encoding::Json,
            json_bytes(with("to", "2026-10-01 09:15".into())),
            "RANGE_TOO_LARGE",
        ),
        (
            "absurd year",
            md::CANDLES,
            Encoding::Json,
            json_bytes(with("from", "9999-99-99 99:99".into())),
            "INVALID_REQUEST",
        ),
        (
            "unknown symbol",
            md::CANDLES,
            Encoding::Json,
            json_bytes(with("symbol", "ZZZZ".into())),
            "UNKNOWN_SYMBOL",
        ),
        (
            "unknown exchange",
            md::CANDLES,
            Encoding::Json,
            json_bytes(with("exchange", "NYSE".into())),
            "UNKNOWN_EXCHANGE",
        ),
        (
            "empty search",
            md::SYMBOLS_SEARCH,
            Encoding::Json,
            json_bytes(json!({"query": ""})),
            "INVALID_REQUEST",
        ),
        (
            "huge limit",
            md::SYMBOLS_SEARCH,
            Encoding::Json,
            json_bytes(json!({"query": "SBI", "limit": 100000})),
            "INVALID_REQUEST",
        ),
        (
            "negative limit",
            md::SYMBOLS_SEARCH,
            Encoding::Json,
            json_bytes(json!({"query": "SBI", "limit": -1})),
            "BAD_PAYLOAD",
        ),
        (
            "lookup without key",
            md::SYMBOLS_LOOKUP,
            Encoding::Json,
            json_bytes(json!({"exchange": "NSE"})),
            "INVALID_REQUEST",
        ),
        (
            "unknown token",
            md::SYMBOLS_LOOKUP,
            Encoding::Json,
            json_bytes(json!({"exchange": "NSE", "token": "0"})),
            "UNKNOWN_SYMBOL",
        ),
        (
            "unknown status exchange",
            md::STATUS,
            Encoding::Json,
            json_bytes(json!({"exchange": "LSE"})),
            "UNKNOWN_EXCHANGE",
        ),
        (
            "unicode junk",
            md::LAST,
            Encoding::Json,
            json_bytes(json!({"exchange": "\u{202e}\u{0}💥", "symbol": "💥"})),
            "UNKNOWN_EXCHANGE",
        ),
        (
            "unknown last exchange",
            md::LAST,
            Encoding::Json,
            json_bytes(json!({"exchange": "NYSE", "symbol": "SBIN-EQ"})),
            "UNKNOWN_EXCHANGE",
        ),
        (
            "unknown search exchange",
            md::SYMBOLS_SEARCH,
            Encoding::Json,
            json_bytes(json!({"query": "SBI", "exchange": "NYSE"})),
            "UNKNOWN_EXCHANGE",
        ),
        (
            "unknown lookup exchange",
            md::SYMBOLS_LOOKUP,
            Encoding::Json,
            json_bytes(json!({"exchange": "NYSE", "symbol": "SBIN-EQ"})),
            "UNKNOWN_EXCHANGE",
        ),
        (
            "unknown snapshot exchange",
            md::SNAPSHOT,
            Encoding::Json,
            json_bytes(json!({"symbols": [{"exchange": "NYSE", "symbol": "SBIN-EQ"}]})),
            "UNKNOWN_EXCHANGE",
        ),
        (
            "oversized",
            md::SYMBOLS_SEARCH,
            Encoding::Json,
            Bytes::from(vec![b' '; 64 * 1024]),
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "unknown verb",
            "md.req.explode",
            Encoding::Json,
            json_bytes(json!({})),
            "UNKNOWN_VERB",
        ),
    ];
    for (name, subject, encoding, payload, expected) in cases {
        assert_eq!(
            error(&stack, subject, encoding, payload).await,
            expected,
            "case: {name}"
        );
    }
    // Still serving.
    ok(&stack, md::SYMBOLS_SEARCH, json!({"query": "TCS"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_data_replies_echo_a_plain_request_id_and_replace_any_other() {
    let stack = TestStack::start(Backend::Sqlite).await;
    let echoed = |id: Option<&str>| {
        let stack = &stack;
        let id = id.map(str::to_string);
        async move {
            let mut hdrs = async_nats::HeaderMap::new();
            if let Some(id) = &id {
                hdrs.insert(subjects::headers::REQUEST_ID, id.as_str());
            }
            let reply = tokio::time::timeout(
                Duration::from_secs(10),
                stack
                    .client
                    .request_with_headers(md::STATUS.to_string(), hdrs, msgpack(json!({}))),
            )
            .await
            .expect("a reply within 10 s")
            .expect("the publisher answers");
            reply
                .headers
                .as_ref()
                .and_then(|h| h.get(subjects::headers::REQUEST_ID))
                .map(|v| v.as_str().to_string())
                .expect("every reply carries a request id")
        }
    };
    assert_eq!(echoed(Some("client-7:a.b_c")).await, "client-7:a.b_c");
    let generated = |id: &str| uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7);
    for bad in [Some("bad id with spaces"), Some(&"x".repeat(200)[..]), None] {
        let id = echoed(bad).await;
        assert!(generated(&id), "{bad:?} answered with {id:?}");
    }
    // Two requests without an id get two ids.
    assert_ne!(echoed(None).await, echoed(None).await);
}
