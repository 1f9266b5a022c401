//! Replay: a recorded file of ticks or candles, played back at a speed factor.
//!
//! The file is JSON lines (one JSON object per line; blank lines and lines starting with
//! `#` are skipped). A line is either
//! - a **tick**: `{"exchange":"NSE","symbol":"SBIN-EQ","ts_ms":1764041400000,"ltp":82050,
//!   "last_qty":10,"volume":1000,"bid":82045,"ask":82055}` (`last_qty`, `volume`, `bid`,
//!   `ask` and every optional `md.tick` field may be left out), or
//! - a **candle**: `{"exchange":"NSE","symbol":"SBIN-EQ","ts_ms":1764041400000,
//!   "interval_ms":60000,"open":82000,"high":82100,"low":81950,"close":82050,"volume":1200}`,
//!   played as four ticks (open, high, low, close) spread over the candle.
//!
//! Lines must be in time order. Time between records is the difference of their `ts_ms`
//! divided by the speed (`2.0` is twice as fast; `0` means no waiting). Sequence numbers
//! are assigned per symbol by the replay, so they stay gap-free across loops. A malformed
//! line is logged and skipped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use pinnacle_common::feed::{FeedError, MarketFeed};
use pinnacle_common::model::{FeedMode, MarketTick, Tick};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::time::Instant;

#[derive(Debug, Deserialize)]
struct RecordedCandle {
    exchange: String,
    symbol: String,
    ts_ms: i64,
    #[serde(default = "default_candle_ms")]
    interval_ms: i64,
    open: i64,
    high: i64,
    low: i64,
    close: i64,
    #[serde(default)]
    volume: i64,
}

fn default_candle_ms() -> i64 {
    60_000
}

#[derive(Debug, Deserialize)]
struct RecordedTick {
    exchange: String,
    symbol: String,
    ts_ms: i64,
    ltp: i64,
    #[serde(default)]
    last_qty: i64,
    #[serde(default)]
    volume: i64,
    #[serde(default)]
    bid: Option<i64>,
    #[serde(default)]
    ask: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Record {
    Tick(RecordedTick),
    Candle(RecordedCandle),
}

/// Expands one record into (ts_ms, tick-without-seq) pairs.
fn expand(record: Record) -> Vec<MarketTick> {
    let make = |exchange: &str,
                symbol: &str,
                ts_ms,
                ltp,
                last_qty,
                volume,
                bid: Option<i64>,
                ask: Option<i64>| {
        let mut tick = MarketTick::from_core(Tick {
            exchange: exchange.to_string(),
            symbol: symbol.to_string(),
            seq: 0,
            ts_ms,
            ltp,
            last_qty,
            volume,
            bid: bid.unwrap_or(ltp),
            ask: ask.unwrap_or(ltp),
        });
        tick.mode = FeedMode::Ltp;
        tick
    };
    match record {
        Record::Tick(t) => vec![make(
            &t.exchange,
            &t.symbol,
            t.ts_ms,
            t.ltp,
            t.last_qty,
            t.volume,
            t.bid,
            t.ask,
        )],
        Record::Candle(c) => {
            let quarter = c.interval_ms.max(4) / 4;
            let part = c.volume / 4;
            [c.open, c.high, c.low, c.close]
                .into_iter()
                .enumerate()
                .map(|(i, price)| {
                    let i = i as i64;
                    let qty = if i == 3 { c.volume - 3 * part } else { part };
                    make(
                        &c.exchange,
                        &c.symbol,
                        c.ts_ms + i * quarter,
                        price,
                        qty,
                        0,
                        None,
                        None,
                    )
                })
                .collect()
        }
    }
}

/// Plays a JSON-lines recording.
#[derive(Debug)]
pub struct ReplayFeed {
    /// The recording.
    path: PathBuf,
    /// Speed factor; 0 means no pacing.
    speed: f64,
    /// Start again at the end.
    looping: bool,
    /// The open file.
    lines: Option<Lines<BufReader<tokio::fs::File>>>,
    /// Ticks read but not yet handed out.
    pending: std::collections::VecDeque<MarketTick>,
    /// (recorded ts of the first record, wall time it was played) for pacing.
    origin: Option<(i64, Instant)>,
    /// Per-symbol sequence numbers and running volume.
    seqs: HashMap<(String, String), (u64, i64)>,
    /// Lines skipped as malformed.
    pub skipped: u64,
    /// Whether the file has ended and will not loop.
    finished: bool,
    /// Records read since the file was last opened, to refuse looping an empty file.
    read_this_pass: u64,
}

impl ReplayFeed {
    /// A replay of `path` at `speed`.
    pub fn new(path: impl Into<PathBuf>, speed: f64, looping: bool) -> Self {
        Self {
            path: path.into(),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                0.0
            },
            looping,
            lines: None,
            pending: Default::default(),
            origin: None,
            seqs: HashMap::new(),
            skipped: 0,
            finished: false,
            read_this_pass: 0,
        }
    }

    async fn fill(&mut self) -> Result<(), FeedError> {
        while self.pending.is_empty() && !self.finished {
            if self.lines.is_none() {
                let file = tokio::fs::File::open(&self.path)
                    .await
                    .map_err(|e| FeedError(format!("{}: {e}", self.path.display())))?;
                self.lines = Some(BufReader::new(file).lines());
                self.origin = None;
                self.read_this_pass = 0;
            }
            let Some(lines) = self.lines.as_mut() else {
                continue;
            };
            let line = lines
                .next_line()
                .await
                .map_err(|e| FeedError(format!("{}: {e}", self.path.display())))?;
            let Some(line) = line else {
                self.lines = None;
                if self.looping && self.read_this_pass == 0 {
                    return Err(FeedError(format!("{}: no records", self.path.display())));
                }
                if !self.looping {
                    self.finished = true;
                    return Ok(());
                }
                continue;
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(record) => {
                    self.read_this_pass += 1;
                    self.pending.extend(expand(record));
                }
                Err(error) => {
                    self.skipped += 1;
                    tracing::warn!(%error, "replay: skipping a malformed line");
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MarketFeed for ReplayFeed {
    fn name(&self) -> &'static str {
        "replay"
    }

    async fn next_batch(&mut self) -> Result<Vec<MarketTick>, FeedError> {
        self.fill().await?;
        let Some(first) = self.pending.front() else {
            // Played to the end without looping: stay quiet.
            std::future::pending::<()>().await;
            return Ok(Vec::new());
        };
        let ts = first.ts_ms;
        let (origin_ts, origin_wall) = *self.origin.get_or_insert((ts, Instant::now()));
        if self.speed > 0.0 {
            let offset = ((ts - origin_ts).max(0) as f64 / self.speed) as u64;
            tokio::time::sleep_until(origin_wall + Duration::from_millis(offset)).await;
        }
        let mut batch = Vec::new();
        while self.pending.front().is_some_and(|t| t.ts_ms == ts) {
            let Some(mut tick) = self.pending.pop_front() else {
                break;
            };
            let entry = self
                .seqs
                .entry((tick.exchange.clone(), tick.symbol.clone()))
                .or_insert((0, 0));
            entry.0 += 1;
            entry.1 = if tick.volume > 0 {
                tick.volume
            } else {
                entry.1 + tick.last_qty
            };
            tick.seq = entry.0;
            tick.volume = entry.1;
            batch.push(tick);
            if self.pending.is_empty() && !self.finished {
                self.fill().await?;
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn recording(lines: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(lines.as_bytes()).expect("write");
        file
    }

    const FILE: &str = r#"# two ticks a second apart, then a one-minute candle
{"exchange":"NSE","symbol":"SBIN-EQ","ts_ms":1000,"ltp":82000,"last_qty":10,"volume":10}
not json
{"exchange":"NSE","symbol":"SBIN-EQ","ts_ms":2000,"ltp":82005,"last_qty":5}
{"exchange":"NSE","symbol":"TCS-EQ","ts_ms":2000,"ltp":341000}
{"exchange":"NSE","symbol":"INFY-EQ","ts_ms":3000,"interval_ms":60000,"open":100,"high":120,"low":90,"close":110,"volume":40}
"#;

    #[tokio::test(start_paused = true)]
    async fn plays_ticks_and_candles_at_the_speed_factor() {
        let file = recording(FILE);
        let mut feed = ReplayFeed::new(file.path(), 2.0, false);
        let start = Instant::now();
        let first = feed.next_batch().await.expect("batch");
        assert_eq!((first.len(), first[0].seq, first[0].ltp), (1, 1, 82_000));
        let second = feed.next_batch().await.expect("batch");
        assert_eq!(second.len(), 2, "same timestamp, one batch");
        assert_eq!((second[0].seq, second[0].volume), (2, 15));
        assert_eq!(start.elapsed(), Duration::from_millis(500), "1 s at 2x");
        let mut candle = Vec::new();
        for _ in 0..4 {
            candle.extend(feed.next_batch().await.expect("batch"));
        }
        let prices: Vec<_> = candle.iter().map(|t| t.ltp).collect();
        assert_eq!(prices, [100, 120, 90, 110]);
        assert_eq!(candle.iter().map(|t| t.last_qty).sum::<i64>(), 40);
        assert_eq!(feed.skipped, 1);
        // At the end, a non-looping replay goes quiet instead of erroring.
        let quiet = tokio::time::timeout(Duration::from_secs(60), feed.next_batch()).await;
        assert!(quiet.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn loops_with_continuing_sequence_numbers_and_reports_missing_files() {
        let file = recording(FILE);
        let mut feed = ReplayFeed::new(file.path(), 0.0, true);
        let mut seen = Vec::new();
        for _ in 0..12 {
            for t in feed.next_batch().await.expect("batch") {
                if t.symbol == "SBIN-EQ" {
                    seen.push(t.seq);
                }
            }
        }
        assert_eq!(&seen[..4], &[1, 2, 3, 4]);
        let mut missing = ReplayFeed::new("/nonexistent/replay.jsonl", 1.0, false);
        assert!(missing.next_batch().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_shipped_sample_plays() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/replay.sample.jsonl");
        let mut feed = ReplayFeed::new(path, 0.0, false);
        let mut ticks = 0;
        for _ in 0..40 {
            ticks += feed.next_batch().await.expect("batch").len();
        }
        assert_eq!((ticks, feed.skipped), (40, 0));
    }
}
