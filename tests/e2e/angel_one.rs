//! Live Angel One accounts, end to end through NATS, the worker and the SmartAPI
//! simulator: one login per account, tags for idempotency, ambiguous replies looked up
//! instead of re-sent, session expiry and rate limits handled, order updates applied, and
//! the regulatory settings enforced.

use std::time::Duration;

use futures::StreamExt;
use pinnacle_common::subjects;
use pinnacle_smartapi::tag::order_tag;
use pinnacle_smartapi_sim::{Fault, SimOrder};
use pinnacle_tests::angel::{AngelStack, SBIN_TOKEN};
use pinnacle_tests::{eventually, logs, no_limits};
use serde_json::{json, Value};

use crate::each_backend;

fn result(reply: &Value) -> &Value {
    assert_eq!(reply["ok"], true, "{reply}");
    &reply["result"]
}

/// Waits until the order-update stream has filled `client_order_id`.
async fn wait_for_fill(
    stack: &pinnacle_tests::TestStack,
    user: &pinnacle_tests::TestUser,
    client_order_id: &str,
) {
    wait_for_status(stack, user, client_order_id, "FILLED").await;
}

/// Waits until the order is in `status` (reconciliation or the broker's updates moved it);
/// returns it.
async fn wait_for_status(
    stack: &pinnacle_tests::TestStack,
    user: &pinnacle_tests::TestUser,
    client_order_id: &str,
    status: &str,
) -> Value {
    eventually(
        Duration::from_secs(15),
        &format!("{client_order_id} {status}"),
        || async {
            let got = stack
                .call(user, "get", json!({"client_order_id": client_order_id}))
                .await;
            (got["result"]["status"] == status).then(|| got["result"].clone())
        },
    )
    .await
}

/// Asserts that `order` (as `get` answers it) was rejected with `reason` in its reason.
fn assert_rejected_because(order: &Value, reason: &str) {
    assert!(
        order["reject_reason"]
            .as_str()
            .is_some_and(|r| r.contains(reason)),
        "{order}"
    );
}

/// Waits until the order is `REJECTED`, and asserts the reason holds `reason`.
async fn ends_rejected_because(
    stack: &pinnacle_tests::TestStack,
    user: &pinnacle_tests::TestUser,
    client_order_id: &str,
    reason: &str,
) {
    let order = wait_for_status(stack, user, client_order_id, "REJECTED").await;
    assert_rejected_because(&order, reason);
}

/// A stack that gives up on a broker answer after 700 ms and settles a lost outcome within
/// a few hundred milliseconds.
async fn settling_stack(backend: pinnacle_tests::Backend) -> AngelStack {
    AngelStack::start_with(
        backend,
        |_| {},
        |s| {
            s.worker.smartapi_timeout_ms = 700;
            s.worker.reconcile_after_ms = 300;
            s.worker.reconcile_interval_ms = 100;
        },
    )
    .await
}

/// Like [`settling_stack`], with a 2 s lease (0.5 s grace) and SmartAPI requests that time
/// out after `smartapi_timeout_ms`.
async fn leased_stack(backend: pinnacle_tests::Backend, smartapi_timeout_ms: u64) -> AngelStack {
    AngelStack::start_with(
        backend,
        |_| {},
        |s| {
            s.worker.smartapi_timeout_ms = smartapi_timeout_ms;
            s.worker.lease_ms = 2_000;
            s.worker.lease_grace_ms = 500;
            s.worker.reconcile_after_ms = 300;
            s.worker.reconcile_interval_ms = 100;
        },
    )
    .await
}

/// The broker took the order: it is filled, or open while the broker fills it (the
/// order-update stream then records the fill).
fn assert_taken(reply: &Value) {
    let status = &result(reply)["status"];
    assert!(status == "FILLED" || status == "OPEN", "{reply}");
}

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "{reply}");
    reply["error"]["code"].as_str().expect("code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_orders_reach_the_broker_once_with_one_login_and_follow_its_updates() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("live", 1, json!({})).await;
        let cc = account.client_code.as_str();
        let (fills, rests) = angel.prices();
        let mut events = stack
            .client
            .subscribe(subjects::order_events(&user.id))
            .await
            .expect("subscribe events");

        // A marketable limit fills; the broker got Pinnacle's tag from our static IP. The
        // trigger price a LIMIT order ignores is neither sent nor stored.
        let mut b1 = AngelStack::limit("b-1", "BUY", 5, fills);
        b1["trigger_price"] = json!(fills - 100);
        let filled = stack.call(&user, "place", b1).await;
        // Place is one request whose reply has no state: OPEN, then the order-update
        // stream records the fill.
        assert_taken(&filled);
        wait_for_fill(stack, &user, "b-1").await;
        let filled = stack
            .call(&user, "get", json!({"client_order_id": "b-1"}))
            .await;
        let filled = result(&filled).clone();
        let order_id = filled["order_id"].as_str().expect("id").to_string();
        let at_broker = angel.sim.orders(cc);
        assert_eq!(at_broker.len(), 1);
        assert_eq!(at_broker[0].ordertag, order_tag(&order_id));
        assert_eq!(at_broker[0].trigger_price_paise, 0, "{:?}", at_broker[0]);
        assert_eq!(filled["trigger_price"], Value::Null, "{filled}");
        assert_eq!(at_broker[0].source_ip.to_string(), "127.0.0.1");
        assert_eq!(filled["broker_order_id"], at_broker[0].orderid.as_str());
        let placed = angel
            .sim
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/placeOrder"))
            .expect("placeOrder seen");
        assert_eq!(placed.headers.get("x-privatekey"), Some(&account.api_key));
        assert_eq!(
            placed.headers.get("x-usertype").map(String::as_str),
            Some("USER")
        );
        assert_eq!(
            placed.headers.get("x-sourceid").map(String::as_str),
            Some("WEB")
        );
        assert!(placed
            .headers
            .get("authorization")
            .is_some_and(|a| a.starts_with("Bearer ")));

        // The session was stored encrypted (and audited), so the next order logs in no more.
        let row = stack.broker_account(&user.id).await;
        assert!(row.jwt_token_enc.is_some() && row.session_expires_at.is_some());
        let stored = row.jwt_token_enc.clone().expect("jwt");
        assert!(!stored.contains("eyJ"), "the JWT is stored encrypted");
        let resting = stack
            .call(&user, "place", AngelStack::limit("b-2", "BUY", 5, rests))
            .await;
        assert_eq!(result(&resting)["status"], "OPEN", "{resting}");
        assert_eq!(angel.sim.login_count(cc), 1);

        // The price falls through the resting buy: the order-update socket fills it.
        angel.sim.set_ltp("NSE", SBIN_TOKEN, rests - 100);
        wait_for_fill(stack, &user, "b-2").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let message = tokio::time::timeout_at(deadline, events.next())
                .await
                .expect("a FILLED event for b-2")
                .expect("event stream open");
            let event: Value = pinnacle_common::codec::Encoding::MsgPack
                .decode(&message.payload)
                .expect("event decodes");
            if event["order"]["client_order_id"] == "b-2" && event["order"]["status"] == "FILLED" {
                break;
            }
        }

        // Cancel a resting sell; the books come from the broker.
        let sell = stack
            .call(
                &user,
                "place",
                AngelStack::limit("s-1", "SELL", 1, fills * 3),
            )
            .await;
        assert_eq!(result(&sell)["status"], "OPEN", "{sell}");
        let cancelled = stack
            .call(&user, "cancel", json!({"client_order_id": "s-1"}))
            .await;
        assert_eq!(result(&cancelled)["status"], "CANCELLED", "{cancelled}");
        let positions = stack.call(&user, "positions", json!({})).await;
        let position = &result(&positions)["positions"][0];
        assert_eq!(position["symbol"], "SBIN-EQ", "{positions}");
        assert_eq!(position["net_quantity"], 10);
        let funds = stack.call(&user, "funds", json!({})).await;
        assert!(result(&funds)["cash"].as_i64().is_some(), "{funds}");
        let trades = stack.call(&user, "trades", json!({})).await;
        assert_eq!(
            result(&trades)["trades"].as_array().map(Vec::len),
            Some(2),
            "{trades}"
        );

        // No credential reached a log line.
        let log = logs::captured();
        // (The 4-digit PIN is too short to search for; the others are distinctive.)
        for (name, secret) in [
            ("totp_seed", &account.totp_seed),
            ("api_key", &account.api_key),
        ] {
            assert!(!log.contains(secret.as_str()), "the {name} was logged");
        }
        assert!(!log.contains("eyJ"), "a session token was logged");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_replies_are_looked_up_by_tag_and_never_sent_twice() {
    each_backend(|backend| async move {
        let angel =
            AngelStack::start_with(backend, |_| {}, |s| s.worker.smartapi_timeout_ms = 700).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("ambiguous", 2, json!({})).await;
        let cc = account.client_code.as_str();
        let (fills, _) = angel.prices();

        // The broker takes the order but answers too late: found by its tag.
        angel.sim.inject(Fault::SlowReply {
            route: "placeOrder".into(),
            delay: Duration::from_millis(2_000),
            times: 1,
        });
        let slow = stack
            .call(&user, "place", AngelStack::limit("slow", "BUY", 1, fills))
            .await;
        assert_taken(&slow);
        assert_eq!(angel.sim.orders(cc).len(), 1);

        // An empty body after the order was taken: the same.
        angel.sim.inject(Fault::EmptyBody {
            route: "placeOrder".into(),
            status: 200,
            times: 1,
        });
        let empty = stack
            .call(&user, "place", AngelStack::limit("empty", "BUY", 1, fills))
            .await;
        assert_taken(&empty);
        assert_eq!(angel.sim.orders(cc).len(), 2);

        // Retrying either client order id is answered from Pinnacle, not re-sent.
        for id in ["slow", "empty"] {
            let again = stack
                .call(&user, "place", AngelStack::limit(id, "BUY", 1, fills))
                .await;
            assert_taken(&again);
        }
        assert_eq!(angel.sim.orders(cc).len(), 2);
        let tags: Vec<String> = angel
            .sim
            .orders(cc)
            .into_iter()
            .map(|o| o.ordertag)
            .collect();
        assert_eq!(tags.len(), 2);
        assert_ne!(tags[0], tags[1]);
    })
    .await;
}

/// A modify the broker applied but answered too late is `UNKNOWN`; reconciliation then
/// records the terms the broker holds, so the order is not left on its old quantity and
/// price (from which a later modify would silently undo the broker's change). A modify
/// that never reached the broker leaves the old terms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modify_whose_answer_was_lost_is_settled_with_the_terms_the_broker_holds() {
    each_backend(|backend| async move {
        let angel = settling_stack(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("lostmodify", 7, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        let placed = stack
            .call(&user, "place", AngelStack::limit("lm-1", "BUY", 1, rests))
            .await;
        assert_eq!(result(&placed)["status"], "OPEN", "{placed}");

        // Applied at the broker, answered after Pinnacle gave up waiting.
        angel.sim.inject(Fault::SlowReply {
            route: "modifyOrder".into(),
            delay: Duration::from_millis(2_000),
            times: 1,
        });
        let price = rests - 100;
        let modified = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "lm-1", "quantity": 4, "price": price}),
            )
            .await;
        assert_ne!(result(&modified)["status"], "OPEN", "{modified}");
        let order = at_broker(&angel, cc, &placed);
        assert_eq!((order.quantity, order.price_paise), (4, price));
        let settled = wait_for_status(stack, &user, "lm-1", "OPEN").await;
        assert_eq!(
            (&settled["quantity"], &settled["price"]),
            (&json!(4), &json!(price)),
            "Pinnacle's record must be the broker's: {settled}"
        );

        // A later price-only modify keeps the broker's quantity.
        let later = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "lm-1", "price": price - 100}),
            )
            .await;
        assert_eq!(result(&later)["quantity"], 4, "{later}");
        let order = at_broker(&angel, cc, &placed);
        assert_eq!((order.quantity, order.price_paise), (4, price - 100));

        // A modify the broker never received: settled on the terms it still holds.
        angel.sim.inject(Fault::Unanswered {
            route: "modifyOrder".into(),
            delay: Duration::from_millis(1_500),
            times: 1,
        });
        let unanswered = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "lm-1", "quantity": 6}),
            )
            .await;
        assert_ne!(result(&unanswered)["quantity"], 6, "{unanswered}");
        let settled = wait_for_status(stack, &user, "lm-1", "OPEN").await;
        assert_eq!(
            (&settled["quantity"], &settled["price"]),
            (&json!(4), &json!(price - 100)),
            "{settled}"
        );
        let order = at_broker(&angel, cc, &placed);
        assert_eq!((order.quantity, order.price_paise), (4, price - 100));
    })
    .await;
}

/// An order-update socket that stays open but delivers nothing is noticed by nothing but
/// the order-book sweep: every `order_book_sweep_ms` a worker reads the book of each
/// account with working orders, so fills at the broker reach Pinnacle (and
/// `ORDER_EVENTS`) without a reconnect. Once no order works, the sweep reads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_on_a_silent_order_update_socket_are_found_by_the_order_book_sweep() {
    each_backend(|backend| async move {
        let angel =
            AngelStack::start_with(backend, |_| {}, |s| s.worker.order_book_sweep_ms = 500).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("silent", 37, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        let ids = ["silent-1", "silent-2"];
        for id in ids {
            let placed = stack
                .call(&user, "place", AngelStack::limit(id, "BUY", 2, rests))
                .await;
            assert_eq!(result(&placed)["status"], "OPEN", "{placed}");
        }

        // The socket stays connected and goes silent; both orders fill at the broker.
        angel.sim.mute_order_updates(true);
        angel.sim.set_ltp("NSE", SBIN_TOKEN, rests - 100);
        assert!(angel.sim.orders(cc).iter().all(|o| o.status == "complete"));
        for id in ids {
            let filled = wait_for_status(stack, &user, id, "FILLED").await;
            assert_eq!(filled["filled_quantity"], 2, "{filled}");
        }
        let [first, second] = event_paths(stack, &user, ids, "FILLED").await;
        for path in [first, second] {
            assert_eq!(path, ["NEW", "SUBMITTED", "OPEN", "FILLED"]);
        }

        // Nothing works any more: the sweep reads no book.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mark = angel.sim.requests().len();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let routes = routes_since(&angel, cc, mark);
        assert!(
            !routes.iter().any(|r| r == "getOrderBook"),
            "no working order, no order-book read: {routes:?}"
        );
        angel.sim.mute_order_updates(false);
    })
    .await;
}

/// Fills at the broker reach Pinnacle with nobody sending a request: after every worker
/// restarted (nothing in memory follows the account's socket any more), and after the
/// broker revoked the session the socket used. Each worker reads the order book of an
/// account with working orders whose socket it does not follow, renewing the session on
/// the way, and so starts following it again (`angel::watch`). Reading an order (`get`)
/// never touches the broker, so the polling here heals nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_reach_pinnacle_after_a_restart_and_a_revoked_session_with_no_request() {
    each_backend(|backend| async move {
        let mut angel =
            AngelStack::start_with(backend, |_| {}, |s| s.worker.order_book_sweep_ms = 500).await;
        let (user, account) = angel.angel_trader("unwatched", 41, json!({})).await;
        let cc = account.client_code.clone();
        let (_, rests) = angel.prices();
        let lower = (rests * 4 / 5) / 5 * 5;
        for (id, price) in [("uw-1", rests), ("uw-2", lower)] {
            let placed = angel
                .stack
                .call(&user, "place", AngelStack::limit(id, "BUY", 2, price))
                .await;
            assert_eq!(result(&placed)["status"], "OPEN", "{placed}");
        }

        // Every worker restarts; then the first order fills at the broker.
        angel.stack.restart().await;
        angel.sim.set_ltp("NSE", SBIN_TOKEN, (rests + lower) / 2);
        let filled = wait_for_status(&angel.stack, &user, "uw-1", "FILLED").await;
        assert_eq!(filled["filled_quantity"], 2, "{filled}");

        // The broker revokes the session and drops the sockets; the second order fills.
        angel.sim.revoke_session(&cc);
        angel.sim.drop_sockets();
        angel.sim.set_ltp("NSE", SBIN_TOKEN, lower - 100);
        let filled = wait_for_status(&angel.stack, &user, "uw-2", "FILLED").await;
        assert_eq!(filled["filled_quantity"], 2, "{filled}");
        let at_broker: Vec<_> = angel
            .sim
            .orders(&cc)
            .into_iter()
            .map(|o| o.status)
            .collect();
        assert_eq!(at_broker, ["complete", "complete"]);
    })
    .await;
}

/// A modify whose answer was lost leaves the order `UNKNOWN`; the order-book catch-up after
/// a reconnect may then deliver a record read before the modify (the book is slow to
/// answer, and the modify lands meanwhile). That record must not settle the order on its
/// old quantity: the order is no longer in flight, so nothing would ever correct it.
/// Reconciliation settles it from the broker's own answer, on the new quantity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_modify_is_never_settled_by_a_record_from_before_it() {
    each_backend(|backend| async move {
        let angel = AngelStack::start_with(
            backend,
            |_| {},
            |s| {
                s.worker.reconcile_after_ms = 4_000;
                s.worker.reconcile_interval_ms = 200;
            },
        )
        .await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("stalebook", 31, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        let placed = stack
            .call(&user, "place", AngelStack::limit("sb-1", "BUY", 2, rests))
            .await;
        assert_eq!(result(&placed)["status"], "OPEN", "{placed}");

        // The reconnect's catch-up reads the book now, and is answered 2 s later.
        angel.sim.inject(Fault::SlowReply {
            route: "getOrderBook".into(),
            delay: Duration::from_millis(2_000),
            times: 4,
        });
        let requests_before = angel.sim.requests().len();
        angel.sim.drop_sockets();
        eventually(
            Duration::from_secs(5),
            "the catch-up's book request",
            || async {
                routes_since(&angel, cc, requests_before)
                    .iter()
                    .any(|r| r == "getOrderBook")
                    .then_some(())
            },
        )
        .await;
        // Meanwhile the modify is applied at the broker, and its details are lost.
        angel.sim.inject(Fault::EmptyBody {
            route: "details".into(),
            status: 500,
            times: 1,
        });
        let modified = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "sb-1", "quantity": 5}),
            )
            .await;
        assert_eq!(result(&modified)["status"], "UNKNOWN", "{modified}");
        assert_eq!(at_broker(&angel, cc, &placed).quantity, 5);

        let settled = wait_for_status(stack, &user, "sb-1", "OPEN").await;
        assert_eq!(settled["quantity"], 5, "the broker's quantity: {settled}");
        // The row is settled before the relay stores its event: wait for that event too.
        let after_unknown = eventually(Duration::from_secs(10), "the OPEN event", || async {
            let events = pinnacle_tests::order_events(&stack.client, &user.id).await;
            let path: Vec<_> = events
                .iter()
                .filter(|e| e.order.client_order_id == "sb-1")
                .skip_while(|e| e.order.status.as_str() != "UNKNOWN")
                .map(|e| (e.order.status.as_str().to_string(), e.order.quantity))
                .collect();
            (path.last().is_some_and(|(status, _)| status == "OPEN")).then_some(path)
        })
        .await;
        assert_eq!(
            after_unknown,
            [("UNKNOWN".to_string(), 2), ("OPEN".to_string(), 5)],
            "never back to the old quantity"
        );
    })
    .await;
}

/// A place the broker never received (the request is held, then refused without being
/// processed) is `UNKNOWN` until reconciliation finds no such order at the broker, then
/// `REJECTED` / `NOT_AT_BROKER`, which is true: the simulator's book has no order, and a
/// retry of the same client order id replays the rejection without sending anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_place_that_never_reached_the_broker_is_settled_as_not_at_broker() {
    each_backend(|backend| async move {
        let angel = settling_stack(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("unanswered", 9, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        // A first order logs in, so the fault meets the place itself.
        let first = stack
            .call(&user, "place", AngelStack::limit("na-0", "BUY", 1, rests))
            .await;
        assert_eq!(result(&first)["status"], "OPEN", "{first}");
        angel.sim.inject(Fault::Unanswered {
            route: "placeOrder".into(),
            delay: Duration::from_millis(1_500),
            times: 1,
        });
        let lost = stack
            .call(&user, "place", AngelStack::limit("na-1", "BUY", 1, rests))
            .await;
        assert!(
            lost["ok"] == false || result(&lost)["status"] == "UNKNOWN",
            "{lost}"
        );
        ends_rejected_because(stack, &user, "na-1", "nothing was placed").await;
        assert_eq!(
            angel.sim.orders(cc).len(),
            1,
            "only the first order is at the broker"
        );
        let places = || {
            angel
                .sim
                .requests()
                .iter()
                .filter(|r| r.path.ends_with("/placeOrder"))
                .count()
        };
        let sent = places();
        let again = stack
            .call(&user, "place", AngelStack::limit("na-1", "BUY", 1, rests))
            .await;
        // A retry is answered with the stored rejection, as its error.
        assert_eq!(again["error"]["code"], "NOT_AT_BROKER", "{again}");
        assert_eq!(places(), sent, "a retry sends nothing");
    })
    .await;
}

/// An order placed while the order-update socket is down is read once from its details.
/// When they cannot be read, the order is `UNKNOWN` with the ids the broker's
/// acknowledgement named, and reconciliation (or the stream's catch-up) settles it as the
/// broker has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_order_whose_details_fail_keeps_the_brokers_ids_until_settled() {
    each_backend(|backend| async move {
        use pinnacle_common::entities::orders;
        use sea_orm::EntityTrait;

        let angel = settling_stack(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("firstread", 37, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        go_live(&angel, &user, cc, "fr-0").await;
        angel.sim.inject(went_wrong_once("details"));
        // The socket reconnects 250 ms after a drop at the soonest: an order placed at once
        // is not covered by it (tried again in the rare case it was).
        let mut placed = Value::Null;
        for attempt in 1..=5 {
            angel.sim.drop_sockets();
            let id = format!("fr-{attempt}");
            placed = stack
                .call(&user, "place", AngelStack::limit(&id, "BUY", 1, rests))
                .await;
            if result(&placed)["status"] == "UNKNOWN" {
                break;
            }
        }
        assert_eq!(result(&placed)["status"], "UNKNOWN", "{placed}");
        let id = result(&placed)["client_order_id"].as_str().expect("id");
        let at_broker = angel
            .sim
            .orders(cc)
            .into_iter()
            .find(|o| o.ordertag == order_tag(result(&placed)["order_id"].as_str().expect("id")))
            .expect("the broker has the order");
        let row = orders::Entity::find_by_id(result(&placed)["order_id"].as_str().expect("id"))
            .one(&stack.db)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(
            (row.broker_order_id, row.broker_unique_id),
            (Some(at_broker.orderid), Some(at_broker.uniqueorderid))
        );
        wait_for_status(stack, &user, id, "OPEN").await;
        let sent = angel.sim.orders(cc);
        let placed = sent.iter().filter(|o| o.ordertag == at_broker.ordertag);
        assert_eq!(placed.count(), 1, "nothing sent twice");
    })
    .await;
}

/// An order the broker acknowledged (its ids are stored) that reconciliation can find
/// neither by its details nor in the order book stays `UNKNOWN`: the broker had it, so "not
/// at the broker" would be false. It is asked about again, less often the longer it stays
/// unreadable. (The row is written here: the simulator never loses an order it
/// acknowledged.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_broker_acknowledged_is_never_settled_as_not_at_broker() {
    each_backend(|backend| async move {
        use pinnacle_common::entities::orders;
        use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel};

        let angel = leased_stack(backend, 700).await;
        let stack = &angel.stack;
        let (user, _) = angel.angel_trader("acked", 35, json!({})).await;
        let (_, rests) = angel.prices();
        let placed = stack
            .call(
                &user,
                "place",
                AngelStack::limit("acked-1", "BUY", 1, rests),
            )
            .await;
        assert_eq!(result(&placed)["status"], "OPEN", "{placed}");
        let row = orders::Entity::find_by_id(result(&placed)["order_id"].as_str().expect("id"))
            .one(&stack.db)
            .await
            .expect("read")
            .expect("stored");
        let lost_id = uuid::Uuid::now_v7().to_string();
        let unique_id = uuid::Uuid::new_v4().to_string();
        // Unsettled for 40 s already: after a lookup that finds nothing, the next one waits
        // a quarter of that (10 s), not a lease and its grace (2.5 s).
        let lost = orders::Model {
            id: lost_id.clone(),
            client_order_id: "acked-lost".into(),
            status: "UNKNOWN".into(),
            broker_order_id: Some("261207999999999".into()),
            broker_unique_id: Some(unique_id.clone()),
            lease_owner: None,
            lease_until_ms: None,
            updated_at: chrono::Utc::now() - chrono::Duration::seconds(40),
            ..row
        };
        lost.into_active_model()
            .reset_all()
            .insert(&stack.db)
            .await
            .expect("insert the lost order");

        // Reconciliation asks the broker (details, then the order book), and again later…
        let lookups = || {
            angel
                .sim
                .requests()
                .iter()
                .filter(|r| r.path.ends_with(&format!("/details/{unique_id}")))
                .count()
        };
        eventually(Duration::from_secs(10), "a first lookup", || async {
            (lookups() >= 1).then_some(())
        })
        .await;
        let first = std::time::Instant::now();
        eventually(Duration::from_secs(20), "a second lookup", || async {
            (lookups() >= 2).then_some(())
        })
        .await;
        let apart = first.elapsed();
        assert!(
            apart >= Duration::from_secs(8),
            "the second lookup waits a quarter of the time unsettled: {apart:?}"
        );
        // …and never concludes that the order is not at the broker.
        let got = stack
            .call(&user, "get", json!({"client_order_id": "acked-lost"}))
            .await;
        assert_eq!(result(&got)["status"], "UNKNOWN", "{got}");
    })
    .await;
}

/// An order settled as `NOT_AT_BROKER` whose request reached the broker after all (held on
/// the way past its worker's lease and grace) is reported loudly when the broker's update
/// arrives: an error log line and the alerting metric. Its record stays final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_update_for_an_order_settled_as_not_at_broker_is_alerted() {
    use pinnacle_common::entities::orders;
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};

    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, _) = angel.angel_trader("late", 8, json!({})).await;
        let (_, rests) = angel.prices();
        let placed = stack
            .call(&user, "place", AngelStack::limit("late-1", "BUY", 1, rests))
            .await;
        assert_eq!(result(&placed)["status"], "OPEN", "{placed}");
        eventually(
            Duration::from_secs(5),
            "the order-update socket connects",
            || async { (angel.sim.order_connections() >= 1).then_some(()) },
        )
        .await;
        // As reconciliation leaves an order whose request had not yet arrived.
        let order_id = result(&placed)["order_id"]
            .as_str()
            .expect("id")
            .to_string();
        let row = orders::Entity::find_by_id(order_id.clone())
            .one(&stack.db)
            .await
            .expect("read")
            .expect("stored");
        let mut settled: orders::ActiveModel = row.into();
        settled.status = Set("REJECTED".into());
        settled.reject_code = Set(Some("NOT_AT_BROKER".into()));
        settled.reject_reason = Set(Some("the broker has no such order".into()));
        settled.broker_order_id = Set(None);
        settled.update(&stack.db).await.expect("settled");
        let counter = || {
            pinnacle_common::metrics::metrics()
                .orders_found_after_not_at_broker
                .get()
        };
        let before = counter();

        // The order fills at the broker; its update names the order by its tag.
        angel.sim.set_ltp("NSE", SBIN_TOKEN, rests - 100);
        eventually(Duration::from_secs(10), "the alert", || async {
            (counter() > before).then_some(())
        })
        .await;
        let log = logs::captured();
        assert!(
            log.lines()
                .any(|l| l.contains("settled as NOT_AT_BROKER is at the broker")
                    && l.contains(&order_id)),
            "no error line naming the order"
        );
        let got = stack
            .call(&user, "get", json!({"client_order_id": "late-1"}))
            .await;
        assert_eq!(result(&got)["status"], "REJECTED", "{got}");
        assert_eq!(
            result(&got)["broker_order_id"],
            result(&placed)["broker_order_id"],
            "the broker's id is recorded: {got}"
        );

        // Once per order: the record seen again (the catch-up from the order book after a
        // reconnect, then later updates) is not reported again.
        angel.sim.drop_sockets();
        eventually(
            Duration::from_secs(10),
            "the order-update socket reconnects",
            || async { (angel.sim.order_connections() >= 1).then_some(()) },
        )
        .await;
        let (fills, _) = angel.prices();
        let next = stack
            .call(&user, "place", AngelStack::limit("late-2", "BUY", 1, fills))
            .await;
        assert_taken(&next);
        wait_for_fill(stack, &user, "late-2").await;
        assert_eq!(counter(), before + 1, "reported once");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_session_expiry_and_broker_errors() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("faults", 3, json!({})).await;
        let cc = account.client_code.as_str();
        let (fills, _) = angel.prices();

        // The broker's plain-text 403 was not processed: Pinnacle waits and sends it again.
        angel.sim.inject(Fault::RateLimited {
            route: "placeOrder".into(),
            times: 1,
        });
        let limited = stack
            .call(&user, "place", AngelStack::limit("rl", "BUY", 1, fills))
            .await;
        assert_taken(&limited);
        assert_eq!(angel.sim.orders(cc).len(), 1);

        // AG8001: the session is refreshed, not logged in again.
        angel.sim.expire_session(cc);
        let expired = stack
            .call(&user, "place", AngelStack::limit("exp", "BUY", 1, fills))
            .await;
        assert_taken(&expired);
        assert_eq!(angel.sim.login_count(cc), 1);
        assert!(angel
            .sim
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/generateTokens")));

        // Refresh token dead too: one new login.
        angel.sim.revoke_session(cc);
        let revoked = stack
            .call(&user, "place", AngelStack::limit("rev", "BUY", 1, fills))
            .await;
        assert_taken(&revoked);
        assert_eq!(angel.sim.login_count(cc), 2);
        assert_eq!(angel.sim.orders(cc).len(), 3);

        // A business error is a clear rejection naming the broker's code.
        angel.sim.inject(Fault::BusinessError {
            route: "placeOrder".into(),
            code: "AB1012".into(),
            message: "Invalid Product Type".into(),
            times: 1,
        });
        let refused = stack
            .call(&user, "place", AngelStack::limit("bad", "BUY", 1, fills))
            .await;
        assert_eq!(error_code(&refused), "BROKER_REJECTED", "{refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("AB1012")),
            "{refused}"
        );
        let stored = stack
            .call(&user, "get", json!({"client_order_id": "bad"}))
            .await;
        assert_eq!(result(&stored)["status"], "REJECTED", "{stored}");
        assert_eq!(angel.sim.orders(cc).len(), 3);
    })
    .await;
}

/// What can refuse an order before it is sent (no session can be had, the rate limit) is
/// asked before the order is stored: the refusal is retryable and leaves nothing, so the
/// same client order id is placed when resent. A refusal that still comes after the
/// insert (the broker's own 403, three times) is a stored verdict whose code does not
/// invite a resend of the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_send_stores_nothing_and_the_resend_is_placed() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("admit", 5, json!({})).await;
        let cc = account.client_code.as_str();
        let (fills, _) = angel.prices();
        assert_eq!(
            angel.sim.login_count(cc),
            0,
            "no session before the first order"
        );

        // The login cannot be had: nothing is stored or sent.
        angel.sim.inject(Fault::EmptyBody {
            route: "loginByPassword".into(),
            status: 502,
            times: 10,
        });
        let order = AngelStack::limit("first", "BUY", 1, fills);
        let refused = stack.call(&user, "place", order.clone()).await;
        assert_eq!(error_code(&refused), "BROKER_UNAVAILABLE", "{refused}");
        let stored = stack
            .call(&user, "get", json!({"client_order_id": "first"}))
            .await;
        assert_eq!(error_code(&stored), "NOT_FOUND", "{stored}");
        assert!(angel.sim.orders(cc).is_empty());

        // Once the broker answers, the same request is placed, once.
        angel.sim.clear_faults();
        let placed = stack.call(&user, "place", order.clone()).await;
        assert_taken(&placed);
        let order_id = result(&placed)["order_id"]
            .as_str()
            .expect("order id")
            .to_string();
        let again = stack.call(&user, "place", order).await;
        assert_eq!(result(&again)["order_id"], order_id.as_str(), "{again}");
        let tag = order_tag(&order_id);
        assert_eq!(
            angel
                .sim
                .orders(cc)
                .iter()
                .filter(|o| o.ordertag == tag)
                .count(),
            1
        );

        // The broker's 403 outlasts the retries: refused after the insert, so stored as a
        // rejection, and not under the retryable RATE_LIMITED.
        angel.sim.inject(Fault::RateLimited {
            route: "placeOrder".into(),
            times: 3,
        });
        let order = AngelStack::limit("limited", "BUY", 1, fills);
        let limited = stack.call(&user, "place", order.clone()).await;
        assert_eq!(error_code(&limited), "BROKER_REJECTED", "{limited}");
        let message = limited["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("nothing was placed"), "{limited}");
        let replayed = stack.call(&user, "place", order).await;
        assert_eq!(error_code(&replayed), "BROKER_REJECTED", "{replayed}");
        let stored = stack
            .call(&user, "get", json!({"client_order_id": "limited"}))
            .await;
        assert_eq!(result(&stored)["status"], "REJECTED", "{stored}");
        assert_eq!(
            angel.sim.orders(cc).len(),
            1,
            "the refused order never reached the broker"
        );
    })
    .await;
}

/// Black-box findings (helper-61 F2, helper-62): the session expires just before a burst,
/// and again while the burst queues. The orders sent before a renewal are refused by the
/// broker (not processed) and sent again, each needing a new turn in the rate limit,
/// behind the rest of the burst. A stored order waits for that turn as long as a stored
/// order may (`RateLimiter::stored_wait`, 30 s here) under its lease, and renews a
/// refused session up to three times; before, it waited 3 s and renewed once, and
/// Pinnacle's own refusal (or the second session refusal) was stored as a rejection,
/// burning the client order id of an order that was never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_sent_on_an_expired_session_is_placed_not_burned() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("expiring", 6, json!({})).await;
        let cc = account.client_code.as_str();
        stack.lift_order_rate(&user.id, 1_000).await;
        let (fills, _) = angel.prices();
        let warm = stack
            .call(&user, "place", AngelStack::limit("warm", "BUY", 1, fills))
            .await;
        assert_taken(&warm);
        tokio::time::sleep(Duration::from_millis(1_100)).await;

        // The session expires before the burst, and again while its resends queue
        // (helper-62: a second refusal of a renewed session was final).
        angel.sim.expire_session(cc);
        let burst = futures::future::join_all((0..24).map(|i| {
            stack.call(
                &user,
                "place",
                AngelStack::limit(&format!("x-{i}"), "BUY", 1, fills),
            )
        }));
        let again = async {
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            angel.sim.expire_session(cc);
        };
        let (replies, ()) = tokio::join!(burst, again);
        let mut taken = 0;
        for (i, reply) in replies.iter().enumerate() {
            if reply["ok"] == true {
                assert_taken(reply);
                taken += 1;
                continue;
            }
            // Only a refusal before anything was stored, which a resend retries.
            assert_eq!(error_code(reply), "RATE_LIMITED", "{reply}");
            let stored = stack
                .call(&user, "get", json!({"client_order_id": format!("x-{i}")}))
                .await;
            assert_eq!(error_code(&stored), "NOT_FOUND", "{stored}");
        }
        assert!(taken >= 18, "most of the burst was admitted: {taken}");
        assert_eq!(
            angel.sim.orders(cc).len(),
            taken + 1,
            "each order sent once"
        );
        assert!(
            angel
                .sim
                .requests()
                .iter()
                .any(|r| r.path.ends_with("/generateTokens")),
            "the session was renewed"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_share_one_login() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("burst", 4, json!({})).await;
        stack.set_limits(no_limits(&user.id)).await;
        let (fills, _) = angel.prices();
        let replies = futures::future::join_all((0..8).map(|i| {
            stack.call(
                &user,
                "place",
                AngelStack::limit(&format!("c-{i}"), "BUY", 1, fills),
            )
        }))
        .await;
        for reply in &replies {
            assert_taken(reply);
        }
        assert_eq!(angel.sim.login_count(&account.client_code), 1);
        assert_eq!(angel.sim.orders(&account.client_code).len(), 8);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regulatory_settings_are_enforced_before_anything_is_sent() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (fills, _) = angel.prices();
        let order = AngelStack::limit("o-1", "BUY", 1, fills);

        for (n, extra, needle) in [
            (10, json!({"static_ip": null}), "static_ip"),
            (11, json!({"algo_id": null}), "algo_id"),
            (12, json!({"static_ip": "192.0.2.7"}), "egress_proxy"),
        ] {
            let (user, account) = angel.angel_trader(&format!("reg{n}"), n, extra).await;
            let reply = stack.call(&user, "place", order.clone()).await;
            assert_eq!(error_code(&reply), "REGULATORY", "{reply}");
            assert!(
                reply["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(needle)),
                "{reply}"
            );
            let stored = stack
                .call(&user, "get", json!({"client_order_id": "o-1"}))
                .await;
            assert_eq!(
                error_code(&stored),
                "NOT_FOUND",
                "nothing was stored: {stored}"
            );
            assert!(angel.sim.orders(&account.client_code).is_empty());
        }

        // MARKET orders are barred for API orders.
        let (user, account) = angel.angel_trader("market", 13, json!({})).await;
        let market = json!({"client_order_id": "m-1", "exchange": "NSE", "symbol": "SBIN-EQ",
                            "side": "BUY", "order_type": "MARKET", "quantity": 1});
        let reply = stack.call(&user, "place", market).await;
        assert_eq!(error_code(&reply), "REGULATORY", "{reply}");
        assert!(angel.sim.orders(&account.client_code).is_empty());

        // The broker checks the source address: registered 127.0.0.2, sent from 127.0.0.1.
        let user = stack.create_user("wrong-ip").await;
        let mut registered = angel.sim_account(14);
        registered.static_ip = Some("127.0.0.2".parse().expect("ip"));
        angel.sim.add_account(registered.clone());
        assert_eq!(
            angel.put_angel_account(&user, &registered, json!({})).await,
            200
        );
        let reply = stack.call(&user, "place", order.clone()).await;
        assert_eq!(error_code(&reply), "BROKER_REJECTED", "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("static IP")),
            "{reply}"
        );
        // Configured with the registered address, the orders leave from it.
        assert_eq!(
            angel
                .put_angel_account(&user, &registered, json!({"static_ip": "127.0.0.2"}))
                .await,
            200
        );
        let reply = stack
            .call(&user, "place", AngelStack::limit("o-2", "BUY", 1, fills))
            .await;
        assert_taken(&reply);
        let at_broker = angel.sim.orders(&registered.client_code);
        assert_eq!(at_broker.len(), 1);
        assert_eq!(at_broker[0].source_ip.to_string(), "127.0.0.2");

        // The user API refuses malformed settings.
        for bad in [
            json!({"static_ip": "not-an-ip"}),
            json!({"egress_proxy": "http://user:pass@proxy:3128"}),
            json!({"egress_proxy": "ftp://proxy"}),
            json!({"algo_id": "x".repeat(40)}),
        ] {
            assert_eq!(angel.put_angel_account(&user, &registered, bad).await, 400);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_updates_resume_after_the_socket_drops() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("drops", 5, json!({})).await;
        let (_, rests) = angel.prices();
        let resting = stack
            .call(&user, "place", AngelStack::limit("r-1", "BUY", 2, rests))
            .await;
        assert_eq!(result(&resting)["status"], "OPEN", "{resting}");
        eventually(
            Duration::from_secs(5),
            "the order-update socket connects",
            || async { (angel.sim.order_connections() >= 1).then_some(()) },
        )
        .await;
        // The fill happens while the socket is down; the reconnect catches up from the book.
        let cc = account.client_code.as_str();
        let sim = &angel.sim;
        let reconnected = |opened: usize| {
            eventually(
                Duration::from_secs(10),
                "the order-update socket reconnects",
                move || async move { (sim.order_connections_opened(cc) > opened).then_some(()) },
            )
        };
        let opened = angel.sim.order_connections_opened(cc);
        angel.sim.drop_sockets();
        angel.sim.set_ltp("NSE", SBIN_TOKEN, rests - 100);
        wait_for_fill(stack, &user, "r-1").await;
        reconnected(opened).await;

        // Sockets dropped as soon as they open: the waits before reconnecting double. A
        // socket that then serves a while starts them again from 250 ms when it drops,
        // instead of leaving every later drop 30 s blind to fills.
        for _ in 0..3 {
            let opened = angel.sim.order_connections_opened(cc);
            angel.sim.drop_sockets();
            reconnected(opened).await;
        }
        let flapping = reconnect_waits(cc);
        assert!(
            flapping.last().is_some_and(|&ms| ms >= 1_000),
            "quick drops back off: {flapping:?}"
        );
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        let opened = angel.sim.order_connections_opened(cc);
        angel.sim.drop_sockets();
        reconnected(opened).await;
        let waits = reconnect_waits(cc);
        assert_eq!(waits.len(), flapping.len() + 1, "{waits:?}");
        assert_eq!(
            waits.last(),
            Some(&250),
            "after a healthy socket: {waits:?}"
        );
    })
    .await;
}

/// The waits (ms) the order-update follower of `client_code` logged before each reconnect.
fn reconnect_waits(client_code: &str) -> Vec<u64> {
    logs::captured()
        .lines()
        .filter(|l| l.contains("order-update socket closed; reconnecting"))
        .filter(|l| l.contains(&format!("client_code={client_code} ")))
        .filter_map(|l| {
            let (_, after) = l.split_once("retry_in_ms=")?;
            after.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_log_in_to_one_account_at_once() {
    use std::sync::Arc;

    use pinnacle_common::audit::AuditLog;
    use pinnacle_order_worker::angel::store::DbSessionStore;
    use pinnacle_smartapi::limits::RateLimiter;
    use pinnacle_smartapi::session::{LoginSecrets, SessionManager, SessionStore};
    use pinnacle_smartapi::{AccountKey, Egress, RestClient, RestConfig};
    use secrecy::{ExposeSecret, SecretString};

    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("lease", 20, json!({})).await;
        let account_id = stack.broker_account(&user.id).await.id;
        // Two "processes": each its own session manager, store (lease owner) and client.
        let process = || {
            let audit = AuditLog::new(
                stack.client.clone(),
                Duration::from_secs(2),
                stack.vault.clone(),
            );
            let store = DbSessionStore::new(stack.db.clone(), stack.vault.clone(), audit);
            let config = RestConfig {
                base_url: angel.sim.rest_url(),
                ..RestConfig::default()
            };
            let key = AccountKey {
                api_key: SecretString::from(account.api_key.clone()),
                client_code: account.client_code.clone(),
            };
            let client = RestClient::new(
                &config,
                key,
                &Egress::Default,
                RateLimiter::new(Duration::from_secs(5)),
            )
            .expect("client");
            (SessionManager::default(), Arc::new(store), client)
        };
        let (first, second) = (process(), process());
        let secrets = || LoginSecrets {
            pin: SecretString::from(account.pin.clone()),
            totp_seed: SecretString::from(account.totp_seed.clone()),
        };
        let (secrets_a, secrets_b) = (secrets(), secrets());
        let (a, b) = tokio::join!(
            first.0.ensure(
                &first.2,
                &account_id,
                None,
                &secrets_a,
                first.1.as_ref() as &dyn SessionStore
            ),
            second.0.ensure(
                &second.2,
                &account_id,
                None,
                &secrets_b,
                second.1.as_ref() as &dyn SessionStore
            ),
        );
        let seen: Vec<String> = angel
            .sim
            .requests()
            .iter()
            .map(|r| r.path.clone())
            .collect();
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => panic!(
                "sessions: {:?} / {:?}; the broker saw {seen:?}",
                a.err(),
                b.err()
            ),
        };
        assert_eq!(angel.sim.login_count(&account.client_code), 1);
        assert_eq!(a.jwt.expose_secret(), b.jwt.expose_secret());
        // The lease is one holder's at a time, and free again afterwards.
        assert!(first
            .1
            .try_lease(&account_id, Duration::from_secs(30))
            .await
            .expect("lease"));
        assert!(!second
            .1
            .try_lease(&account_id, Duration::from_secs(30))
            .await
            .expect("lease"));
        first.1.release(&account_id).await;
        assert!(second
            .1
            .try_lease(&account_id, Duration::from_secs(30))
            .await
            .expect("lease"));
    })
    .await;
}

/// The REST paths `client_code` sent since request number `since`, by route name.
fn routes_since(angel: &AngelStack, client_code: &str, since: usize) -> Vec<String> {
    angel
        .sim
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| r.client_code.as_deref() == Some(client_code))
        .map(|r| match r.path.split_once("/order/v1/details/") {
            Some(_) => "details".to_string(),
            None => r.path.rsplit('/').next().unwrap_or_default().to_string(),
        })
        .collect()
}

/// The order the simulator holds under `broker_order_id`.
fn at_broker(angel: &AngelStack, client_code: &str, reply: &Value) -> SimOrder {
    let id = result(reply)["broker_order_id"]
        .as_str()
        .expect("broker id");
    angel
        .sim
        .orders(client_code)
        .into_iter()
        .find(|o| o.orderid == id)
        .expect("the broker has the order")
}

/// Waits for a lifecycle event of `client_order_id` that `wanted` accepts.
async fn wait_for_event(
    events: &mut async_nats::Subscriber,
    client_order_id: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no matching event for {client_order_id}"))
            .expect("event stream open");
        let event: Value = pinnacle_common::codec::Encoding::MsgPack
            .decode(&message.payload)
            .expect("event decodes");
        if event["order"]["client_order_id"] == client_order_id && wanted(&event["order"]) {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_and_cancel_change_the_broker_order_without_reading_its_book() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("modify", 6, json!({})).await;
        let cc = account.client_code.as_str();
        stack.lift_order_rate(&user.id, 1_000).await;
        let (fills, rests) = angel.prices();
        let mut events = stack
            .client
            .subscribe(subjects::order_events(&user.id))
            .await
            .expect("subscribe events");

        // The first order logs in and starts the order-update socket, which catches up
        // from the order book once; from then on nothing reads the book.
        let mark = go_live(&angel, &user, cc, "m-0").await;

        // Place is one REST request.
        let limit = stack
            .call(&user, "place", AngelStack::limit("m-1", "BUY", 2, rests))
            .await;
        assert_eq!(result(&limit)["status"], "OPEN", "{limit}");
        assert_eq!(routes_since(&angel, cc, mark), ["placeOrder"]);

        // Quantity 2 → 3: the broker's order changes, and so do the reply and the record.
        let modified = stack
            .call(&user, "modify", json!({"client_order_id": "m-1", "quantity": 3}))
            .await;
        assert_eq!(result(&modified)["status"], "OPEN", "{modified}");
        assert_eq!(result(&modified)["quantity"], 3, "{modified}");
        let order = at_broker(&angel, cc, &limit);
        assert_eq!((order.quantity, order.price_paise), (3, rests));
        wait_for_event(&mut events, "m-1", |o| {
            o["status"] == "OPEN" && o["quantity"] == 3
        })
        .await;

        // The price.
        let price = rests - 100;
        let modified = stack
            .call(&user, "modify", json!({"client_order_id": "m-1", "price": price}))
            .await;
        assert_eq!(result(&modified)["price"], price, "{modified}");
        assert_eq!(result(&modified)["quantity"], 3, "{modified}");
        let order = at_broker(&angel, cc, &limit);
        assert_eq!((order.quantity, order.price_paise, order.status.as_str()), (3, price, "open"));
        let stored = stack
            .call(&user, "get", json!({"client_order_id": "m-1"}))
            .await;
        assert_eq!(
            (&result(&stored)["quantity"], &result(&stored)["price"]),
            (&json!(3), &json!(price)),
            "{stored}"
        );

        // A stop-loss order's trigger (and limit): a buy stop far above the market rests.
        let ltp = angel.sim.ltp("NSE", SBIN_TOKEN).expect("ltp");
        let stop = json!({"client_order_id": "m-2", "exchange": "NSE", "symbol": "SBIN-EQ",
                          "side": "BUY", "order_type": "STOPLOSS_LIMIT", "quantity": 1,
                          "price": ltp * 2 + 100, "trigger_price": ltp * 2});
        let stop = stack.call(&user, "place", stop).await;
        assert_eq!(result(&stop)["status"], "OPEN", "{stop}");
        let modified = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "m-2", "trigger_price": ltp * 2 + 50}),
            )
            .await;
        assert_eq!(result(&modified)["trigger_price"], ltp * 2 + 50, "{modified}");
        let order = at_broker(&angel, cc, &stop);
        assert_eq!(
            (order.trigger_price_paise, order.price_paise, order.status.as_str()),
            (ltp * 2 + 50, ltp * 2 + 100, "trigger pending")
        );
        let modified = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "m-2", "price": ltp * 2 + 200, "trigger_price": ltp * 2 + 150}),
            )
            .await;
        assert_eq!(result(&modified)["price"], ltp * 2 + 200, "{modified}");
        let order = at_broker(&angel, cc, &stop);
        assert_eq!(
            (order.trigger_price_paise, order.price_paise),
            (ltp * 2 + 150, ltp * 2 + 200)
        );

        // A modify that makes the order marketable fills it, at the new quantity.
        let crossing = stack
            .call(&user, "place", AngelStack::limit("m-3", "BUY", 2, rests))
            .await;
        assert_eq!(result(&crossing)["status"], "OPEN", "{crossing}");
        let modified = stack
            .call(
                &user,
                "modify",
                json!({"client_order_id": "m-3", "quantity": 4, "price": fills}),
            )
            .await;
        assert_eq!(result(&modified)["quantity"], 4, "{modified}");
        wait_for_fill(stack, &user, "m-3").await;
        let stored = stack
            .call(&user, "get", json!({"client_order_id": "m-3"}))
            .await;
        assert_eq!(
            (&result(&stored)["quantity"], &result(&stored)["filled_quantity"]),
            (&json!(4), &json!(4)),
            "{stored}"
        );
        assert_eq!(at_broker(&angel, cc, &crossing).filled, 4);

        // Cancel both resting orders, each with the variety it was placed with.
        for (id, placed) in [("m-1", &limit), ("m-2", &stop)] {
            let cancelled = stack
                .call(&user, "cancel", json!({"client_order_id": id}))
                .await;
            assert_eq!(result(&cancelled)["status"], "CANCELLED", "{cancelled}");
            assert_eq!(at_broker(&angel, cc, placed).status, "cancelled");
        }

        // What went to the broker: no order book, one details request per change, and
        // every modify and cancel named the variety its order was placed with.
        let routes = routes_since(&angel, cc, mark);
        let count = |name: &str| routes.iter().filter(|r| *r == name).count();
        assert_eq!(count("getOrderBook"), 0, "{routes:?}");
        assert_eq!(
            (count("placeOrder"), count("modifyOrder"), count("cancelOrder")),
            (3, 5, 2),
            "{routes:?}"
        );
        assert_eq!(count("details"), 7, "{routes:?}");
        let requests = angel.sim.requests();
        let placed_variety = |orderid: &str| {
            let order = angel.sim.orders(cc).into_iter().find(|o| o.orderid == orderid);
            order.expect("placed").variety
        };
        for request in requests.iter().skip(mark).filter(|r| {
            r.path.ends_with("/modifyOrder") || r.path.ends_with("/cancelOrder")
        }) {
            let orderid = request.body["orderid"].as_str().expect("orderid");
            assert_eq!(request.body["variety"], placed_variety(orderid).as_str());
        }
        let place_bodies: Vec<&Value> = requests
            .iter()
            .skip(mark)
            .filter(|r| r.path.ends_with("/placeOrder"))
            .map(|r| &r.body)
            .collect();
        assert_eq!(place_bodies[1]["variety"], "STOPLOSS");
        assert_eq!(place_bodies[0]["variety"], "NORMAL");
    })
    .await;
}

/// Places a resting order for the first time on `client_code`'s session and waits until the
/// order-update socket is connected and has caught up from the order book (the worker
/// counts the stream live before it asks for the book); returns the number of requests the
/// simulator has seen by then.
async fn go_live(
    angel: &AngelStack,
    user: &pinnacle_tests::TestUser,
    client_code: &str,
    client_order_id: &str,
) -> usize {
    let (_, rests) = angel.prices();
    let first = angel
        .stack
        .call(
            user,
            "place",
            AngelStack::limit(client_order_id, "BUY", 1, rests),
        )
        .await;
    assert_eq!(result(&first)["status"], "OPEN", "{first}");
    eventually(
        Duration::from_secs(10),
        "the order-update socket connects and catches up",
        || async {
            let caught_up =
                routes_since(angel, client_code, 0).contains(&"getOrderBook".to_string());
            (angel.sim.order_connections() >= 1 && caught_up).then_some(())
        },
    )
    .await;
    angel.sim.requests().len()
}

/// Waits until `client_order_id` is stored `REJECTED` for the broker's lot-size reason.
async fn ends_rejected_for_the_lot_size(
    stack: &pinnacle_tests::TestStack,
    user: &pinnacle_tests::TestUser,
    client_order_id: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let got = stack
            .call(user, "get", json!({"client_order_id": client_order_id}))
            .await;
        if got["result"]["status"] == "REJECTED" {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rejection was not recorded: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        result(&stored)["reject_reason"]
            .as_str()
            .is_some_and(|r| r.contains("lot size")),
        "{stored}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_after_the_acknowledgement_are_recorded_with_the_reason() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let stack = &angel.stack;
        let (user, account) = angel.angel_trader("late-reject", 7, json!({})).await;
        let cc = account.client_code.as_str();
        let ltp = angel.sim.ltp("NFO", "35001").expect("NIFTY future");
        // The broker takes the request (an order id), then rejects the order: 1 is not a
        // multiple of the lot size, 75.
        let order = |id: &str| {
            json!({"client_order_id": id, "exchange": "NFO", "symbol": "NIFTY30DEC26FUT",
                   "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": ltp / 2,
                   "product": "CARRYFORWARD"})
        };

        // The session's first order: the order-update stream starts with the session that
        // `admit` logs in, so place either reads the state once (the stream was not live
        // yet) or answers OPEN and takes the rejection from the stream.
        let reply = stack.call(&user, "place", order("lot-1")).await;
        assert!(
            reply["result"]["status"] == "OPEN" || reply["error"]["code"] == "BROKER_REJECTED",
            "{reply}"
        );
        ends_rejected_for_the_lot_size(stack, &user, "lot-1").await;

        // With the stream live, place is one request and answers OPEN, or REJECTED if the
        // update was quicker; either way the order ends REJECTED with the broker's reason.
        let mark = go_live(&angel, &user, cc, "live-0").await;
        let reply = stack.call(&user, "place", order("lot-2")).await;
        assert!(
            reply["result"]["status"] == "OPEN" || reply["error"]["code"] == "BROKER_REJECTED",
            "{reply}"
        );
        assert_eq!(routes_since(&angel, cc, mark), ["placeOrder"]);
        ends_rejected_for_the_lot_size(stack, &user, "lot-2").await;
        let at_broker = angel.sim.orders(cc);
        assert_eq!(at_broker.len(), 3);
        assert!(at_broker
            .iter()
            .filter(|o| o.symbol == "NIFTY30DEC26FUT")
            .all(|o| o.status == "rejected"));
    })
    .await;
}

/// A cancel of `ids[0]` and a modify of `ids[1]` (quantity 2 → 3) that the broker refuses
/// because the order already ended there: each answered `INVALID_STATE` "already `status`
/// at the broker", and each order stored in that state with its own quantity (the modify
/// did not happen) and `filled` units filled; returns them as stored.
async fn changes_refused_as_ended(
    stack: &pinnacle_tests::TestStack,
    user: &pinnacle_tests::TestUser,
    ids: [&str; 2],
    status: &str,
    filled: i64,
) -> [Value; 2] {
    let cancel = stack
        .call(user, "cancel", json!({"client_order_id": ids[0]}))
        .await;
    let modify = stack
        .call(
            user,
            "modify",
            json!({"client_order_id": ids[1], "quantity": 3}),
        )
        .await;
    let mut stored = Vec::new();
    for (reply, id) in [(&cancel, ids[0]), (&modify, ids[1])] {
        assert_eq!(reply["error"]["code"], "INVALID_STATE", "{reply}");
        let message = reply["error"]["message"].as_str().expect("a message");
        assert!(
            message.contains(&format!("already {status} at the broker")),
            "{message}"
        );
        let got = stack
            .call(user, "get", json!({"client_order_id": id}))
            .await;
        let order = result(&got).clone();
        assert_eq!(
            (
                &order["status"],
                &order["quantity"],
                &order["filled_quantity"]
            ),
            (&json!(status), &json!(2), &json!(filled)),
            "{got}"
        );
        stored.push(order);
    }
    stored.try_into().expect("two orders")
}

/// The states each of `ids` went through, from its stored events, once every one of them
/// has reached `last`.
async fn event_paths<const N: usize>(
    stack: &pinnacle_tests::TestStack,
    user: &pinnacle_tests::TestUser,
    ids: [&str; N],
    last: &str,
) -> [Vec<String>; N] {
    eventually(
        Duration::from_secs(10),
        &format!("the {last} events"),
        || async {
            let events = pinnacle_tests::order_events(&stack.client, &user.id).await;
            let paths = ids.map(|id| {
                events
                    .iter()
                    .filter(|e| e.order.client_order_id == id)
                    .map(|e| e.order.status.as_str().to_string())
                    .collect::<Vec<_>>()
            });
            paths
                .iter()
                .all(|p| p.last().is_some_and(|s| s == last))
                .then_some(paths)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_refused_because_the_order_already_filled_records_the_fill() {
    each_backend(|backend| async move {
        let angel = AngelStack::start(backend).await;
        let (user, account) = angel.angel_trader("late", 23, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        let stack = &angel.stack;
        for id in ["late-cancel", "late-modify"] {
            let resting = stack
                .call(&user, "place", AngelStack::limit(id, "BUY", 2, rests))
                .await;
            assert_eq!(result(&resting)["status"], "OPEN", "{resting}");
        }

        // Both fill at the broker while its order-update stream delivers nothing: Pinnacle
        // still has them OPEN.
        angel.sim.mute_order_updates(true);
        angel.sim.set_ltp("NSE", SBIN_TOKEN, rests - 100);
        let book = angel.sim.orders(cc);
        assert!(book.iter().all(|o| o.status == "complete"), "{book:?}");
        let got = stack
            .call(&user, "get", json!({"client_order_id": "late-cancel"}))
            .await;
        assert_eq!(result(&got)["status"], "OPEN", "{got}");

        // A cancel or a modify now is refused by the broker: the reply says the order is
        // filled (not that the broker rejected it), and Pinnacle records the fill at once,
        // with the order's own quantity (the modify did not happen).
        let ids = ["late-cancel", "late-modify"];
        for order in changes_refused_as_ended(stack, &user, ids, "FILLED", 2).await {
            assert!(
                order["average_price"].as_i64().is_some_and(|p| p > 0),
                "{order}"
            );
        }
        angel.sim.mute_order_updates(false);

        // Every change is an event, the last one the fill.
        let [cancelled, modified] = event_paths(stack, &user, ids, "FILLED").await;
        assert_eq!(
            cancelled,
            ["NEW", "SUBMITTED", "OPEN", "PENDING_CANCEL", "FILLED"]
        );
        assert_eq!(
            modified,
            ["NEW", "SUBMITTED", "OPEN", "PENDING_MODIFY", "FILLED"]
        );
        // One order at the broker each, nothing else sent.
        assert_eq!(angel.sim.orders(cc).len(), 2);
    })
    .await;
}

/// The order-update stream reports a rejection while a cancel is on its way (its request
/// held at the broker, unanswered): the rejection is recorded at once (`PENDING_CANCEL` →
/// `REJECTED`), and the cancel, whose answer never comes, finds the order ended instead of
/// leaving it `UNKNOWN` for reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_streamed_while_a_cancel_is_in_flight_ends_the_order() {
    each_backend(|backend| async move {
        // The cancel waits for the held request's end (3 s), however slowly the update
        // comes on a loaded machine.
        let angel =
            AngelStack::start_with(backend, |_| {}, |s| s.worker.smartapi_timeout_ms = 10_000)
                .await;
        let (user, account) = angel.angel_trader("streamed", 31, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        let stack = &angel.stack;
        let id = "streamed-1";
        let placed = stack
            .call(&user, "place", AngelStack::limit(id, "BUY", 2, rests))
            .await;
        assert_eq!(result(&placed)["status"], "OPEN", "{placed}");
        eventually(
            Duration::from_secs(10),
            "the order-update socket",
            || async { (angel.sim.order_connections() >= 1).then_some(()) },
        )
        .await;
        let orderid = angel.sim.orders(cc)[0].orderid.clone();
        angel.sim.inject(Fault::Unanswered {
            route: "cancelOrder".into(),
            delay: Duration::from_millis(3_000),
            times: 1,
        });
        let reject = async {
            wait_for_status(stack, &user, id, "PENDING_CANCEL").await;
            assert!(angel.sim.reject_order(cc, &orderid, "RMS: exposure"));
        };
        let cancel = stack.call(&user, "cancel", json!({"client_order_id": id}));
        let (cancel, ()) = futures::join!(cancel, reject);
        assert!(
            cancel["result"]["status"] == "REJECTED" || cancel["error"]["code"] == "INVALID_STATE",
            "{cancel}"
        );
        ends_rejected_because(stack, &user, id, "RMS: exposure").await;
        let [path] = event_paths(stack, &user, [id], "REJECTED").await;
        assert_eq!(
            path,
            ["NEW", "SUBMITTED", "OPEN", "PENDING_CANCEL", "REJECTED"]
        );
    })
    .await;
}

/// A burst of changes refused because the broker had rejected the orders (its
/// order-update stream silent): each refusal reads its order's details by the stored
/// `uniqueorderid` (10 requests/s), never the order book (1 request/s), so every change is
/// answered with the rejection at once, instead of orders queueing behind the book's limit
/// and being left `UNKNOWN`. The order book is read only when the details fail, are of
/// another order, or no unique id is stored (an order stored before there was one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refused_changes_reads_each_order_by_its_details_not_the_order_book() {
    each_backend(|backend| async move {
        use pinnacle_common::entities::orders;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

        let angel = AngelStack::start(backend).await;
        let (user, account) = angel.angel_trader("burst", 33, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        let stack = &angel.stack;
        stack.lift_order_rate(&user.id, 1_000).await;
        let burst: Vec<String> = (0..8).map(|i| format!("burst-{i}")).collect();
        let fallbacks = ["fallback-fault", "fallback-none", "fallback-other"];
        for id in burst.iter().map(String::as_str).chain(fallbacks) {
            let resting = stack
                .call(&user, "place", AngelStack::limit(id, "BUY", 2, rests))
                .await;
            assert_eq!(result(&resting)["status"], "OPEN", "{resting}");
        }
        // Each order is stored with the broker's unique id from its acknowledgement.
        let stored = orders::Entity::find()
            .filter(orders::Column::UserId.eq(user.id.as_str()))
            .all(&stack.db)
            .await
            .expect("the orders");
        let mut unique_ids: Vec<_> = stored.iter().map(|o| o.broker_unique_id.clone()).collect();
        let mut at_broker: Vec<_> = angel
            .sim
            .orders(cc)
            .into_iter()
            .map(|o| Some(o.uniqueorderid))
            .collect();
        unique_ids.sort();
        at_broker.sort();
        assert_eq!(unique_ids, at_broker);

        angel.sim.mute_order_updates(true);
        for order in angel.sim.orders(cc) {
            assert!(angel
                .sim
                .reject_order(cc, &order.orderid, "RMS: margin exceeds"));
        }

        let since = angel.sim.requests().len();
        let changes = burst.iter().enumerate().map(|(i, id)| {
            let (verb, body) = if i % 2 == 0 {
                ("cancel", json!({"client_order_id": id}))
            } else {
                ("modify", json!({"client_order_id": id, "quantity": 3}))
            };
            stack.call(&user, verb, body)
        });
        for reply in futures::future::join_all(changes).await {
            assert_eq!(reply["error"]["code"], "INVALID_STATE", "{reply}");
            let message = reply["error"]["message"].as_str().expect("a message");
            assert!(
                message.contains("already REJECTED at the broker"),
                "{message}"
            );
        }
        for id in &burst {
            let got = stack
                .call(&user, "get", json!({"client_order_id": id}))
                .await;
            let order = result(&got);
            assert_eq!(
                (&order["status"], &order["quantity"]),
                (&json!("REJECTED"), &json!(2)),
                "{got}"
            );
            assert_rejected_because(order, "RMS: margin exceeds");
        }
        let routes = routes_since(&angel, cc, since);
        assert_eq!(
            sent(&routes),
            (burst.len(), 0),
            "one details request a refused change, no order book: {routes:?}"
        );

        // The order book is the fallback: details that fail, an order stored without a
        // unique id, and details of another order (set here in the database).
        angel.sim.inject(went_wrong_once("details"));
        let set_unique_id = |id: &'static str, unique_id: Option<String>| {
            orders::Entity::update_many()
                .col_expr(orders::Column::BrokerUniqueId, unique_id.into())
                .filter(orders::Column::UserId.eq(user.id.as_str()))
                .filter(orders::Column::ClientOrderId.eq(id))
                .exec(&stack.db)
        };
        let of_another = stored
            .iter()
            .find(|o| o.client_order_id == burst[0])
            .and_then(|o| o.broker_unique_id.clone());
        assert_eq!(
            set_unique_id(fallbacks[1], None)
                .await
                .expect("unset")
                .rows_affected,
            1
        );
        assert_eq!(
            set_unique_id(fallbacks[2], of_another)
                .await
                .expect("set")
                .rows_affected,
            1
        );
        for (id, expected) in fallbacks.into_iter().zip([(1, 1), (0, 1), (1, 1)]) {
            let since = angel.sim.requests().len();
            let reply = stack
                .call(&user, "cancel", json!({"client_order_id": id}))
                .await;
            assert_eq!(reply["error"]["code"], "INVALID_STATE", "{id}: {reply}");
            ends_rejected_because(stack, &user, id, "RMS: margin exceeds").await;
            let routes = routes_since(&angel, cc, since);
            assert_eq!(sent(&routes), expected, "{id}: {routes:?}");
        }
        // Every order still names its own order at the broker.
        let tags: std::collections::HashMap<_, _> = angel
            .sim
            .orders(cc)
            .into_iter()
            .map(|o| (o.ordertag, o.orderid))
            .collect();
        for order in orders::Entity::find()
            .filter(orders::Column::UserId.eq(user.id.as_str()))
            .all(&stack.db)
            .await
            .expect("the orders")
        {
            assert_eq!(
                order.broker_order_id.as_ref(),
                tags.get(&order_tag(&order.id)),
                "{order:?}"
            );
        }
        angel.sim.mute_order_updates(false);
    })
    .await;
}

/// Angel One's generic business error (AB1004), for the next request to `route`.
fn went_wrong_once(route: &str) -> Fault {
    Fault::BusinessError {
        route: route.into(),
        code: "AB1004".into(),
        message: "Something Went Wrong, Please Try After Sometime".into(),
        times: 1,
    }
}

/// The lookup after a refused change can outlast the order's lease (the details and the
/// order book both slow to fail): it runs under the lease, renewed while it waits (a lease
/// of 2 s here, renewed on a loaded machine too), so the
/// order is recorded `UNKNOWN` and the answer says so, rather than a bare refusal while the
/// order sits `PENDING_CANCEL` for reconciliation to take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_after_a_refused_change_that_outlasts_the_lease_keeps_it() {
    each_backend(|backend| async move {
        let angel = leased_stack(backend, 2_000).await;
        let (user, account) = angel.angel_trader("slowlookup", 39, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        let stack = &angel.stack;
        let id = "slow-lookup";
        let placed = stack
            .call(&user, "place", AngelStack::limit(id, "BUY", 2, rests))
            .await;
        assert_eq!(result(&placed)["status"], "OPEN", "{placed}");
        angel.sim.mute_order_updates(true);
        let orderid = angel.sim.orders(cc)[0].orderid.clone();
        assert!(angel.sim.reject_order(cc, &orderid, "RMS: margin exceeds"));
        // Each fails only at the 2 s timeout: about 4 s in all, past lease + grace (2.5 s).
        angel.sim.inject(Fault::SlowReply {
            route: "details".into(),
            delay: Duration::from_millis(3_000),
            times: 1,
        });
        angel.sim.inject(Fault::Unanswered {
            route: "getOrderBook".into(),
            delay: Duration::from_millis(3_000),
            times: 1,
        });
        let cancel = stack
            .call(&user, "cancel", json!({"client_order_id": id}))
            .await;
        assert_eq!(cancel["error"]["code"], "BROKER_REJECTED", "{cancel}");
        assert!(
            cancel["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("UNKNOWN until reconciliation")),
            "{cancel}"
        );
        ends_rejected_because(stack, &user, id, "RMS: margin exceeds").await;
        let [path] = event_paths(stack, &user, [id], "REJECTED").await;
        assert_eq!(
            path,
            [
                "NEW",
                "SUBMITTED",
                "OPEN",
                "PENDING_CANCEL",
                "UNKNOWN",
                "REJECTED"
            ]
        );
        angel.sim.mute_order_updates(false);
    })
    .await;
}

/// How many `details` and `getOrderBook` requests `routes` holds.
fn sent(routes: &[String]) -> (usize, usize) {
    let count = |name: &str| routes.iter().filter(|r| *r == name).count();
    (count("details"), count("getOrderBook"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_refused_because_the_broker_had_rejected_the_order_records_the_rejection() {
    each_backend(|backend| async move {
        let angel = settling_stack(backend).await;
        let (user, account) = angel.angel_trader("rejected", 29, json!({})).await;
        let cc = account.client_code.as_str();
        let (_, rests) = angel.prices();
        let stack = &angel.stack;
        let ids = ["gone-cancel", "gone-modify", "gone-orphan", "gone-unread"];
        for id in ids {
            let resting = stack
                .call(&user, "place", AngelStack::limit(id, "BUY", 2, rests))
                .await;
            assert_eq!(result(&resting)["status"], "OPEN", "{resting}");
        }

        // The broker's risk system rejects all four after accepting them, while its
        // order-update stream delivers nothing: Pinnacle still has them OPEN.
        angel.sim.mute_order_updates(true);
        for order in angel.sim.orders(cc) {
            assert!(angel
                .sim
                .reject_order(cc, &order.orderid, "RMS: margin exceeds"));
        }
        let got = stack
            .call(&user, "get", json!({"client_order_id": "gone-cancel"}))
            .await;
        assert_eq!(result(&got)["status"], "OPEN", "{got}");

        // A cancel or a modify is refused by the broker: the reply says the order is
        // rejected there, and Pinnacle records the rejection with the broker's reason,
        // instead of putting the order back to OPEN.
        let changed = [ids[0], ids[1]];
        for order in changes_refused_as_ended(stack, &user, changed, "REJECTED", 0).await {
            assert_rejected_because(&order, "RMS: margin exceeds");
        }

        // A cancel the broker refuses while neither the order's details nor the order book
        // can be read: the order is UNKNOWN (never shown working) until reconciliation
        // reads the rejection.
        for route in ["details", "getOrderBook"] {
            angel.sim.inject(went_wrong_once(route));
        }
        let unread = stack
            .call(&user, "cancel", json!({"client_order_id": ids[3]}))
            .await;
        assert_eq!(unread["error"]["code"], "BROKER_REJECTED", "{unread}");
        assert!(
            unread["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("UNKNOWN until reconciliation")),
            "{unread}"
        );
        ends_rejected_because(stack, &user, ids[3], "RMS: margin exceeds").await;

        // A cancel whose worker died while the broker had the order rejected: the order is
        // left PENDING_CANCEL under a lease long expired (set here in the database, as a
        // SIGKILL leaves it). Reconciliation takes it and records the rejection, rather
        // than failing on it at every sweep.
        use pinnacle_common::entities::orders;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let expired = chrono::Utc::now().timestamp_millis() - 60_000;
        let orphaned = orders::Entity::update_many()
            .col_expr(orders::Column::Status, "PENDING_CANCEL".into())
            .col_expr(orders::Column::LeaseOwner, "a-worker-that-died".into())
            .col_expr(orders::Column::LeaseUntilMs, expired.into())
            .filter(orders::Column::UserId.eq(user.id.as_str()))
            .filter(orders::Column::ClientOrderId.eq(ids[2]))
            .exec(&stack.db)
            .await
            .expect("orphan the order");
        assert_eq!(orphaned.rows_affected, 1);
        ends_rejected_because(stack, &user, ids[2], "RMS: margin exceeds").await;
        angel.sim.mute_order_updates(false);

        // A resend of each is answered with the stored rejection, sending nothing.
        let sent = angel.sim.requests().len();
        for id in ids {
            let again = stack
                .call(&user, "place", AngelStack::limit(id, "BUY", 2, rests))
                .await;
            assert_eq!(again["error"]["code"], "BROKER_REJECTED", "{again}");
            assert!(
                again["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("RMS: margin exceeds")),
                "{again}"
            );
        }
        assert_eq!(
            angel.sim.requests().len(),
            sent,
            "nothing sent for a resend"
        );

        let [cancelled, modified, orphan, unread] =
            event_paths(stack, &user, ids, "REJECTED").await;
        assert_eq!(
            cancelled,
            ["NEW", "SUBMITTED", "OPEN", "PENDING_CANCEL", "REJECTED"]
        );
        assert_eq!(
            modified,
            ["NEW", "SUBMITTED", "OPEN", "PENDING_MODIFY", "REJECTED"]
        );
        // (Its PENDING_CANCEL was written behind the engine's back, so it has no event.)
        assert_eq!(orphan, ["NEW", "SUBMITTED", "OPEN", "REJECTED"]);
        assert_eq!(
            unread,
            [
                "NEW",
                "SUBMITTED",
                "OPEN",
                "PENDING_CANCEL",
                "UNKNOWN",
                "REJECTED"
            ]
        );
        let book = angel.sim.orders(cc);
        assert_eq!(book.len(), 4);
        assert!(
            book.iter()
                .all(|o| o.status == "rejected" && o.quantity == 2),
            "{book:?}"
        );
    })
    .await;
}
