//! `PINNACLE_MD_FEED=replay` wired through the stack: the shipped recording plays onto
//! `md.tick.*` and fills the last-value cache.

use pinnacle_common::codec::Encoding;
use pinnacle_common::model::Tick;
use pinnacle_common::subjects::md;
use pinnacle_tests::{eventually, Backend, TestStack};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_can_replay_a_recording_instead_of_simulating() {
    let stack = TestStack::start_with(Backend::Sqlite, |settings| {
        settings.md.feed = pinnacle_common::config::FeedKind::Replay;
        settings.md.replay_file = Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../publisher/data/replay.sample.jsonl"
            )
            .into(),
        );
        settings.md.replay_speed = 50.0;
        settings.md.replay_loop = true;
    })
    .await;
    let ticks = stack.wait_for_ticks("TCS-EQ", 4).await;
    let prices: Vec<i64> = ticks.iter().map(|t| t.ltp).collect();
    assert!(prices.iter().all(|p| *p > 300_000), "{prices:?}");
    for pair in ticks.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let request =
        rmp_serde::to_vec_named(&serde_json::json!({"exchange": "NSE", "symbol": "SBIN-EQ"}))
            .expect("encode");
    let last: Tick = eventually(Duration::from_secs(10), "a cached replayed tick", || {
        let request = request.clone();
        let stack = &stack;
        async move {
            let reply = stack
                .request(
                    md::LAST.to_string(),
                    None,
                    Encoding::MsgPack,
                    request.into(),
                )
                .await;
            let value: serde_json::Value = rmp_serde::from_slice(&reply.payload).ok()?;
            serde_json::from_value(value.get("result")?.clone()).ok()
        }
    })
    .await;
    assert_eq!(last.symbol, "SBIN-EQ");
}
