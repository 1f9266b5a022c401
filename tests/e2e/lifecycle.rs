//! The order lifecycle: get, list, modify and cancel through the state machine, with every
//! change published to the user's events stream and every credential use audited.

use futures::StreamExt;
use pinnacle_common::model::{OrderEvent, OrderStatus};
use pinnacle_common::subjects;
use pinnacle_tests::{audit_events, TestStack};
use serde_json::json;

use crate::each_backend;

fn resting_buy(client_order_id: &str) -> serde_json::Value {
    json!({"client_order_id": client_order_id, "exchange": "NSE", "symbol": "SBIN-EQ",
           "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": 100})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_and_cancel_move_through_the_state_machine() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("lifecycle").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;

        let placed = stack.call(&user, "place", resting_buy("life-1")).await;
        assert_eq!(placed["result"]["status"], "OPEN", "{placed}");
        let order_id = placed["result"]["order_id"]
            .as_str()
            .expect("id")
            .to_string();

        let fetched = stack
            .call(&user, "get", json!({"client_order_id": "life-1"}))
            .await;
        assert_eq!(fetched["result"]["order_id"], order_id.as_str());
        assert_eq!(fetched["result"]["quantity"], 10);

        // Modify the resting order: more quantity, still far from the market.
        let modified = stack
            .call(
                &user,
                "modify",
                json!({"order_id": order_id, "quantity": 20, "price": 105}),
            )
            .await;
        assert_eq!(modified["result"]["status"], "OPEN", "{modified}");
        assert_eq!(modified["result"]["quantity"], 20);
        assert_eq!(modified["result"]["price"], 105);

        let cancelled = stack
            .call(&user, "cancel", json!({"order_id": order_id}))
            .await;
        assert_eq!(cancelled["result"]["status"], "CANCELLED", "{cancelled}");

        // A terminal order cannot change again.
        for verb in ["cancel", "modify"] {
            let again = stack
                .call(&user, verb, json!({"order_id": order_id, "quantity": 30}))
                .await;
            assert_eq!(again["error"]["code"], "INVALID_STATE", "{verb}: {again}");
        }
        // Fields are checked before the order's state (PROTOCOL.md, "Replies and errors"):
        // an impossible change is INVALID_REQUEST, on a finished order too.
        for change in [
            json!({"order_id": order_id, "quantity": -5}),
            json!({"order_id": order_id, "price": 0}),
            json!({"order_id": order_id, "trigger_price": -1}),
            json!({"order_id": order_id, "quantity": i64::MAX}),
        ] {
            let refused = stack.call(&user, "modify", change.clone()).await;
            assert_eq!(
                refused["error"]["code"], "INVALID_REQUEST",
                "{change}: {refused}"
            );
        }
        // Modifying into a marketable price fills it.
        let second = stack.call(&user, "place", resting_buy("life-2")).await;
        let second_id = second["result"]["order_id"]
            .as_str()
            .expect("id")
            .to_string();
        let filled = stack
            .call(
                &user,
                "modify",
                json!({"order_id": second_id, "price": 1_000_000}),
            )
            .await;
        assert_eq!(filled["result"]["status"], "FILLED", "{filled}");

        let listed = stack.call(&user, "list", json!({})).await;
        let orders = listed["result"]["orders"].as_array().expect("orders");
        assert_eq!(orders.len(), 2);
        assert_eq!(orders[0]["client_order_id"], "life-2", "newest first");
        let only_cancelled = stack
            .call(&user, "list", json!({"status": ["CANCELLED"]}))
            .await;
        assert_eq!(
            only_cancelled["result"]["orders"].as_array().map(Vec::len),
            Some(1)
        );

        let purposes: Vec<String> = audit_events(&stack.client, &user.id)
            .await
            .into_iter()
            .map(|(e, _)| e.purpose)
            .collect();
        assert_eq!(
            purposes,
            [
                "credentials.write",
                "order.place",
                "order.modify",
                "order.cancel",
                "order.place",
                "order.modify"
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_change_is_an_event_a_client_can_replay() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("replayer").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let placed = stack.call(&user, "place", resting_buy("ev-1")).await;
        let order_id = placed["result"]["order_id"]
            .as_str()
            .expect("id")
            .to_string();
        stack
            .call(&user, "cancel", json!({"order_id": order_id}))
            .await;

        // A client that was offline replays its subject from the stream.
        let js = async_nats::jetstream::new(stack.client.clone());
        let stream = js
            .get_stream(subjects::ORDER_EVENTS_STREAM)
            .await
            .expect("stream");
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: subjects::order_events(&user.id),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut transitions = Vec::new();
        while transitions.len() < 5 {
            let message = tokio::time::timeout(std::time::Duration::from_secs(5), messages.next())
                .await
                .expect("event in time")
                .expect("stream open")
                .expect("message");
            let event: OrderEvent = rmp_serde::from_slice(&message.payload).expect("event decodes");
            assert_eq!(event.order.order_id, order_id);
            transitions.push((event.previous_status, event.order.status));
        }
        use OrderStatus::*;
        assert_eq!(
            transitions,
            [
                (None, New),
                (Some(New), Submitted),
                (Some(Submitted), Open),
                (Some(Open), PendingCancel),
                (Some(PendingCancel), Cancelled),
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_orders_are_invisible_and_bad_references_are_clear() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let owner = stack.trader("owner").await;
        let other = stack.trader("other").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let placed = stack.call(&owner, "place", resting_buy("mine")).await;
        let order_id = placed["result"]["order_id"]
            .as_str()
            .expect("id")
            .to_string();
        for verb in ["get", "cancel", "modify"] {
            let reply = stack
                .call(&other, verb, json!({"order_id": order_id, "quantity": 11}))
                .await;
            assert_eq!(reply["error"]["code"], "NOT_FOUND", "{verb}: {reply}");
        }
        let listed = stack.call(&other, "list", json!({})).await;
        assert_eq!(listed["result"]["orders"], json!([]));
        let reply = stack.call(&owner, "get", json!({})).await;
        assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
        let reply = stack
            .call(&owner, "modify", json!({"order_id": order_id}))
            .await;
        assert_eq!(
            reply["error"]["code"], "INVALID_REQUEST",
            "nothing to change"
        );
        let reply = stack
            .call(
                &owner,
                "get",
                json!({"order_id": order_id, "client_order_id": "other"}),
            )
            .await;
        assert_eq!(
            reply["error"]["code"], "NOT_FOUND",
            "the two ids must name the same order"
        );
        let reply = stack.call(&owner, "list", json!({"limit": 0})).await;
        assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
        let reply = stack
            .call(&owner, "list", json!({"status": ["NOT_A_STATE"]}))
            .await;
        assert_eq!(reply["error"]["code"], "BAD_PAYLOAD");
        let reply = stack
            .call(
                &owner,
                "modify",
                json!({"order_id": order_id, "quantity": -1}),
            )
            .await;
        assert_eq!(reply["error"]["code"], "INVALID_REQUEST");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_discoverable_through_the_micro_protocol() {
    let stack = TestStack::start(pinnacle_tests::Backend::Sqlite).await;
    let user = stack.trader("micro").await;
    stack.call(&user, "get", json!({"order_id": "nope"})).await;
    let ping = stack
        .client
        .request("$SRV.PING.pinnacle-orders", "".into())
        .await
        .expect("ping");
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).expect("json");
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
    let info = stack
        .client
        .request("$SRV.INFO.pinnacle-orders", "".into())
        .await
        .expect("info");
    let info: serde_json::Value = serde_json::from_slice(&info.payload).expect("json");
    let names: Vec<_> = info["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            "place",
            "modify",
            "cancel",
            "get",
            "list",
            "funds",
            "positions",
            "holdings",
            "trades",
            "squareoff",
            "events"
        ]
    );
    assert_eq!(info["endpoints"][0]["queue_group"], "order-workers");
    let stats = stack
        .client
        .request("$SRV.STATS.pinnacle-orders", "".into())
        .await
        .expect("stats");
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).expect("json");
    let get = &stats["endpoints"][3];
    assert_eq!(
        (
            get["name"].as_str(),
            get["num_requests"].as_u64(),
            get["num_errors"].as_u64()
        ),
        (Some("get"), Some(1), Some(1))
    );
    assert_eq!(get["last_error"], "NOT_FOUND");
}
