//! The codec: headers, encodings and replies.

use super::*;
use serde::Deserialize;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Probe {
    name: String,
    qty: i64,
    #[serde(default)]
    note: Option<String>,
}

#[test]
fn msgpack_uses_named_fields_and_ignores_unknown_ones() {
    let bytes = Encoding::MsgPack
        .encode(&Probe {
            name: "x".into(),
            qty: 3,
            note: None,
        })
        .expect("encode");
    // A fixmap marker, not a fixarray: fields travel by name.
    assert_eq!(bytes[0] & 0xf0, 0x80);
    let extra = serde_json::json!({"name": "y", "qty": 5, "future_field": true});
    let with_extra = rmp_serde::to_vec_named(&extra).expect("encode map");
    let probe: Probe = Encoding::MsgPack.decode(&with_extra).expect("decode");
    assert_eq!(probe.qty, 5);
    assert_eq!(probe.note, None);
}

#[test]
fn the_arena_encodes_exactly_like_encode_across_many_arenas() {
    let mut arena = MsgPackArena::new();
    let kept: Vec<(Bytes, Probe)> = (0..5_000)
        .map(|qty| {
            let probe = Probe {
                name: "x".repeat(qty % 40),
                qty: qty as i64,
                note: (qty % 3 == 0).then(|| "n".into()),
            };
            (arena.encode(&probe).expect("encode"), probe)
        })
        .collect();
    // Every payload kept its own bytes after later ones were written and arenas replaced.
    for (bytes, probe) in &kept {
        assert_eq!(bytes, &Encoding::MsgPack.encode(probe).expect("encode"));
        let back: Probe = Encoding::MsgPack.decode(bytes).expect("decode");
        assert_eq!(&back, probe);
    }
    let big = Probe {
        name: "y".repeat(3 * ARENA_BYTES),
        qty: 1,
        note: None,
    };
    let decoded: Probe = Encoding::MsgPack
        .decode(&arena.encode(&big).expect("a value larger than the arena"))
        .expect("decode");
    assert_eq!(decoded, big);
}

#[test]
fn content_type_header_selects_json() {
    let mut headers = HeaderMap::new();
    headers.insert(
        crate::subjects::headers::CONTENT_TYPE,
        "application/json; charset=utf-8",
    );
    assert_eq!(Encoding::from_headers(Some(&headers)), Encoding::Json);
    let mut lower = HeaderMap::new();
    lower.insert("content-type", "application/json");
    lower.insert("authorization", "Bearer x");
    assert_eq!(Encoding::from_headers(Some(&lower)), Encoding::Json);
    assert_eq!(header(Some(&lower), "Authorization"), Some("Bearer x"));
    assert_eq!(header(Some(&lower), "Missing"), None);
    assert_eq!(Encoding::from_headers(None), Encoding::MsgPack);
    let probe: Probe = Encoding::Json
        .decode(br#"{"name":"a","qty":1}"#)
        .expect("decode");
    assert_eq!(probe.name, "a");
    assert!(Encoding::Json.decode::<Probe>(b"{").is_err());
    assert!(Encoding::MsgPack.decode::<Probe>(&[0xc1]).is_err());
    let json_sent_bare = Encoding::MsgPack
        .decode::<Probe>(br#"{"a": 1}"#)
        .expect_err("JSON is not MessagePack")
        .to_string();
    assert!(
        json_sent_bare.contains("Content-Type: application/json"),
        "{json_sent_bare}"
    );
}

#[test]
fn deep_nesting_is_refused_before_decoding() {
    // 100,000 levels would overflow any stack inside rmp-serde; the scan refuses it.
    let mut deep = b"\x81\xa1k".repeat(100_000);
    deep.push(0x01);
    assert!(matches!(
        Encoding::MsgPack.decode::<Probe>(&deep),
        Err(CodecError::Refused(ScanError::TooDeep { .. }))
    ));
    let json = format!("{{\"k\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        Encoding::Json.decode::<Probe>(json.as_bytes()),
        Err(CodecError::Refused(ScanError::TooDeep { .. }))
    ));
}

#[test]
fn headers_are_bounded() {
    let mut many = HeaderMap::new();
    for i in 0..=MAX_HEADER_VALUES {
        many.append("X-Many", i.to_string().as_str());
    }
    assert!(matches!(
        check_headers(Some(&many)),
        Err(CodecError::Headers)
    ));
    let mut big = HeaderMap::new();
    big.insert("X-Big", "v".repeat(MAX_HEADER_BYTES).as_str());
    assert!(check_headers(Some(&big)).is_err());
    let mut fine = HeaderMap::new();
    fine.insert("Authorization", "Bearer x");
    assert!(check_headers(Some(&fine)).is_ok());
    assert!(check_headers(None).is_ok());
}

#[test]
fn a_reply_carries_its_error_code_in_the_header_and_the_body() {
    let mut hdrs = HeaderMap::new();
    let (payload, failed) =
        encode_reply(Encoding::Json, Ok::<_, ErrorBody>(7u32), &mut hdrs).expect("encodes");
    assert_eq!(failed, None);
    assert!(hdrs.get(headers::ERROR_CODE).is_none());
    assert_eq!(&payload[..], br#"{"ok":true,"result":7}"#);

    let mut hdrs = HeaderMap::new();
    let refused = ErrorBody::new(ErrorCode::Forbidden, "not yours");
    let (payload, failed) =
        encode_reply(Encoding::MsgPack, Err::<u32, _>(refused), &mut hdrs).expect("encodes");
    assert_eq!(failed, Some(ErrorCode::Forbidden));
    assert_eq!(
        hdrs.get(headers::ERROR_CODE).map(|v| v.as_str()),
        Some(ErrorCode::Forbidden.as_str())
    );
    let reply: Reply<u32> = Encoding::MsgPack.decode(&payload).expect("decodes");
    assert!(!reply.ok);
    assert_eq!(reply.error.map(|e| e.code), Some(ErrorCode::Forbidden));
}

#[derive(Debug, Deserialize, PartialEq)]
struct Target {
    order_id: String,
    #[serde(default)]
    quantity: Option<i64>,
}

#[test]
fn a_request_is_a_map_of_named_fields_never_positional() {
    let named = rmp_serde::to_vec_named(&serde_json::json!({"order_id": "o1", "quantity": 2}))
        .expect("encode");
    let target: Target = Encoding::MsgPack.decode_request(&named).expect("a map");
    assert_eq!(target.order_id, "o1");
    // serde would read each of these by position (`decode` still does, for Pinnacle's own
    // messages); a request refuses them.
    let array = rmp_serde::to_vec(&("o1", 2)).expect("encode");
    let numbered = [0x82, 0x00, 0xa2, b'o', b'1', 0x01, 0x02];
    let bin = [
        0x81, 0xa8, b'o', b'r', b'd', b'e', b'r', b'_', b'i', b'd', 0xc4, 0x02, b'o', b'1',
    ];
    let nested_numbered = rmp_serde::to_vec_named(&serde_json::json!({"order_id": "o1"}))
        .map(|mut v| {
            // {"order_id": "o1", "x": {1: 2}}
            v[0] = 0x82;
            v.extend([0xa1, b'x', 0x81, 0x01, 0x02]);
            v
        })
        .expect("encode");
    assert!(
        Encoding::MsgPack.decode::<Target>(&array).is_ok(),
        "serde's positional read"
    );
    for (name, bytes, expected) in [
        ("an array", array.as_slice(), "this payload is an array"),
        ("numbered keys", &numbered[..], "is not a string"),
        ("bin", &bin[..], "binary data"),
        (
            "a nested numbered key",
            &nested_numbered[..],
            "is not a string",
        ),
        ("a number", &[0x05][..], "is not a map"),
        (
            "JSON as MessagePack",
            &b"{\"order_id\":\"o1\"}"[..],
            "looks like JSON",
        ),
    ] {
        let refused = Encoding::MsgPack
            .decode_request::<Target>(bytes)
            .expect_err(name);
        assert!(
            matches!(refused, CodecError::Refused(_)) && refused.to_string().contains(expected),
            "{name}: {refused}"
        );
    }
    // JSON: an object, never an array.
    let object: Target = Encoding::Json
        .decode_request(br#" {"order_id": "o1"}"#)
        .expect("an object");
    assert_eq!(object.order_id, "o1");
    for bytes in [&br#"["o1", 2]"#[..], b"\"o1\"", b"  "] {
        assert!(Encoding::Json.decode_request::<Target>(bytes).is_err());
    }
}

proptest::proptest! {
    /// Whatever the bytes, the request scan answers (no panic), and what it lets through
    /// starts with a map and, when it decodes at all, decodes as an object, never a
    /// sequence.
    #[test]
    fn the_request_scan_refuses_any_non_map_and_never_panics(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)
    ) {
        if scan::check_msgpack_request(&bytes).is_ok() {
            proptest::prop_assert!(matches!(bytes[0], 0x80..=0x8f | 0xde | 0xdf));
            // A map with string keys reads as a JSON object (bin and ext aside, refused or
            // not representable); it never reads as a sequence.
            if let Ok(value) = rmp_serde::from_slice::<serde_json::Value>(&bytes) {
                proptest::prop_assert!(value.is_object());
            }
        }
    }
}
