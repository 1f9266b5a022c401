//! Tests of the simulated feed: determinism, recycled batches, market rules, hours, scale.

use super::*;

fn specs() -> Vec<SymbolSpec> {
    parse_symbols("NSE:SBIN-EQ@820.50, NSE:TCS-EQ, BSE:NIFTY 50@24000, NFO:NIFTY30DEC26FUT@24000")
        .expect("parses")
}

fn feed(seed: u64) -> SimFeed {
    SimFeed::new(
        specs(),
        &Catalog::sample(),
        seed,
        Duration::from_millis(1),
        true,
    )
}

#[tokio::test]
async fn same_seed_same_path_and_sequences_count_up() {
    let (mut a, mut b, mut c) = (feed(7), feed(7), feed(8));
    let mut differs = false;
    for round in 1..=200u64 {
        let (ta, tb, tc) = (a.step(), b.step(), c.step());
        for ((x, y), z) in ta.iter().zip(&tb).zip(&tc) {
            let same_time = MarketTick {
                ts_ms: x.ts_ms,
                ..y.clone()
            };
            assert_eq!(x, &same_time);
            assert_eq!(x.seq, round);
            differs |= x.ltp != z.ltp;
        }
    }
    assert!(differs, "a different seed should walk differently");
}

#[test]
fn a_recycled_batch_gives_the_same_ticks_as_a_fresh_one() {
    let (mut fresh, mut recycled) = (feed(3), feed(3));
    for round in 1..=50u64 {
        let (a, b) = (fresh.step(), recycled.step());
        assert_eq!(a.len(), specs().len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                x,
                &MarketTick {
                    ts_ms: x.ts_ms,
                    ..y.clone()
                }
            );
            assert_eq!(y.seq, round);
        }
        // Names of different lengths land in each slot in turn.
        let mut b = b;
        b.rotate_left(1);
        recycled.recycle(b);
    }
}

#[tokio::test]
async fn ticks_respect_tick_size_lots_circuits_and_the_book() {
    let mut sim = feed(1);
    let mut last_volume = vec![0; sim.len()];
    for _ in 0..2_000 {
        for (i, t) in sim.step().into_iter().enumerate() {
            let (Some(lower), Some(upper)) = (t.lower_circuit, t.upper_circuit) else {
                panic!("circuits missing");
            };
            assert!(lower <= t.ltp && t.ltp <= upper, "{t:?}");
            let tick = if t.symbol == "NIFTY30DEC26FUT" { 10 } else { 5 };
            assert_eq!(t.ltp % tick, 0, "{t:?}");
            if t.symbol == "NIFTY30DEC26FUT" {
                assert_eq!(t.last_qty % 75, 0, "whole lots");
            }
            assert!(t.bid < t.ask && t.volume > last_volume[i]);
            last_volume[i] = t.volume;
            let (high, low) = (t.high.unwrap_or(0), t.low.unwrap_or(0));
            assert!(low <= t.ltp && t.ltp <= high);
            let book = t.depth_message().expect("book");
            assert_eq!(
                (book.bids.len(), book.asks.len()),
                (BOOK_LEVELS, BOOK_LEVELS)
            );
            assert_eq!((book.bids[0].price, book.asks[0].price), (t.bid, t.ask));
            assert!(book.bids.windows(2).all(|w| w[0].price > w[1].price));
        }
    }
}

/// The bundled calendar and two symbols on exchanges with different hours (NSE, MCX).
fn hours_fixture() -> (Arc<Calendar>, Vec<SymbolSpec>) {
    let calendar = Arc::new(Calendar::load(None).expect("bundled"));
    let specs = parse_symbols("NSE:SBIN-EQ@820, MCX:CRUDEOIL18DEC26FUT@6500").expect("specs");
    (calendar, specs)
}

/// A feed over `specs` that follows `calendar` at `clock`.
fn hours_feed(specs: &[SymbolSpec], calendar: &Arc<Calendar>, clock: Clock) -> SimFeed {
    SimFeed::new(
        specs.to_vec(),
        &Catalog::sample(),
        1,
        Duration::from_millis(1),
        false,
    )
    .with_hours(calendar.clone(), clock)
}

/// The clock at an RFC 3339 time.
fn at(t: &str) -> Clock {
    Clock::from_setting(t).expect("time")
}

#[test]
fn with_hours_symbols_tick_only_while_their_exchange_is_open() {
    let (calendar, specs) = hours_fixture();
    let feed = |clock| hours_feed(&specs, &calendar, clock);
    let symbols = |mut f: SimFeed| f.step().into_iter().map(|t| t.symbol).collect::<Vec<_>>();
    // Wednesday 11:00: both; 20:00: MCX only; 03:16, Saturday, Christmas: none.
    assert_eq!(symbols(feed(at("2026-12-02T11:00:00+05:30"))).len(), 2);
    assert_eq!(
        symbols(feed(at("2026-12-02T20:00:00+05:30"))),
        vec!["CRUDEOIL18DEC26FUT".to_string()]
    );
    assert!(symbols(feed(at("2026-12-02T03:16:00+05:30"))).is_empty());
    assert!(symbols(feed(at("2026-12-05T11:00:00+05:30"))).is_empty());
    assert_eq!(
        symbols(feed(at("2026-12-25T11:00:00+05:30"))).len(),
        1,
        "MCX trades"
    );
    let tick = feed(at("2026-12-02T11:00:00+05:30")).step().remove(0);
    let ist = chrono::DateTime::from_timestamp_millis(tick.ts_ms)
        .expect("ts")
        .with_timezone(&pinnacle_common::clock::ist());
    assert_eq!(
        ist.format("%Y-%m-%d %H").to_string(),
        "2026-12-02 11",
        "clock time"
    );
}

#[test]
fn thousands_of_symbols_are_cheap() {
    let mut sim = SimFeed::new(
        synthetic(5_000),
        &Catalog::default(),
        3,
        Duration::from_millis(1),
        false,
    );
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(sim.step().len(), 5_000);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_closed_market_offers_its_previous_close_and_an_open_one_nothing() {
    let (calendar, specs) = hours_fixture();
    let feed = |clock| hours_feed(&specs, &calendar, clock);
    let closes = |mut f: SimFeed| async move {
        let mut ticks = f.closing_prices().await;
        ticks.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        ticks
            .into_iter()
            .map(|t| (t.symbol, t.ltp, t.seq, t.last_qty, t.close))
            .collect::<Vec<_>>()
    };
    // 03:16 on a Wednesday: both closed, each at its starting price with no trade.
    assert_eq!(
        closes(feed(at("2026-12-02T03:16:00+05:30"))).await,
        vec![
            (
                "CRUDEOIL18DEC26FUT".to_string(),
                650_000,
                0,
                0,
                Some(650_000)
            ),
            ("SBIN-EQ".to_string(), 82_000, 0, 0, Some(82_000)),
        ]
    );
    // 20:00: MCX trades, NSE is closed.
    let evening = closes(feed(at("2026-12-02T20:00:00+05:30"))).await;
    assert_eq!(evening.len(), 1);
    assert_eq!(evening[0].0, "SBIN-EQ");
    // In the session, and without hours at all, there is nothing to offer.
    assert!(closes(feed(at("2026-12-02T11:00:00+05:30")))
        .await
        .is_empty());
    let mut always = SimFeed::new(
        specs.clone(),
        &Catalog::sample(),
        1,
        Duration::from_millis(1),
        false,
    );
    assert!(always.closing_prices().await.is_empty());
    // After a day's trading, the close offered is the last price, not the start.
    let mut traded = feed(at("2026-12-02T11:00:00+05:30"));
    let last = traded
        .step()
        .into_iter()
        .find(|t| t.symbol == "SBIN-EQ")
        .expect("SBIN");
    traded.hours = Some((calendar.clone(), at("2026-12-02T16:00:00+05:30")));
    let close = traded.closing_prices().await;
    let sbin = close
        .iter()
        .find(|t| t.symbol == "SBIN-EQ")
        .expect("SBIN closed");
    assert_eq!((sbin.ltp, sbin.seq), (last.ltp, last.seq));
}
