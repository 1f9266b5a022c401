//! The `events` verb: a trader reads their own stored order events in pages, from the
//! first, after a sequence or from a time, and nobody else's; a request out of range is
//! refused; a stream that cannot be read is `EVENTS_UNAVAILABLE`.

use std::time::Duration;

use pinnacle_common::codec::Encoding;
use pinnacle_common::model::events::MAX_SINCE_MS;
use pinnacle_common::model::{EventPage, OrderEvent, OrderStatus};
use pinnacle_common::subjects::{self, headers};
use pinnacle_tests::{eventually, order_events, order_events_paged, TestStack, TestUser};
use serde_json::{json, Value};

use crate::each_backend;

fn resting_buy(client_order_id: &str) -> Value {
    json!({"client_order_id": client_order_id, "exchange": "NSE", "symbol": "SBIN-EQ",
           "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": 100})
}

/// Places a resting order; its id.
async fn place(stack: &TestStack, user: &TestUser, client_order_id: &str) -> String {
    let placed = stack
        .call(user, "place", resting_buy(client_order_id))
        .await;
    assert_eq!(placed["result"]["status"], "OPEN", "{placed}");
    placed["result"]["order_id"]
        .as_str()
        .expect("an order id")
        .to_string()
}

/// Waits until `user`'s stream holds, for each of `last`, an event of the order entering
/// that state; then every event of theirs, in stream order.
async fn stored(
    stack: &TestStack,
    user: &TestUser,
    last: &[(&str, OrderStatus)],
) -> Vec<OrderEvent> {
    eventually(Duration::from_secs(15), "the events stored", || async {
        let events = order_events(&stack.client, &user.id).await;
        let done = last.iter().all(|(order_id, status)| {
            events
                .iter()
                .any(|e| e.order.order_id == *order_id && e.order.status == *status)
        });
        done.then_some(events)
    })
    .await
}

/// One page, which must succeed.
async fn page(stack: &TestStack, user: &TestUser, request: Value) -> EventPage {
    let reply = stack.call(user, subjects::verbs::EVENTS, request).await;
    assert_eq!(reply["ok"], true, "{reply}");
    serde_json::from_value(reply["result"].clone()).expect("an event page")
}

/// Every page from the first, `limit` at a time: the events, and the last sequence.
async fn read_all(stack: &TestStack, user: &TestUser, limit: u32) -> (Vec<OrderEvent>, u64) {
    order_events_paged(&stack.client, &user.id, &user.token, limit)
        .await
        .expect("every page")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trader_pages_through_exactly_their_own_events() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let (a, b) = (stack.trader("pages-a").await, stack.trader("pages-b").await);
        stack.wait_for_ticks("SBIN-EQ", 2).await;

        // A: three resting orders, one of them modified and then cancelled; B: one, placed
        // in between, so B's events sit among A's in the stream.
        let first = place(&stack, &a, "pages-1").await;
        let theirs = place(&stack, &b, "pages-b").await;
        let second = place(&stack, &a, "pages-2").await;
        let third = place(&stack, &a, "pages-3").await;
        let modified = stack
            .call(&a, "modify", json!({"order_id": third, "quantity": 2}))
            .await;
        assert_eq!(modified["result"]["quantity"], 2, "{modified}");
        let cancelled = stack.call(&a, "cancel", json!({"order_id": third})).await;
        assert_eq!(cancelled["result"]["status"], "CANCELLED", "{cancelled}");
        let last = [
            (first.as_str(), OrderStatus::Open),
            (second.as_str(), OrderStatus::Open),
            (third.as_str(), OrderStatus::Cancelled),
        ];
        let expected = stored(&stack, &a, &last).await;
        stored(&stack, &b, &[(theirs.as_str(), OrderStatus::Open)]).await;
        assert!(expected.len() >= 9, "{expected:?}");

        // Two at a time, and in one page: the same events as the stream holds, in order.
        let (two_by_two, end) = read_all(&stack, &a, 2).await;
        assert_eq!(two_by_two, expected);
        let (at_once, _) = read_all(&stack, &a, 500).await;
        assert_eq!(at_once, expected);
        // No payload: from the first, a hundred at most.
        let default = page(&stack, &a, json!({})).await;
        let events: Vec<OrderEvent> = default.events.into_iter().map(|s| s.event).collect();
        assert_eq!(events, expected);
        // Past the end: nothing, and the same place to resume from, in the same stream.
        let past = page(&stack, &a, json!({"after": end, "stream": default.stream})).await;
        assert!(past.events.is_empty() && past.pending == 0, "{past:?}");
        assert_eq!(past.last_sequence, end);
        assert_eq!(past.stream, default.stream);
        assert!(!past.rewound, "{past:?}");
        let old_stream = past.stream.clone();
        // B sees only B's.
        let (bs, _) = read_all(&stack, &b, 100).await;
        assert!(!bs.is_empty());
        assert!(bs.iter().all(|e| e.order.order_id == theirs), "{bs:?}");

        // From a time: only what was stored since.
        let since = chrono::Utc::now().timestamp_millis();
        let fourth = place(&stack, &a, "pages-4").await;
        stored(&stack, &a, &[(fourth.as_str(), OrderStatus::Open)]).await;
        let recent = page(&stack, &a, json!({"since_ms": since})).await;
        assert!(!recent.events.is_empty(), "{recent:?}");
        assert!(
            recent
                .events
                .iter()
                .all(|s| s.event.order.order_id == fourth),
            "{recent:?}"
        );
        let future = chrono::Utc::now().timestamp_millis() + 3_600_000;
        for since in [future, MAX_SINCE_MS] {
            let none = page(&stack, &a, json!({"since_ms": since})).await;
            assert!(
                none.events.is_empty() && none.pending == 0,
                "{since}: {none:?}"
            );
            assert!(none.last_sequence >= recent.last_sequence, "{none:?}");
        }

        // JSON in, JSON out.
        let reply = stack
            .request(
                subjects::order(&a.id, subjects::verbs::EVENTS),
                Some(&a.token),
                Encoding::Json,
                serde_json::to_vec(&json!({"limit": 1}))
                    .expect("json")
                    .into(),
            )
            .await;
        let reply: Value = serde_json::from_slice(&reply.payload).expect("a JSON reply");
        assert_eq!(reply["result"]["events"].as_array().map(Vec::len), Some(1));

        // Refusals.
        let forbidden = stack
            .request(
                subjects::order(&a.id, subjects::verbs::EVENTS),
                Some(&b.token),
                Encoding::MsgPack,
                Vec::new().into(),
            )
            .await;
        let forbidden: Value = rmp_serde::from_slice(&forbidden.payload).expect("decodes");
        assert_eq!(forbidden["error"]["code"], "FORBIDDEN", "{forbidden}");
        for (request, code) in [
            (json!({"after": 1, "since_ms": 1}), "INVALID_REQUEST"),
            (json!({"limit": 0}), "INVALID_REQUEST"),
            (json!({"limit": 501}), "INVALID_REQUEST"),
            (json!({"since_ms": -1}), "INVALID_REQUEST"),
            (json!({"since_ms": i64::MAX}), "INVALID_REQUEST"),
            (json!({"since_ms": MAX_SINCE_MS + 1}), "INVALID_REQUEST"),
            (json!({"after": u64::MAX}), "INVALID_REQUEST"),
            (json!({"after": -1}), "BAD_PAYLOAD"),
            (json!({"stream": old_stream}), "INVALID_REQUEST"),
            (
                json!({"since_ms": 1, "stream": old_stream}),
                "INVALID_REQUEST",
            ),
            (json!({"after": 1, "stream": ""}), "INVALID_REQUEST"),
            (
                json!({"after": 1, "stream": "x".repeat(65)}),
                "INVALID_REQUEST",
            ),
            (json!({"after": 1, "stream": 7}), "BAD_PAYLOAD"),
            (json!({"deliver_subject": "audit.x"}), "BAD_PAYLOAD"),
            (json!([1, 2]), "BAD_PAYLOAD"),
        ] {
            let reply = stack
                .call(&a, subjects::verbs::EVENTS, request.clone())
                .await;
            assert_eq!(reply["error"]["code"], code, "{request}: {reply}");
        }

        // The stream gone: a retryable refusal, not a hang or a dead worker.
        let js = async_nats::jetstream::new(stack.client.clone());
        js.delete_stream(subjects::ORDER_EVENTS_STREAM)
            .await
            .expect("delete ORDER_EVENTS");
        let reply = stack.call(&a, subjects::verbs::EVENTS, json!({})).await;
        assert_eq!(reply["error"]["code"], "EVENTS_UNAVAILABLE", "{reply}");
        let listed = stack.call(&a, "list", json!({})).await;
        assert_eq!(listed["ok"], true, "the worker still serves: {listed}");

        // Re-created (nats/README.md, "A lost ORDER_EVENTS"): a client resuming from its
        // old position is taken back to the new stream's first event, and told so.
        pinnacle_order_worker::events::ensure_stream(&js)
            .await
            .expect("ORDER_EVENTS again");
        let fifth = place(&stack, &a, "pages-5").await;
        let anew = stored(&stack, &a, &[(fifth.as_str(), OrderStatus::Open)]).await;
        let resumed = page(&stack, &a, json!({"after": end})).await;
        assert!(resumed.rewound, "{resumed:?}");
        assert_ne!(resumed.stream, old_stream);
        let events: Vec<OrderEvent> = resumed.events.into_iter().map(|s| s.event).collect();
        assert_eq!(events, anew);
        let on = page(
            &stack,
            &a,
            json!({"after": resumed.last_sequence, "stream": resumed.stream}),
        )
        .await;
        assert!(!on.rewound && on.events.is_empty(), "{on:?}");
        // A position the new stream has already passed: without its stream it reads on
        // in the new one and misses its first event; with it, the page starts over.
        let blind = page(&stack, &a, json!({"after": 1})).await;
        assert!(!blind.rewound, "{blind:?}");
        let told = page(&stack, &a, json!({"after": 1, "stream": old_stream})).await;
        assert!(told.rewound, "{told:?}");
        let events: Vec<OrderEvent> = told.events.into_iter().map(|s| s.event).collect();
        assert_eq!(events, anew);
    })
    .await;
}

/// Pages cut off by their caller's deadline leave no consumer behind, and one trader's
/// burst of pages is held to their share of what a worker reads at once: the rest are
/// refused at once, retryably, while orders and another trader's page are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_pages_leaves_no_consumer_and_no_order_waiting() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let user = stack.trader("pages-flood").await;
    stack.wait_for_ticks("SBIN-EQ", 2).await;
    for n in 0..3 {
        place(&stack, &user, &format!("flood-{n}")).await;
    }
    let js = async_nats::jetstream::new(stack.client.clone());
    let consumers = || async {
        let mut stream = js
            .get_stream(subjects::ORDER_EVENTS_STREAM)
            .await
            .expect("ORDER_EVENTS");
        stream
            .info()
            .await
            .expect("stream info")
            .state
            .consumer_count
    };
    let send = |deadline_ms: Option<i64>| {
        let mut hdrs = async_nats::HeaderMap::new();
        hdrs.insert(
            headers::AUTHORIZATION,
            format!("Bearer {}", user.token).as_str(),
        );
        if let Some(ms) = deadline_ms {
            hdrs.insert(headers::DEADLINE, ms.to_string().as_str());
        }
        let subject = subjects::order(&user.id, subjects::verbs::EVENTS);
        let client = stack.client.clone();
        async move {
            let reply = tokio::time::timeout(
                Duration::from_secs(10),
                client.request_with_headers(subject, hdrs, Vec::new().into()),
            )
            .await
            .expect("a reply within 10 s")
            .expect("a reply");
            rmp_serde::from_slice::<Value>(&reply.payload).expect("decodes")
        }
    };
    // Deadlines that pass while the page is being read.
    for round in 0..5 {
        let now = chrono::Utc::now().timestamp_millis();
        let replies =
            futures::future::join_all((0..20).map(|n| send(Some(now + 1 + (n + round) % 4)))).await;
        for reply in &replies {
            let ok = reply["ok"] == true;
            let code = reply["error"]["code"].as_str().unwrap_or_default();
            assert!(
                ok || ["DEADLINE_EXCEEDED", "EVENTS_UNAVAILABLE"].contains(&code),
                "{reply}"
            );
        }
    }
    // A burst: every request answered once, some refused for being too many at once, and
    // never more consumers than the pages one worker reads at once.
    let done = std::sync::atomic::AtomicBool::new(false);
    let peak = async {
        let mut peak = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(consumers().await);
        }
        peak
    };
    let other = stack.trader("pages-other").await;
    let burst = async {
        let all = tokio::join!(
            futures::future::join_all((0..60).map(|_| send(None))),
            stack.call(&user, "place", resting_buy("flood-during")),
            stack.call(&other, subjects::verbs::EVENTS, json!({})),
        );
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        all
    };
    let ((replies, placed, others), peak) = tokio::join!(burst, peak);
    // One user's pages are held to their share, so another trader still reads theirs.
    assert_eq!(others["ok"], true, "{others}");
    assert!(
        peak <= pinnacle_order_worker::history::PAGES_IN_FLIGHT_PER_USER + 1,
        "{peak} consumers at once"
    );
    let refused = replies
        .iter()
        .filter(|r| r["error"]["code"] == "EVENTS_UNAVAILABLE")
        .count();
    assert!(replies
        .iter()
        .all(|r| r["ok"] == true || r["error"]["code"] == "EVENTS_UNAVAILABLE"));
    eprintln!("{refused} of 60 pages refused as too many at once; at most {peak} consumers");
    assert!(refused >= 60 - 2 * pinnacle_order_worker::history::PAGES_IN_FLIGHT_PER_USER);
    assert_eq!(placed["result"]["status"], "OPEN", "{placed}");
    eventually(Duration::from_secs(5), "no page consumer left", || async {
        (consumers().await == 0).then_some(())
    })
    .await;
}
