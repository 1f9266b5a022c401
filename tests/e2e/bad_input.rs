//! Bad input gets a structured error with a stable code: never a panic, never silence,
//! and the worker keeps serving afterwards.

use bytes::Bytes;
use pinnacle_common::codec::Encoding;
use pinnacle_common::subjects;
use pinnacle_tests::{market, TestStack, TestUser};

use crate::each_backend;

async fn error_code(
    stack: &TestStack,
    user: &TestUser,
    subject: String,
    encoding: Encoding,
    payload: Bytes,
) -> String {
    let reply = stack
        .request(subject, Some(&user.token), encoding, payload)
        .await;
    let code_header = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Pinnacle-Error"))
        .map(|v| v.as_str().to_string());
    let value: serde_json::Value = match encoding {
        Encoding::Json => serde_json::from_slice(&reply.payload).expect("JSON error reply"),
        Encoding::MsgPack => {
            rmp_serde::from_slice(&reply.payload).expect("MessagePack error reply")
        }
    };
    assert_eq!(value["ok"], false, "{value}");
    let code = value["error"]["code"].as_str().expect("code").to_string();
    assert!(value["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(
        code_header.as_deref(),
        Some(code.as_str()),
        "header mirrors the code"
    );
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_absurd_requests_get_structured_errors() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("hank").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let place = subjects::order(&user.id, "place");
        let msgpack = |v: serde_json::Value| Bytes::from(rmp_serde::to_vec_named(&v).expect("encode"));
        let json = |v: serde_json::Value| Bytes::from(serde_json::to_vec(&v).expect("encode"));
        let valid = serde_json::json!({
            "client_order_id": "x", "exchange": "NSE", "symbol": "SBIN-EQ",
            "side": "BUY", "order_type": "MARKET", "quantity": 1
        });
        let with = |key: &str, value: serde_json::Value| {
            let mut v = valid.clone();
            v[key] = value;
            v
        };
        let cases: Vec<(&str, Encoding, Bytes, &str)> = vec![
            ("invalid msgpack byte", Encoding::MsgPack, Bytes::from_static(&[0xc1]), "BAD_PAYLOAD"),
            ("truncated msgpack", Encoding::MsgPack, msgpack(valid.clone()).slice(..10), "BAD_PAYLOAD"),
            ("empty payload", Encoding::MsgPack, Bytes::new(), "BAD_PAYLOAD"),
            ("msgpack array", Encoding::MsgPack, msgpack(serde_json::json!([1, 2])), "BAD_PAYLOAD"),
            ("broken JSON", Encoding::Json, Bytes::from_static(b"{\"client_order_id\":"), "BAD_PAYLOAD"),
            ("JSON sent as msgpack", Encoding::MsgPack, json(valid.clone()), "BAD_PAYLOAD"),
            // A second request after the first: nothing a deserialiser would skip unseen.
            ("msgpack with trailing bytes", Encoding::MsgPack, [msgpack(valid.clone()), msgpack(with("quantity", 7.into()))].concat().into(), "BAD_PAYLOAD"),
            ("JSON with trailing bytes", Encoding::Json, Bytes::from([json(valid.clone()).to_vec(), b"{}".to_vec()].concat()), "BAD_PAYLOAD"),
            ("quantity as text", Encoding::Json, json(with("quantity", "ten".into())), "BAD_PAYLOAD"),
            ("quantity as float", Encoding::Json, json(with("quantity", 1.5.into())), "BAD_PAYLOAD"),
            ("unknown side", Encoding::Json, json(with("side", "HOLD".into())), "BAD_PAYLOAD"),
            ("missing symbol", Encoding::MsgPack, msgpack(serde_json::json!({"client_order_id": "x", "exchange": "NSE", "side": "BUY", "order_type": "MARKET", "quantity": 1})), "BAD_PAYLOAD"),
            ("negative quantity", Encoding::Json, json(with("quantity", (-5).into())), "INVALID_REQUEST"),
            ("zero quantity", Encoding::MsgPack, msgpack(with("quantity", 0.into())), "INVALID_REQUEST"),
            ("absurd quantity", Encoding::MsgPack, msgpack(with("quantity", i64::MAX.into())), "INVALID_REQUEST"),
            ("limit without price", Encoding::Json, json(with("order_type", "LIMIT".into())), "INVALID_REQUEST"),
            ("SQL in the client order id", Encoding::Json, json(with("client_order_id", "x'; DROP TABLE orders;--".into())), "INVALID_REQUEST"),
            ("unicode junk", Encoding::Json, json(with("client_order_id", "\u{202e}\u{0}💥".into())), "INVALID_REQUEST"),
            ("unknown symbol", Encoding::Json, json(with("symbol", "ZZZZ".into())), "UNKNOWN_SYMBOL"),
            ("oversized payload", Encoding::Json, Bytes::from(vec![b' '; 64 * 1024]), "PAYLOAD_TOO_LARGE"),
        ];
        for (name, encoding, payload, expected) in cases {
            let code = error_code(&stack, &user, place.clone(), encoding, payload).await;
            assert_eq!(code, expected, "case: {name}");
        }

        // Requests name their fields: a place, get or cancel sent as an array, as a map
        // keyed by field numbers, or with a `bin` id (all of which serde would read by
        // position or as text) is refused, and changes nothing.
        let resting = serde_json::json!({
            "client_order_id": "rest-1", "exchange": "NSE", "symbol": "SBIN-EQ",
            "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": 100
        });
        let placed = stack
            .request(place.clone(), Some(&user.token), Encoding::MsgPack, msgpack(resting))
            .await;
        let placed: serde_json::Value = rmp_serde::from_slice(&placed.payload).expect("reply");
        assert_eq!(placed["result"]["status"], "OPEN", "{placed}");
        let order_id = placed["result"]["order_id"].as_str().expect("id").to_string();
        let positional_place = rmp_serde::to_vec(&("pos-1", "NSE", "SBIN-EQ", "BUY", "MARKET", 1))
            .expect("encode");
        let mut numbered_place = vec![0x86];
        for (i, value) in ["num-1", "NSE", "SBIN-EQ", "BUY", "MARKET"].iter().enumerate() {
            numbered_place.push(i as u8);
            numbered_place.extend(rmp_serde::to_vec(value).expect("encode"));
        }
        numbered_place.extend([0x05, 0x01]);
        let bin_id = |id: &str| {
            let mut bytes = vec![0x81, 0xa8];
            bytes.extend(b"order_id");
            bytes.extend([0xc4, id.len() as u8]);
            bytes.extend(id.as_bytes());
            Bytes::from(bytes)
        };
        let positional = [
            ("place as an array", "place", Bytes::from(positional_place)),
            ("place with numbered keys", "place", Bytes::from(numbered_place)),
            ("get as an array", "get", Bytes::from(rmp_serde::to_vec(&(&order_id,)).expect("encode"))),
            ("cancel as an array", "cancel", Bytes::from(rmp_serde::to_vec(&(&order_id,)).expect("encode"))),
            ("cancel with a numbered key", "cancel", {
                let mut bytes = vec![0x81, 0x00];
                bytes.extend(rmp_serde::to_vec(&order_id).expect("encode"));
                Bytes::from(bytes)
            }),
            ("cancel with a bin id", "cancel", bin_id(&order_id)),
            ("get as a JSON array", "get", json(serde_json::json!([order_id]))),
        ];
        for (name, verb, payload) in positional {
            let encoding = if name.contains("JSON") { Encoding::Json } else { Encoding::MsgPack };
            let code = error_code(&stack, &user, subjects::order(&user.id, verb), encoding, payload).await;
            assert_eq!(code, "BAD_PAYLOAD", "case: {name}");
        }
        let still = stack
            .request(
                subjects::order(&user.id, "get"),
                Some(&user.token),
                Encoding::MsgPack,
                msgpack(serde_json::json!({"order_id": order_id})),
            )
            .await;
        let still: serde_json::Value = rmp_serde::from_slice(&still.payload).expect("reply");
        assert_eq!(still["result"]["status"], "OPEN", "nothing cancelled it: {still}");
        for id in ["x", "pos-1", "num-1"] {
            let absent = error_code(
                &stack,
                &user,
                subjects::order(&user.id, "get"),
                Encoding::Json,
                json(serde_json::json!({"client_order_id": id})),
            )
            .await;
            assert_eq!(absent, "NOT_FOUND", "{id} was placed");
        }
        let code = error_code(
            &stack,
            &user,
            subjects::order(&user.id, "explode"),
            Encoding::Json,
            json(valid.clone()),
        )
        .await;
        assert_eq!(code, "UNKNOWN_VERB");
        for subject in [format!("orders.{}.place.extra", user.id), format!("orders.{}", user.id)] {
            let code = error_code(&stack, &user, subject.clone(), Encoding::Json, json(valid.clone())).await;
            assert_eq!(code, "UNKNOWN_VERB", "{subject}");
        }

        // A reply subject inside Pinnacle's own namespaces is never written to: a caller
        // cannot make the worker publish into someone's audit trail or event stream, or
        // onto the internal announcements its NATS permissions deny it.
        for target in ["audit.credential.victim", "pinnacle.cache.invalidate"] {
            let mut probe = stack.client.subscribe(target).await.expect("sub");
            let mut hdrs = async_nats::HeaderMap::new();
            hdrs.insert("Authorization", format!("Bearer {}", user.token).as_str());
            stack
                .client
                .publish_with_reply_and_headers(place.clone(), target, hdrs, msgpack(valid.clone()))
                .await
                .expect("publish");
            stack.client.flush().await.expect("flush");
            use futures::StreamExt;
            let leaked = tokio::time::timeout(std::time::Duration::from_millis(500), probe.next()).await;
            assert!(leaked.is_err(), "the worker replied into {target}");
        }

        // The worker is unharmed.
        let reply = stack.place(&user, &market("after-junk", "SBIN-EQ", 1)).await;
        assert!(reply.ok, "{reply:?}");
    })
    .await;
}

/// `b"\x81\xa1k" * n + b"\x01"`: `n` maps nested in one another, three bytes a level.
fn nested_maps(n: usize) -> Bytes {
    let mut bytes = b"\x81\xa1k".repeat(n);
    bytes.push(0x01);
    Bytes::from(bytes)
}

/// Deep nesting once overflowed the stack inside rmp-serde (md.req.last at 900 levels,
/// orders.<own>.modify at 600); the codec's pre-scan now refuses it before decoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_payloads_get_bad_payload_and_the_services_keep_answering() {
    use pinnacle_common::subjects::md;
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let user = stack.trader("nesta").await;
    stack.wait_for_ticks("SBIN-EQ", 1).await;
    let modify = subjects::order(&user.id, "modify");
    // All under the 16 KiB request limit, so the depth is what is refused.
    for n in [33, 600, 900, 5_000] {
        let code = error_code(
            &stack,
            &user,
            modify.clone(),
            Encoding::MsgPack,
            nested_maps(n),
        )
        .await;
        assert_eq!(code, "BAD_PAYLOAD", "modify, depth {n}");
        let reply = stack
            .request(
                md::LAST.to_string(),
                None,
                Encoding::MsgPack,
                nested_maps(n),
            )
            .await;
        let value: serde_json::Value = rmp_serde::from_slice(&reply.payload).expect("reply");
        assert_eq!(
            value["error"]["code"], "BAD_PAYLOAD",
            "md.req.last, depth {n}: {value}"
        );
    }
    let deep_json = Bytes::from(format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000)));
    let code = error_code(&stack, &user, modify, Encoding::Json, deep_json).await;
    assert_eq!(code, "BAD_PAYLOAD");
    // Both services still answer.
    let reply = stack
        .place(&user, &market("after-deep", "SBIN-EQ", 1))
        .await;
    assert!(reply.ok, "{reply:?}");
    let reply = stack
        .request(
            md::STATUS.to_string(),
            None,
            Encoding::Json,
            Bytes::from_static(b"{}"),
        )
        .await;
    let value: serde_json::Value = serde_json::from_slice(&reply.payload).expect("reply");
    assert_eq!(value["ok"], true, "{value}");
}
