//! No lost event: order lifecycle events go through the transactional outbox, so a
//! JetStream outage loses none, and several relays store each exactly once, in order.

use std::time::Duration;

use async_nats::jetstream;
use pinnacle_common::entities::{order_outbox, orders};
use pinnacle_common::model::{OrderStatus, OrderType, Side};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_order_worker::events::{self, Relay};
use pinnacle_tests::{assert_complete_history, eventually, market, order_events, TestStack};
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::each_backend;

/// Points `ORDER_EVENTS` at other subjects (`on = false`), so publishes on
/// `events.orders.>` find no stream, or back (`on = true`); stored events stay.
async fn capture_order_events(client: &async_nats::Client, on: bool) {
    let js = jetstream::new(client.clone());
    let mut config = events::stream_config(1);
    if !on {
        config.subjects = vec!["outage.events.orders.>".into()];
    }
    js.update_stream(config).await.expect("stream updated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_outage_loses_no_event_and_two_relays_store_each_once_in_order() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("outbox").await;
        stack.lift_order_rate(&user.id, 10_000).await;
        // A second relay, as another worker would run, competing for the same outbox.
        let stop = Shutdown::new();
        let extra = tokio::spawn({
            let (js, db, stop) = (
                jetstream::new(stack.client.clone()),
                stack.db.clone(),
                stop.clone(),
            );
            async move {
                Relay::new()
                    .run(js, db, "w-extra".into(), stop, Duration::from_secs(2))
                    .await;
            }
        });
        let ltp = stack.wait_for_ticks("SBIN-EQ", 1).await[0].ltp;
        let resting = |id: &str| pinnacle_common::model::OrderRequest {
            order_type: OrderType::Limit,
            price: Some(ltp / 2 / 5 * 5),
            side: Side::Buy,
            ..market(id, "SBIN-EQ", 1)
        };

        for i in 0..5 {
            assert!(
                stack
                    .place(&user, &market(&format!("before-{i}"), "SBIN-EQ", 1))
                    .await
                    .ok
            );
            assert!(stack.place(&user, &resting(&format!("rest-{i}"))).await.ok);
        }

        // JetStream stops storing order events; trading goes on.
        capture_order_events(&stack.client, false).await;
        for i in 0..10 {
            let reply = stack
                .place(&user, &market(&format!("during-{i}"), "SBIN-EQ", 1))
                .await;
            assert!(reply.ok, "{:?}", reply.error);
        }
        for i in 0..3 {
            let reply = stack
                .call(
                    &user,
                    "cancel",
                    serde_json::json!({"client_order_id": format!("rest-{i}")}),
                )
                .await;
            assert!(reply["ok"].as_bool().unwrap_or(false), "{reply}");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let waiting = order_outbox::Entity::find()
            .count(&stack.db)
            .await
            .expect("count");
        assert!(waiting >= 20, "events wait in the outbox: {waiting}");

        // It comes back: every event is stored, once, in order.
        capture_order_events(&stack.client, true).await;
        eventually(Duration::from_secs(20), "an empty outbox", || async {
            let left = order_outbox::Entity::find().count(&stack.db).await.ok()?;
            (left == 0).then_some(())
        })
        .await;
        let events = order_events(&stack.client, &user.id).await;
        let rows = orders::Entity::find().all(&stack.db).await.expect("orders");
        assert_eq!(rows.len(), 20);
        for row in &rows {
            let last = OrderStatus::parse(&row.status).expect("status");
            assert_complete_history(&events, &row.id, last);
        }
        let cancelled = rows.iter().filter(|r| r.status == "CANCELLED").count();
        assert_eq!(cancelled, 3);
        stop.cancel();
        extra.await.expect("relay stops");
    })
    .await;
}

/// Six relays (as six workers would run) claim, publish, delete and, while JetStream keeps
/// refusing, release the same outbox rows at once: no deadlock between them (every
/// multi-row write locks its rows in one order, or skips those another relay is taking),
/// so no claim is left to expire and the outbox drains well within a claim's 15 s; every
/// event is stored once, in order. (Before the lock order, PostgreSQL broke deadlocks
/// between them and the outbox stayed stuck until claims expired: this test timed out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_relays_share_a_flapping_outbox_without_deadlock_or_stalled_claims() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("relays").await;
        stack.lift_order_rate(&user.id, 10_000).await;
        stack.wait_for_ticks("SBIN-EQ", 1).await;
        capture_order_events(&stack.client, false).await;
        // 120 orders (360 events) wait in the outbox.
        let placed = futures::future::join_all((0..8).map(|client| {
            let (stack, user) = (&stack, &user);
            async move {
                for i in 0..15 {
                    let order = market(&format!("flap-{client}-{i}"), "SBIN-EQ", 1);
                    let reply = stack.place(user, &order).await;
                    assert!(reply.ok, "{:?}", reply.error);
                }
            }
        }))
        .await;
        assert_eq!(placed.len(), 8);

        let stop = Shutdown::new();
        let relays: Vec<_> = (0..5)
            .map(|n| {
                let (js, db, stop) = (
                    jetstream::new(stack.client.clone()),
                    stack.db.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    Relay::new()
                        .run(js, db, format!("w-flap-{n}"), stop, Duration::from_secs(2))
                        .await;
                })
            })
            .collect();
        // JetStream stores and refuses by turns: relays publish, fail, release and claim
        // again, all at once.
        for _ in 0..8 {
            capture_order_events(&stack.client, true).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
            capture_order_events(&stack.client, false).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        capture_order_events(&stack.client, true).await;
        let started = std::time::Instant::now();
        eventually(Duration::from_secs(10), "an empty outbox", || async {
            let left = order_outbox::Entity::find().count(&stack.db).await.ok()?;
            (left == 0).then_some(())
        })
        .await;
        eprintln!(
            "outbox drained {:?} after JetStream came back",
            started.elapsed()
        );
        stop.cancel();
        for relay in relays {
            relay.await.expect("relay stops");
        }
        let events = order_events(&stack.client, &user.id).await;
        let rows = orders::Entity::find().all(&stack.db).await.expect("orders");
        assert_eq!(rows.len(), 120);
        for row in &rows {
            let last = OrderStatus::parse(&row.status).expect("status");
            assert_complete_history(&events, &row.id, last);
        }
        // No relay lost a statement to a deadlock (it would have logged the database's
        // error and retried).
        let deadlocked: Vec<String> = pinnacle_tests::logs::captured()
            .lines()
            .filter(|l| l.contains("outbox rows") && l.contains("deadlock"))
            .map(str::to_string)
            .collect();
        assert!(deadlocked.is_empty(), "{deadlocked:#?}");
    })
    .await;
}
