//! Orders placed by request-reply are stored, answered, and never duplicated.

use pinnacle_common::codec::Encoding;
use pinnacle_common::entities::orders;
use pinnacle_common::model::{OrderStatus, OrderType, Side};
use pinnacle_common::subjects::{self, verbs};
use pinnacle_tests::{audit_events, market, TestStack};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::each_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_order_is_filled_stored_and_answered() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let alice = stack.trader("alice").await;
        let ticks = stack.wait_for_ticks("SBIN-EQ", 2).await;
        // The price and trigger a MARKET order ignores are neither stored nor reported.
        let ignored = pinnacle_common::model::OrderRequest {
            price: Some(61_540),
            trigger_price: Some(60_880),
            ..market("ord-1", "SBIN-EQ", 10)
        };
        let reply = stack.place(&alice, &ignored).await;
        assert!(reply.ok, "{reply:?}");
        let order = reply.result.expect("result");
        assert_eq!(
            (order.price, order.trigger_price),
            (None, None),
            "{order:?}"
        );
        assert_eq!(order.status, OrderStatus::Filled);
        assert_eq!(order.filled_quantity, 10);
        let fill = order.average_price.expect("fill price");
        let lo = ticks.iter().map(|t| t.ltp).min().unwrap_or(0) - 1_000;
        assert!(fill > lo, "filled near the live price: {fill}");

        let row = orders::Entity::find_by_id(order.order_id.clone())
            .one(&stack.db)
            .await
            .expect("query")
            .expect("order stored");
        assert_eq!(row.user_id, alice.id);
        assert_eq!(row.client_order_id, "ord-1");
        assert_eq!(row.status, "FILLED");
        assert_eq!(row.average_price, Some(fill));
        assert_eq!((row.price, row.trigger_price), (None, None));
        assert_eq!(row.broker_order_id, order.broker_order_id);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_requests_get_json_replies() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let bob = stack.trader("bob").await;
        stack.wait_for_ticks("TCS-EQ", 2).await;
        let body = serde_json::json!({
            "client_order_id": "json-1", "exchange": "NSE", "symbol": "TCS-EQ",
            "side": "SELL", "order_type": "LIMIT", "quantity": 3, "price": 5, "product": "INTRADAY",
            "some_future_field": "ignored"
        });
        let reply = stack
            .request(
                subjects::order(&bob.id, verbs::PLACE),
                Some(&bob.token),
                Encoding::Json,
                serde_json::to_vec(&body).expect("json").into(),
            )
            .await;
        let content_type = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Content-Type"))
            .map(|v| v.as_str().to_string());
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let value: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
        assert_eq!(value["ok"], true, "{value}");
        assert_eq!(
            value["result"]["status"], "FILLED",
            "a sell limit at 0.05 is marketable (an intraday short)"
        );
        assert_eq!(value["result"]["client_order_id"], "json-1");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_are_case_insensitive() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("lowercase").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("authorization", format!("bearer {}", user.token).as_str());
        headers.insert("content-type", "application/json");
        let body = serde_json::json!({"client_order_id": "lc-1", "exchange": "NSE",
            "symbol": "SBIN-EQ", "side": "BUY", "order_type": "MARKET", "quantity": 2});
        let reply = stack
            .client
            .request_with_headers(
                subjects::order(&user.id, verbs::PLACE),
                headers,
                serde_json::to_vec(&body).expect("json").into(),
            )
            .await
            .expect("reply");
        let value: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
        assert_eq!(value["ok"], true, "{value}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_limit_order_stays_open() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let carol = stack.trader("carol").await;
        stack.wait_for_ticks("INFY-EQ", 2).await;
        let mut order = market("lim-1", "INFY-EQ", 5);
        order.order_type = OrderType::Limit;
        order.side = Side::Buy;
        order.price = Some(100); // ₹1: far below the market
        let reply = stack.place(&carol, &order).await;
        let result = reply.result.expect("accepted");
        assert_eq!(result.status, OrderStatus::Open);
        assert_eq!(result.filled_quantity, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_a_client_order_id_never_places_a_second_order() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let dave = stack.trader("dave").await;
        // Duplicates are requests too and count towards the per-second cap; this test is
        // about idempotency, so lift the cap.
        stack.lift_order_rate(&dave.id, 10_000).await;
        stack.wait_for_ticks("RELIANCE-EQ", 2).await;
        let first = stack.place(&dave, &market("dup-1", "RELIANCE-EQ", 7)).await;
        let first = first.result.expect("first placed");
        let again = stack.place(&dave, &market("dup-1", "RELIANCE-EQ", 7)).await;
        assert_eq!(
            again.result.expect("replayed"),
            first,
            "same result, same order"
        );

        // Concurrent duplicates, racing each other through the worker.
        let order = market("dup-2", "RELIANCE-EQ", 1);
        let replies = futures::future::join_all((0..16).map(|_| stack.place(&dave, &order))).await;
        let ids: std::collections::HashSet<_> = replies
            .into_iter()
            .map(|r| r.result.expect("every duplicate gets the order").order_id)
            .collect();
        assert_eq!(ids.len(), 1, "one order id for all duplicates");
        let stored = stack.order_count(&dave.id).await;
        assert_eq!(stored, 2, "exactly one row per client order id");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_symbol_is_a_structured_error_and_is_replayed_the_same() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let erin = stack.trader("erin").await;
        let reply = stack
            .place(&erin, &market("unk-1", "NO-SUCH-SYMBOL", 1))
            .await;
        let error = reply.error.expect("error");
        assert_eq!(error.code.as_str(), "UNKNOWN_SYMBOL");
        let again = stack
            .place(&erin, &market("unk-1", "NO-SUCH-SYMBOL", 1))
            .await;
        assert_eq!(
            again.error.expect("same error").code.as_str(),
            "UNKNOWN_SYMBOL"
        );
        // Refused before anything was stored: nothing to replay, no credential touched.
        let stored = orders::Entity::find()
            .filter(orders::Column::ClientOrderId.eq("unk-1"))
            .count(&stack.db)
            .await
            .expect("count");
        assert_eq!(stored, 0);
        assert!(audit_events(&stack.client, &erin.id)
            .await
            .iter()
            .all(|(e, _)| e.purpose != "order.place"));
    })
    .await;
}

/// Sends a place with `deadline` as its `Pinnacle-Deadline` header.
async fn place_with_deadline(
    stack: &TestStack,
    user: &pinnacle_tests::TestUser,
    client_order_id: &str,
    deadline: &str,
) -> pinnacle_common::model::Reply<pinnacle_common::model::OrderReply> {
    let mut hdrs = async_nats::HeaderMap::new();
    hdrs.insert(
        subjects::headers::AUTHORIZATION,
        format!("Bearer {}", user.token).as_str(),
    );
    hdrs.insert(subjects::headers::DEADLINE, deadline);
    let payload = Encoding::MsgPack
        .encode(&market(client_order_id, "SBIN-EQ", 1))
        .expect("encode");
    let reply = stack
        .client
        .request_with_headers(subjects::order(&user.id, verbs::PLACE), hdrs, payload)
        .await
        .expect("reply");
    Encoding::MsgPack.decode(&reply.payload).expect("decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_refused_before_any_credential_is_touched() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let dana = stack.trader("deadline").await;
        stack.wait_for_ticks("SBIN-EQ", 1).await;
        let now = chrono::Utc::now().timestamp_millis();

        let late = place_with_deadline(&stack, &dana, "late-1", &(now - 1_000).to_string()).await;
        assert_eq!(
            late.error.expect("refused").code.as_str(),
            "DEADLINE_EXCEEDED"
        );
        let bad = place_with_deadline(&stack, &dana, "late-2", "tomorrow").await;
        assert_eq!(bad.error.expect("refused").code.as_str(), "INVALID_REQUEST");
        for id in ["late-1", "late-2"] {
            let stored = orders::Entity::find()
                .filter(orders::Column::ClientOrderId.eq(id))
                .count(&stack.db)
                .await
                .expect("count");
            assert_eq!(stored, 0, "{id} was stored");
        }
        assert!(
            audit_events(&stack.client, &dana.id)
                .await
                .iter()
                .all(|(e, _)| e.purpose != "order.place"),
            "a late request touched credentials"
        );

        // In time, and retried under the same id after the late attempt: placed once.
        let on_time =
            place_with_deadline(&stack, &dana, "late-1", &(now + 30_000).to_string()).await;
        assert!(on_time.ok, "{:?}", on_time.error);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passes_while_the_database_stalls_is_answered_then_and_nothing_is_done() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let dana = stack.trader("stalled").await;
        stack.wait_for_ticks("SBIN-EQ", 1).await;
        let in_secs =
            |secs: i64| (chrono::Utc::now().timestamp_millis() + secs * 1_000).to_string();
        // A first order, in time: the token, the account and the limits are known.
        let first = place_with_deadline(&stack, &dana, "stall-0", &in_secs(30)).await;
        assert!(first.ok, "{:?}", first.error);

        // The database stalls (SQLite's write lock, or `orders` locked on PostgreSQL):
        // the order waits short of its credentials, and its deadline comes first.
        let lock = pinnacle_tests::lock_database(stack.db_url()).await;
        let sent = std::time::Instant::now();
        let late = place_with_deadline(&stack, &dana, "stall-1", &in_secs(1)).await;
        let waited = sent.elapsed();
        lock.release().await;
        let error = late.error.expect("refused");
        assert_eq!(error.code.as_str(), "DEADLINE_EXCEEDED", "{error:?}");
        assert!(
            waited < std::time::Duration::from_secs(3),
            "answered {waited:?} after it was sent, not at its deadline"
        );
        let placed_events = || async {
            audit_events(&stack.client, &dana.id)
                .await
                .iter()
                .filter(|(e, _)| e.purpose == "order.place")
                .count()
        };
        assert_eq!(
            placed_events().await,
            1,
            "the late request touched credentials"
        );
        let stored = orders::Entity::find()
            .filter(orders::Column::ClientOrderId.eq("stall-1"))
            .count(&stack.db)
            .await
            .expect("count");
        assert_eq!(stored, 0, "the late request stored an order");

        // Resent with a fresh deadline once the database serves: placed, once.
        let resent = place_with_deadline(&stack, &dana, "stall-1", &in_secs(30)).await;
        assert!(resent.ok, "{:?}", resent.error);
        assert_eq!(stack.order_count(&dana.id).await, 2);
        assert_eq!(placed_events().await, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopping_mid_flight_loses_and_duplicates_nothing() {
    each_backend(|backend| async move {
        let mut stack = TestStack::start(backend).await;
        let fay = stack.trader("fay").await;
        stack.lift_order_rate(&fay.id, 10_000).await;
        // A second worker in the same queue group, as in a scaled-out deployment.
        let (mut survivor, survivor_stop) =
            stack.second_worker(pinnacle_tests::worker_settings()).await;
        stack.wait_for_ticks("SBIN-EQ", 3).await;

        // A well-behaved client: on timeout or "no responders", resend the same client order id.
        let send = |i: usize| {
            let client = stack.client.clone();
            let token = fay.token.clone();
            let subject = subjects::order(&fay.id, verbs::PLACE);
            async move {
                let payload = Encoding::MsgPack
                    .encode(&market(&format!("drain-{i}"), "SBIN-EQ", 1))
                    .expect("encode");
                for _attempt in 0..10 {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Authorization", format!("Bearer {token}").as_str());
                    let request =
                        client.request_with_headers(subject.clone(), headers, payload.clone());
                    match tokio::time::timeout(std::time::Duration::from_secs(2), request).await {
                        Ok(Ok(reply)) => {
                            let reply: pinnacle_common::model::Reply<
                                pinnacle_common::model::OrderReply,
                            > = Encoding::MsgPack
                                .decode(&reply.payload)
                                .expect("reply decodes");
                            return reply.result.expect("order placed").order_id;
                        }
                        Ok(Err(_)) | Err(_) => continue,
                    }
                }
                panic!("request drain-{i} never answered");
            }
        };
        let requests: Vec<_> = (0..64).map(|i| tokio::spawn(send(i))).collect();
        // Stop the stack's own worker while those requests are in flight.
        tokio::task::yield_now().await;
        stack.stop().await;
        let mut order_ids = std::collections::HashSet::new();
        for request in requests {
            order_ids.insert(request.await.expect("task"));
        }
        assert_eq!(
            order_ids.len(),
            64,
            "every request answered with its own order"
        );
        let stored = stack.order_count(&fay.id).await;
        assert_eq!(stored, 64, "no order lost, none duplicated");
        survivor_stop.cancel();
        while survivor.join_next().await.is_some() {}
    })
    .await;
}

/// Stores `client_order_id` for `user` as a worker that stopped mid-flight would leave it:
/// `SUBMITTED`, its broker outcome never recorded, its lease expired a minute ago.
async fn orphan(
    stack: &TestStack,
    user: &pinnacle_tests::TestUser,
    client_order_id: &str,
) -> String {
    use sea_orm::{ActiveModelTrait, Set};
    let account = stack.broker_account(&user.id).await;
    let then = chrono::Utc::now() - chrono::Duration::minutes(1);
    let id = uuid::Uuid::now_v7().to_string();
    orders::ActiveModel {
        id: Set(id.clone()),
        user_id: Set(user.id.clone()),
        broker_account_id: Set(account.id),
        client_order_id: Set(client_order_id.into()),
        exchange: Set("NSE".into()),
        symbol: Set("SBIN-EQ".into()),
        side: Set("BUY".into()),
        order_type: Set("MARKET".into()),
        quantity: Set(1),
        price: Set(None),
        trigger_price: Set(None),
        product: Set("DELIVERY".into()),
        status: Set("SUBMITTED".into()),
        filled_quantity: Set(0),
        average_price: Set(None),
        filled_value: Set(None),
        broker_order_id: Set(None),
        broker_unique_id: Set(None),
        reject_code: Set(None),
        reject_reason: Set(None),
        created_at: Set(then),
        updated_at: Set(then),
        // Its worker's lease ran out long ago.
        lease_owner: Set(Some("w-dead#1".into())),
        lease_until_ms: Set(Some(then.timestamp_millis() + 5_000)),
    }
    .insert(&stack.db)
    .await
    .expect("orphan stored");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_an_order_whose_worker_died_is_settled_by_asking_the_broker() {
    each_backend(|backend| async move {
        let stack = TestStack::start(backend).await;
        let user = stack.trader("orphaned").await;
        let id = orphan(&stack, &user, "crash-1").await;
        // The client never got an answer and retries: the broker is asked, nothing is re-sent.
        for _ in 0..2 {
            let reply = stack.place(&user, &market("crash-1", "SBIN-EQ", 1)).await;
            assert_eq!(reply.error.expect("settled").code.as_str(), "NOT_AT_BROKER");
        }
        let row = orders::Entity::find_by_id(id)
            .one(&stack.db)
            .await
            .expect("query")
            .expect("row");
        assert_eq!(row.status, "REJECTED");
        let purposes: Vec<_> = audit_events(&stack.client, &user.id)
            .await
            .into_iter()
            .map(|(e, _)| (e.purpose, e.actor))
            .filter(|(p, _)| p == "order.reconcile")
            .collect();
        assert_eq!(
            purposes,
            [(
                "order.reconcile".to_string(),
                "pinnacle-reconciler".to_string()
            )]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_settles_lost_outcomes_without_any_retry() {
    each_backend(|backend| async move {
        let stack = TestStack::start_with(backend, |s| s.worker.reconcile_interval_ms = 50).await;
        let user = stack.trader("swept").await;
        let id = orphan(&stack, &user, "crash-2").await;
        let status =
            pinnacle_tests::eventually(std::time::Duration::from_secs(10), "the sweep", || async {
                let row = orders::Entity::find_by_id(id.clone())
                    .one(&stack.db)
                    .await
                    .ok()??;
                (row.status != "SUBMITTED").then_some(row.status)
            })
            .await;
        assert_eq!(status, "REJECTED");
    })
    .await;
}
