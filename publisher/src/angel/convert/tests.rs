//! Tests of the feed conversion: price divisors, plans and their limits, ticks from packets.

use super::*;
use pinnacle_smartapi::ticks::{Ltp, SnapQuote};

fn ltp_packet(kind: ExchangeType, token: &str, raw: i64) -> Ltp {
    Ltp {
        exchange_type: kind,
        token: token.into(),
        sequence_number: 9,
        exchange_timestamp_ms: 1_700_000_000_000,
        last_traded_price: raw,
    }
}

#[test]
fn prices_use_the_exchange_divisor() {
    assert_eq!(to_paise(ExchangeType::NseCm, 82_050), 82_050);
    assert_eq!(to_paise(ExchangeType::CdeFo, 832_525_000), 8_325);
    assert_eq!(to_paise(ExchangeType::CdeFo, 832_550_000), 8_326);
    assert_eq!(to_paise(ExchangeType::CdeFo, -832_550_000), -8_326);
    assert_eq!(
        to_paise(ExchangeType::CdeFo, i64::MAX),
        i64::MAX / 100_000 + 1
    );
    assert_eq!(to_paise(ExchangeType::NseCm, i64::MIN), i64::MIN);
}

#[test]
fn the_plan_resolves_symbols_through_the_catalog() {
    let catalog = Catalog::sample();
    let plan = Plan::new(
        "NSE:SBIN-EQ, nse:reliance-eq,NSE:SBIN-EQ",
        Mode::Quote,
        &catalog,
    )
    .expect("plan");
    assert_eq!(plan.len(), 2);
    assert_eq!(plan.subscriptions.len(), 1);
    assert!(matches!(
        Plan::new("NSE:NOPE-EQ", Mode::Quote, &catalog),
        Err(PlanError::Unknown(_))
    ));
    assert!(matches!(
        Plan::new("SBIN", Mode::Quote, &catalog),
        Err(PlanError::Syntax(_))
    ));
    assert!(matches!(
        Plan::new(" ", Mode::Quote, &catalog),
        Err(PlanError::Empty)
    ));
    let depth = Plan::new("NSE:SBIN-EQ,NFO:NIFTY30DEC26FUT", Mode::Depth, &catalog).expect("plan");
    let modes: Vec<_> = depth
        .subscriptions
        .iter()
        .map(|(m, l)| (*m, l.len()))
        .collect();
    assert_eq!(modes, vec![(Mode::SnapQuote, 2), (Mode::Depth, 1)]);
    assert!(parse_mode("bogus").is_err());
    assert_eq!(parse_mode("snap_quote").ok(), Some(Mode::SnapQuote));
}

#[test]
fn packets_become_ticks_with_our_own_sequence_numbers() {
    let catalog = Catalog::sample();
    let mut plan = Plan::new("NSE:SBIN-EQ", Mode::SnapQuote, &catalog).expect("plan");
    let token = catalog
        .by_symbol("NSE", "SBIN-EQ")
        .expect("listed")
        .token
        .clone();
    let first = plan
        .tick(
            &Packet::Ltp(ltp_packet(ExchangeType::NseCm, &token, 82_050)),
            1,
        )
        .expect("tick");
    assert_eq!(
        (first.seq, first.ltp, first.mode),
        (1, 82_050, FeedMode::Ltp)
    );
    assert_eq!(
        (first.exchange.as_str(), first.symbol.as_str()),
        ("NSE", "SBIN-EQ")
    );
    let quote = Quote {
        ltp: ltp_packet(ExchangeType::NseCm, &token, 82_100),
        last_traded_quantity: 5,
        average_traded_price: 82_000,
        volume: 1_000,
        total_buy_quantity: 10.0,
        total_sell_quantity: 20.0,
        open: 81_000,
        high: 83_000,
        low: 80_000,
        close: 81_500,
    };
    let book = |flag| BestFive {
        flag,
        quantity: 7,
        price: if flag == 0 { 82_105 } else { 82_095 },
        orders: 2,
    };
    let snap = SnapQuote {
        quote,
        last_traded_timestamp_s: 1,
        open_interest: 0,
        open_interest_change_pct: 0.0,
        best_five_buy: vec![book(1)],
        best_five_sell: vec![book(0)],
        upper_circuit: 90_000,
        lower_circuit: 70_000,
        week_52_high: 1,
        week_52_low: 1,
    };
    let second = plan.tick(&Packet::SnapQuote(snap), 1).expect("tick");
    assert_eq!(second.seq, 2);
    assert_eq!((second.bid, second.ask), (82_095, 82_105));
    assert_eq!(second.upper_circuit, Some(90_000));
    assert_eq!(second.depth_message().map(|d| d.bids.len()), Some(1));
    let stranger = Packet::Ltp(ltp_packet(ExchangeType::NseCm, "1", 1));
    assert!(plan.tick(&stranger, 1).is_none());
}
