//! Ticks flow from the publisher to any subscriber, in order, as MessagePack maps.

use pinnacle_tests::{Backend, TestStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_flow_from_the_publisher_to_a_subscriber() {
    let stack = TestStack::start(Backend::Sqlite).await;
    let ticks = stack.wait_for_ticks("SBIN-EQ", 5).await;
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "per-symbol sequence has no gaps"
        );
    }
    for tick in &ticks {
        assert_eq!(
            (tick.exchange.as_str(), tick.symbol.as_str()),
            ("NSE", "SBIN-EQ")
        );
        assert!(tick.ltp > 0 && tick.bid < tick.ask && tick.ltp % 5 == 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_are_maps_any_client_can_decode_and_wildcards_work() {
    use futures::StreamExt;
    let stack = TestStack::start(Backend::Sqlite).await;
    let mut sub = stack
        .client
        .subscribe("md.tick.NSE.>")
        .await
        .expect("subscribe");
    let message = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next())
        .await
        .expect("tick")
        .expect("open");
    // Decode without Pinnacle's types, as a Python or Go client would.
    let value: serde_json::Value = rmp_serde::from_slice(&message.payload).expect("msgpack map");
    for field in [
        "exchange", "symbol", "seq", "ts_ms", "ltp", "last_qty", "volume", "bid", "ask",
    ] {
        assert!(value.get(field).is_some(), "missing {field} in {value}");
    }
    assert!(message.subject.starts_with("md.tick.NSE."));
}
