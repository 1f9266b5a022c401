//! Late subscribers and gap healing over real NATS: the recipe of docs/PROTOCOL.md
//! ("Snapshots and gap healing") rebuilds an exact picture of 500 symbols, at start and
//! after the client drops its subscription; `md.req.snapshot`'s bounds and errors; and
//! the market-data service's micro discovery (`$SRV.*`) with counts that move.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use pinnacle_common::codec::Encoding;
use pinnacle_common::model::{MarketTick, Reply, SnapshotReply};
use pinnacle_common::subjects::{self, md};
use pinnacle_tests::{eventually, Backend, TestStack};
use serde_json::{json, Value};

/// 5 listed symbols plus this many synthetic ones: 500 in all.
const SYNTHETIC: usize = 495;
const SYMBOLS: usize = 500;

/// Sends `body` (MessagePack) to `subject`; the decoded reply envelope.
async fn request(stack: &TestStack, subject: &str, body: Value) -> Value {
    let payload = Bytes::from(rmp_serde::to_vec_named(&body).expect("encode"));
    let reply = stack
        .request(subject.to_string(), None, Encoding::MsgPack, payload)
        .await;
    rmp_serde::from_slice(&reply.payload).expect("MessagePack reply")
}

/// The error code of a failed reply (and it must have failed).
async fn refused(stack: &TestStack, body: Value) -> String {
    let reply = request(stack, md::SNAPSHOT, body).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    reply["error"]["code"].as_str().expect("code").to_string()
}

/// Every page of a wildcard snapshot, `limit` ticks at a time (the documented recipe).
async fn snapshot_all(stack: &TestStack, filter: &str, limit: u32) -> Vec<MarketTick> {
    let mut ticks = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = json!({"subject": filter, "after": after, "limit": limit});
        let payload = Bytes::from(rmp_serde::to_vec_named(&body).expect("encode"));
        let reply = stack
            .request(md::SNAPSHOT.to_string(), None, Encoding::MsgPack, payload)
            .await;
        let reply: Reply<SnapshotReply> =
            Encoding::MsgPack.decode(&reply.payload).expect("snapshot");
        let page = reply.result.expect("snapshot succeeds");
        assert!(page.ticks.len() <= limit as usize);
        ticks.extend(page.ticks);
        match page.next {
            Some(next) => after = Some(next),
            None => return ticks,
        }
    }
}

/// The client's picture: the latest tick per subject, and how many live ticks it applied.
#[derive(Default)]
struct Picture {
    ticks: HashMap<String, MarketTick>,
    applied: usize,
}

impl Picture {
    /// Applies a live tick: only newer than what the picture holds, and never past a gap.
    fn apply(&mut self, tick: MarketTick) {
        let subject = subjects::tick(&tick.exchange, &tick.symbol);
        let Some(held) = self.ticks.get(&subject) else {
            panic!("a live tick for {subject}, which the snapshot did not have");
        };
        if tick.seq <= held.seq {
            return;
        }
        assert_eq!(
            tick.seq,
            held.seq + 1,
            "{subject}: a gap after the snapshot (the recipe must heal it)"
        );
        self.applied += 1;
        self.ticks.insert(subject, tick);
    }
}

/// The recipe: subscribe first, then snapshot (paged), then apply live ticks with seq
/// greater than the snapshot's. Returns the subscription and the picture.
async fn rebuild(stack: &TestStack) -> (async_nats::Subscriber, Picture) {
    let live = stack
        .client
        .subscribe(subjects::MD_TICK_ALL)
        .await
        .expect("subscribe");
    stack.client.flush().await.expect("flush");
    let mut picture = Picture::default();
    for tick in snapshot_all(stack, "md.tick.>", 200).await {
        let subject = subjects::tick(&tick.exchange, &tick.symbol);
        assert!(
            picture.ticks.insert(subject.clone(), tick).is_none(),
            "{subject} twice in one snapshot"
        );
    }
    (live, picture)
}

/// Applies live ticks until every symbol's seq reached `target`'s; then the picture must
/// equal `target` exactly wherever it stands at the same seq.
async fn catch_up_and_compare(
    live: &mut async_nats::Subscriber,
    picture: &mut Picture,
    target: &[MarketTick],
) {
    let behind = |p: &Picture| {
        target
            .iter()
            .filter(|t| {
                p.ticks
                    .get(&subjects::tick(&t.exchange, &t.symbol))
                    .is_none_or(|held| held.seq < t.seq)
            })
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while behind(picture) > 0 {
        let message = tokio::time::timeout_at(deadline, live.next())
            .await
            .expect("the picture catches up within 30 s")
            .expect("subscription open");
        picture.apply(Encoding::MsgPack.decode(&message.payload).expect("tick"));
    }
    let mut same_seq = 0;
    for t in target {
        let held = &picture.ticks[&subjects::tick(&t.exchange, &t.symbol)];
        if held.seq == t.seq {
            assert_eq!(held, t, "the rebuilt tick differs from the service's");
            same_seq += 1;
        }
    }
    assert!(same_seq > 0, "no symbol could be compared at the same seq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_rebuilds_an_exact_picture_of_500_symbols() {
    let stack = TestStack::start_with(Backend::Sqlite, |s| {
        s.sim.synthetic = SYNTHETIC;
        s.sim.interval_ms = 200;
    })
    .await;
    // Start late: every symbol has ticked before the client arrives.
    eventually(Duration::from_secs(20), "500 cached symbols", || async {
        let ticks = snapshot_all(&stack, "md.tick.>", 1000).await;
        (ticks.len() == SYMBOLS).then_some(())
    })
    .await;

    let (mut live, mut picture) = rebuild(&stack).await;
    assert_eq!(
        picture.ticks.len(),
        SYMBOLS,
        "the snapshot holds every symbol"
    );
    assert!(picture.ticks.values().all(|t| t.seq >= 1));
    // Let the market move on, then compare with where the service stands.
    let probe = subjects::tick("NSE", "SIM00001-EQ");
    let held = picture.ticks[&probe].seq;
    eventually(Duration::from_secs(20), "the market to move on", || async {
        let now = snapshot_all(&stack, &probe, 10).await;
        now.first().is_some_and(|t| t.seq > held + 1).then_some(())
    })
    .await;
    let target = snapshot_all(&stack, "md.tick.>", 1000).await;
    catch_up_and_compare(&mut live, &mut picture, &target).await;
    assert!(picture.applied > 0, "live ticks were applied on top");

    // Drop off for a while (a disconnect): the ticks missed are a gap the recipe heals.
    drop(live);
    let gone_at = target.iter().map(|t| t.seq).max().unwrap_or(0);
    eventually(
        Duration::from_secs(20),
        "ticks missed while away",
        || async {
            let now = snapshot_all(&stack, "md.tick.NSE.SIM00001-EQ", 10).await;
            now.first()
                .is_some_and(|t| t.seq > gone_at + 3)
                .then_some(())
        },
    )
    .await;
    let stale = picture.ticks.clone();
    let (mut live, mut healed) = rebuild(&stack).await;
    let moved = healed
        .ticks
        .iter()
        .filter(|(s, t)| stale.get(*s).is_some_and(|old| t.seq > old.seq + 1))
        .count();
    assert!(moved > 0, "the drop left gaps for the snapshot to heal");
    let target = snapshot_all(&stack, "md.tick.>", 1000).await;
    catch_up_and_compare(&mut live, &mut healed, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_bounded_and_carry_status_at_once() {
    let stack = TestStack::start(Backend::Sqlite).await;
    stack.wait_for_ticks("SBIN-EQ", 1).await;
    stack.wait_for_ticks("TCS-EQ", 1).await;

    // A list: ticks in subject order, each with its seq; listed-but-quiet symbols are
    // `missing`; every exchange's status is there at once, with no md.status.* wait.
    let reply = request(
        &stack,
        md::SNAPSHOT,
        json!({"symbols": [
            {"exchange": "NSE", "symbol": "TCS-EQ"},
            {"exchange": "nse", "symbol": "SBIN-EQ"},
            {"exchange": "NSE", "symbol": "ITC-EQ"},
        ]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let result = &reply["result"];
    let symbols: Vec<&str> = result["ticks"]
        .as_array()
        .expect("ticks")
        .iter()
        .map(|t| t["symbol"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(symbols, ["TCS-EQ", "SBIN-EQ"]);
    assert!(result["ticks"][0]["seq"].as_u64() >= Some(1));
    assert_eq!(result["missing"][0]["symbol"], "ITC-EQ");
    assert_eq!(result["next"], Value::Null);
    let status: Vec<&str> = result["status"]
        .as_array()
        .expect("status")
        .iter()
        .map(|s| s["exchange"].as_str().unwrap_or(""))
        .collect();
    for exchange in ["NSE", "BSE", "NFO", "MCX"] {
        assert!(status.contains(&exchange), "{exchange} in {status:?}");
    }

    // A wildcard, paged: two pages of the five listed symbols, no overlap.
    let first = request(
        &stack,
        md::SNAPSHOT,
        json!({"subject": "md.tick.NSE.*", "limit": 3}),
    )
    .await;
    let first = &first["result"];
    assert_eq!(first["ticks"].as_array().map(Vec::len), Some(3), "{first}");
    let next = first["next"].as_str().expect("a next page").to_string();
    assert_eq!(
        next,
        subjects::tick("NSE", first["ticks"][2]["symbol"].as_str().unwrap_or(""))
    );
    let second = eventually(Duration::from_secs(10), "the second page", || async {
        let page = request(
            &stack,
            md::SNAPSHOT,
            json!({"subject": "md.tick.NSE.*", "limit": 3, "after": next}),
        )
        .await;
        (page["result"]["ticks"].as_array().map(Vec::len) == Some(2)).then_some(page)
    })
    .await;
    assert_eq!(second["result"]["next"], Value::Null);
    let one = request(
        &stack,
        md::SNAPSHOT,
        json!({"subject": "md.tick.*.SBIN-EQ"}),
    )
    .await;
    assert_eq!(one["result"]["ticks"].as_array().map(Vec::len), Some(1));

    // Bounds: a list or a page past 1000 is refused with a structured error.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"exchange": "NSE", "symbol": format!("S{i}")}))
        .collect();
    assert_eq!(
        refused(&stack, json!({"symbols": many})).await,
        "RANGE_TOO_LARGE"
    );
    let huge: Vec<Value> = (0..4000)
        .map(|i| json!({"exchange": "NSE", "symbol": format!("SYMBOL-{i:05}")}))
        .collect();
    assert_eq!(
        refused(&stack, json!({"symbols": huge})).await,
        "PAYLOAD_TOO_LARGE"
    );
    for limit in [0, 1001] {
        let body = json!({"subject": "md.tick.>", "limit": limit});
        assert_eq!(refused(&stack, body).await, "RANGE_TOO_LARGE", "{limit}");
    }
    // Neither or both forms, a filter outside md.tick., an unknown symbol.
    assert_eq!(refused(&stack, json!({})).await, "INVALID_REQUEST");
    let both =
        json!({"subject": "md.tick.>", "symbols": [{"exchange": "NSE", "symbol": "SBIN-EQ"}]});
    assert_eq!(refused(&stack, both).await, "INVALID_REQUEST");
    for bad in ["md.depth.>", "md.tick.>.X", "md.tick.NSE.SB*"] {
        assert_eq!(
            refused(&stack, json!({"subject": bad})).await,
            "INVALID_REQUEST",
            "{bad}"
        );
    }
    let unknown = json!({"symbols": [{"exchange": "NSE", "symbol": "NOPE-EQ"}]});
    assert_eq!(refused(&stack, unknown).await, "UNKNOWN_SYMBOL");
    assert_eq!(
        refused(&stack, json!({"symbols": "not a list"})).await,
        "BAD_PAYLOAD"
    );
}

/// `$SRV.*` replies from the market-data service, as JSON.
async fn srv(stack: &TestStack, verb: &str) -> Value {
    let subject = format!("$SRV.{verb}.pinnacle-market-data");
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        stack.client.request(subject, Bytes::new()),
    )
    .await
    .expect("a discovery reply within 10 s")
    .expect("discovery request");
    serde_json::from_slice(&reply.payload).expect("JSON")
}

/// The named endpoint's entry in a `$SRV.STATS` reply.
fn endpoint<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} endpoint in {stats}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_data_service_is_discoverable_with_stats_per_endpoint() {
    let stack = TestStack::start(Backend::Sqlite).await;
    let ping = srv(&stack, "PING").await;
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
    assert_eq!(ping["name"], "pinnacle-market-data");
    // Every md.req.* verb is an endpoint in the md-service queue group.
    let info = srv(&stack, "INFO").await;
    let endpoints: Vec<(&str, &str, &str)> = info["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or(""),
                e["subject"].as_str().unwrap_or(""),
                e["queue_group"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        [
            ("last", md::LAST, "md-service"),
            ("snapshot", md::SNAPSHOT, "md-service"),
            ("candles", md::CANDLES, "md-service"),
            ("symbols_search", md::SYMBOLS_SEARCH, "md-service"),
            ("symbols_lookup", md::SYMBOLS_LOOKUP, "md-service"),
            ("status", md::STATUS, "md-service"),
        ]
    );
    // The all-services subjects reach it too, beside the order workers.
    let all = tokio::time::timeout(
        Duration::from_secs(10),
        stack.client.request("$SRV.INFO", Bytes::new()),
    )
    .await
    .expect("reply")
    .expect("request");
    assert!(!all.payload.is_empty());

    let before = srv(&stack, "STATS").await;
    let count = |stats: &Value, name: &str| {
        let e = endpoint(stats, name);
        (
            e["num_requests"].as_u64().unwrap_or(u64::MAX),
            e["num_errors"].as_u64().unwrap_or(u64::MAX),
        )
    };
    let (status_before, _) = count(&before, "status");
    let (last_before, last_errors_before) = count(&before, "last");
    request(&stack, md::STATUS, json!({})).await;
    request(&stack, md::STATUS, json!({"exchange": "NSE"})).await;
    let unknown = request(
        &stack,
        md::LAST,
        json!({"exchange": "NSE", "symbol": "NOPE-EQ"}),
    )
    .await;
    assert_eq!(unknown["ok"], false);
    let after = srv(&stack, "STATS").await;
    assert_eq!(after["type"], "io.nats.micro.v1.stats_response");
    assert_eq!(count(&after, "status").0, status_before + 2);
    assert_eq!(
        count(&after, "last"),
        (last_before + 1, last_errors_before + 1)
    );
    assert_eq!(endpoint(&after, "last")["last_error"], "UNKNOWN_SYMBOL");
    assert!(endpoint(&after, "status")["average_processing_time"].as_u64() > Some(0));
    assert_eq!(
        count(&after, "candles"),
        (0, 0),
        "untouched endpoints stay at zero"
    );
}
