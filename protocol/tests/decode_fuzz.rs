//! Property test: every NATS endpoint's request decoder, fed generated hostile input,
//! answers `Ok` or `Err` and never panics or overflows its stack.
//!
//! The decoders are [`Encoding::decode`] into each endpoint's request type (the order
//! worker's `orders.<user>.<verb>`, the publisher's `md.req.*`), plus the internal
//! messages services read from subjects others can publish to (ticks, order events, audit
//! events). Each input is decoded both as MessagePack and as JSON by every one of them.
//!
//! Inputs: deep nesting of every container kind (far past any stack), well-formed values
//! with the real field names but wrong types, huge or non-finite numbers and unicode junk,
//! the same truncated at a random byte or with one byte flipped, and raw random bytes.
//!
//! `PINNACLE_FUZZ_CASES` sets how many inputs are generated (default 20,000, a few seconds
//! for CI); the full run is 1,000,000 (docs/TESTING.md).

use pinnacle_protocol::codec::{Encoding, MAX_DEPTH};
use pinnacle_protocol::model::{
    AuditEvent, CandleRequest, LastRequest, ListRequest, MarketTick, ModifyRequest, OrderEvent,
    OrderRef, OrderRequest, PortfolioRequest, SnapshotRequest, SquareOffReply, SquareOffRequest,
    StatusRequest, SymbolLookup, SymbolSearch, Tick,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::{Map, Number, Value};

/// Field names the request types use, so generated maps reach real fields.
const KEYS: &[&str] = &[
    "client_order_id",
    "order_id",
    "exchange",
    "symbol",
    "side",
    "order_type",
    "quantity",
    "price",
    "trigger_price",
    "product",
    "account",
    "status",
    "limit",
    "interval",
    "from",
    "to",
    "query",
    "token",
    "ltp",
    "ts_ms",
    "depth",
    "mode",
    "k",
    "",
];

/// Decodes `bytes` into every endpoint's types with `encoding`; only a panic fails.
fn decode_all(encoding: Encoding, bytes: &[u8]) {
    if let Ok(order) = encoding.decode::<OrderRequest>(bytes) {
        // Validation runs next in the handler; it must not panic on odd values either.
        let _ = order.validate(i64::MAX);
        let _ = order.validate(1_000);
    }
    let _ = encoding.decode::<ModifyRequest>(bytes);
    let _ = encoding.decode::<OrderRef>(bytes);
    let _ = encoding.decode::<ListRequest>(bytes);
    let _ = encoding.decode::<PortfolioRequest>(bytes);
    let _ = encoding.decode::<SquareOffRequest>(bytes);
    let _ = encoding.decode::<SquareOffReply>(bytes);
    let _ = encoding.decode::<LastRequest>(bytes);
    let _ = encoding.decode::<CandleRequest>(bytes);
    let _ = encoding.decode::<SymbolSearch>(bytes);
    let _ = encoding.decode::<SymbolLookup>(bytes);
    let _ = encoding.decode::<StatusRequest>(bytes);
    let _ = encoding.decode::<SnapshotRequest>(bytes);
    let _ = encoding.decode::<Tick>(bytes);
    let _ = encoding.decode::<MarketTick>(bytes);
    let _ = encoding.decode::<OrderEvent>(bytes);
    let _ = encoding.decode::<AuditEvent>(bytes);
}

/// Nesting `depth` levels deep, MessagePack or JSON, with a varied container per level.
fn nested() -> impl Strategy<Value = Vec<u8>> {
    (
        0usize..4 * 1024,
        prop::collection::vec(0u8..6, 1..8),
        any::<bool>(),
    )
        .prop_map(|(depth, kinds, json)| {
            let mut out = Vec::new();
            let mut closers = Vec::new();
            for level in 0..depth {
                let kind = kinds[level % kinds.len()];
                if json {
                    if kind % 2 == 0 {
                        out.extend_from_slice(b"{\"k\":");
                        closers.push(b'}');
                    } else {
                        out.push(b'[');
                        closers.push(b']');
                    }
                } else {
                    match kind {
                        0 => out.extend_from_slice(b"\x81\xa1k"),
                        1 => out.push(0x91),
                        2 => out.extend_from_slice(b"\xde\x00\x01\xa8quantity"),
                        3 => out.extend_from_slice(b"\xdc\x00\x01"),
                        4 => out.extend_from_slice(b"\xdf\x00\x00\x00\x01\xa6symbol"),
                        _ => out.extend_from_slice(b"\xdd\x00\x00\x00\x01"),
                    }
                }
            }
            if json {
                out.push(b'1');
                out.extend(closers.iter().rev());
            } else {
                out.push(0x01);
            }
            out
        })
}

/// Numbers at and past every boundary a field could overflow on.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(i64::MIN)),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from(f64::MAX)),
        Just(Value::from(-0.0)),
    ]
}

/// Strings that are long, empty, control characters, or any unicode at all.
fn junk_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        Just(String::new()),
        Just("\u{0}\r\n\u{feff}\u{202e}".to_string()),
        Just("x".repeat(3_000)),
        "[A-Z]{1,12}",
        prop::sample::select(vec![
            "NSE", "BUY", "SELL", "LIMIT", "MARKET", "INTRADAY", "1m"
        ])
        .prop_map(str::to_string),
    ]
}

/// A JSON value of any shape, nesting at most a few levels, with real field names.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        junk_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..10).prop_map(|fields| {
                Value::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// How a well-formed encoding is damaged before decoding.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::None),
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
    ]
}

/// A value encoded as MessagePack or JSON, then maybe damaged.
fn encoded() -> impl Strategy<Value = Vec<u8>> {
    (value(), any::<bool>(), damage()).prop_map(|(value, json, damage)| {
        let mut bytes = if json {
            serde_json::to_vec(&value).unwrap_or_default()
        } else {
            rmp_serde::to_vec_named(&value).unwrap_or_default()
        };
        match damage {
            Damage::None => {}
            Damage::Truncate(at) if !bytes.is_empty() => {
                let at = at.index(bytes.len());
                bytes.truncate(at);
            }
            Damage::Flip(at, byte) if !bytes.is_empty() => {
                let at = at.index(bytes.len());
                bytes[at] ^= byte;
            }
            _ => {}
        }
        bytes
    })
}

/// Hand-written JSON spellings serde_json must refuse or clamp without harm.
fn json_edge() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        r#"{"quantity":1e400,"price":-1e400}"#,
        r#"{"quantity":123456789012345678901234567890}"#,
        r#"{"limit":-1}"#,
        r#"{"symbol":"\ud800"}"#,
        r#"{"symbol":"\u0000","exchange":"NSE"}"#,
        r#"{"status":[[[[[[["OPEN"]]]]]]]}"#,
        r#"{"order_id":"a","order_id":"b"}"#,
        "{\"symbol\":\"\u{10ffff}\"}",
    ])
    .prop_map(|s| s.as_bytes().to_vec())
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => encoded(),
        2 => nested(),
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => json_edge(),
    ]
}

fn cases() -> u32 {
    std::env::var("PINNACLE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(20_000)
}

#[test]
fn endpoint_decoders_never_panic_on_generated_input() {
    let cases = cases();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 512,
        ..Config::default()
    });
    let result = runner.run(&input(), |bytes| {
        decode_all(Encoding::MsgPack, &bytes);
        decode_all(Encoding::Json, &bytes);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    eprintln!("decoded {cases} generated inputs, each with 14 types in 2 encodings");
}

#[test]
fn deep_payloads_from_the_report_are_refused_not_overflowed() {
    for n in [MAX_DEPTH + 1, 600, 900, 100_000] {
        let mut bytes = b"\x81\xa1k".repeat(n);
        bytes.push(0x01);
        assert!(Encoding::MsgPack.decode::<LastRequest>(&bytes).is_err());
        assert!(Encoding::MsgPack.decode::<ModifyRequest>(&bytes).is_err());
    }
}
