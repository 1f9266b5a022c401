//! The paper broker's unit tests.

use super::*;
use pinnacle_common::broker::{Admission, Broker, BrokerCredentials, BrokerError, Filled};
use pinnacle_common::model::{OrderRequest, OrderStatus, Tick};
use pinnacle_common::model::{OrderType, Side};
use secrecy::SecretString;

fn tick(seq: u64, ltp: i64) -> Tick {
    Tick {
        exchange: "NSE".into(),
        symbol: "SBIN-EQ".into(),
        seq,
        ts_ms: 0,
        ltp,
        last_qty: 1,
        volume: 1,
        bid: ltp - 5,
        ask: ltp + 5,
    }
}

fn order(order_type: OrderType, side: Side, price: Option<i64>) -> OrderRequest {
    OrderRequest {
        client_order_id: "c".into(),
        exchange: "NSE".into(),
        symbol: "SBIN-EQ".into(),
        side,
        order_type,
        quantity: 10,
        price,
        trigger_price: None,
        product: Default::default(),
        account: None,
    }
}

fn creds() -> BrokerCredentials {
    BrokerCredentials {
        client_code: Some(SecretString::from("PAPER01")),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_symbol_without_a_price_is_retryable_not_unknown() {
    // No tick and no publisher to ask: the worker cannot price it yet.
    let broker = PaperBroker::new();
    assert!(
        !broker
            .wait_ready(std::time::Duration::from_millis(10))
            .await
    );
    assert!(matches!(
        broker
            .ready_for(&order(OrderType::Market, Side::Buy, None))
            .await,
        Err(BrokerError::PriceUnavailable { .. })
    ));
    broker.observe(tick(1, 82_000));
    assert!(
        broker
            .wait_ready(std::time::Duration::from_millis(10))
            .await
    );
    assert!(broker
        .ready_for(&order(OrderType::Market, Side::Buy, None))
        .await
        .is_ok());
}

#[test]
fn a_later_tick_of_a_publisher_that_counts_lower_still_prices_orders() {
    let broker = PaperBroker::new();
    let at = |seq, ts_ms, ltp| Tick {
        ts_ms,
        ..tick(seq, ltp)
    };
    // A publisher that overlapped this one and counted higher has stopped.
    broker.observe(at(2_000_000, 1_000, 82_000));
    broker.observe(at(500, 2_000, 90_000));
    assert_eq!(
        broker.last_tick("NSE", "SBIN-EQ").map(|t| t.ltp),
        Some(90_000)
    );
    // Older by both its number and its time: a late copy from the last-value cache.
    broker.observe(at(499, 1_500, 10));
    assert_eq!(
        broker.last_tick("NSE", "SBIN-EQ").map(|t| t.ltp),
        Some(90_000)
    );
}

#[tokio::test]
async fn fills_market_orders_at_the_last_tick() {
    let broker = PaperBroker::new();
    broker.observe(tick(2, 82_000));
    broker.observe(tick(1, 10)); // stale: ignored
    let out = broker
        .place_order(
            &creds(),
            "o1",
            &order(OrderType::Market, Side::Buy, None),
            Admission::default(),
        )
        .await
        .expect("fills");
    assert_eq!(out.status, OrderStatus::Filled);
    assert_eq!(out.average_price, Some(82_000));
    assert_eq!(out.filled_quantity, 10);
}

#[tokio::test]
async fn limit_orders_rest_unless_marketable_and_unknown_symbols_fail() {
    let broker = PaperBroker::new();
    broker.observe(tick(1, 82_000));
    let resting = broker
        .place_order(
            &creds(),
            "o",
            &order(OrderType::Limit, Side::Buy, Some(81_000)),
            Admission::default(),
        )
        .await
        .expect("accepted");
    assert_eq!(resting.status, OrderStatus::Open);
    let filled = broker
        .place_order(
            &creds(),
            "o",
            &order(OrderType::Limit, Side::Sell, Some(81_000)),
            Admission::default(),
        )
        .await
        .expect("accepted");
    assert_eq!(filled.status, OrderStatus::Filled);
    let unknown = OrderRequest {
        symbol: "NOPE".into(),
        ..order(OrderType::Market, Side::Buy, None)
    };
    assert!(matches!(
        broker
            .place_order(&creds(), "o", &unknown, Admission::default())
            .await,
        Err(BrokerError::UnknownSymbol { .. })
    ));
    assert!(matches!(
        broker
            .place_order(
                &BrokerCredentials::default(),
                "o",
                &order(OrderType::Market, Side::Buy, None),
                Admission::default()
            )
            .await,
        Err(BrokerError::Credentials(_))
    ));
    // The engine hears it before it stores the order.
    assert!(matches!(
        broker.preflight(
            &BrokerCredentials::default(),
            &order(OrderType::Market, Side::Buy, None)
        ),
        Err(BrokerError::Credentials(_))
    ));
    assert!(broker
        .preflight(&creds(), &order(OrderType::Market, Side::Buy, None))
        .is_ok());
}

fn clock_at(text: &str) -> pinnacle_common::clock::Clock {
    pinnacle_common::clock::Clock::starting_at(
        chrono::DateTime::parse_from_rfc3339(text)
            .expect("RFC 3339")
            .with_timezone(&chrono::Utc),
    )
}

fn broker_at(now: &str) -> PaperBroker {
    let calendar = pinnacle_common::calendar::Calendar::load(None).expect("bundled calendar");
    let broker = PaperBroker::new().with_hours(MarketHours::exchange(calendar, clock_at(now)));
    broker.observe(tick(1, 82_000));
    broker
}

#[tokio::test]
async fn a_closed_exchange_takes_marketable_orders_as_after_market_orders() {
    // After hours, on a Saturday and on Christmas: accepted, resting, nothing filled.
    for now in [
        "2026-12-02T20:00:00+05:30",
        "2026-12-05T11:00:00+05:30",
        "2026-12-25T11:00:00+05:30",
    ] {
        let broker = broker_at(now);
        for request in [
            order(OrderType::Market, Side::Buy, None),
            order(OrderType::Limit, Side::Sell, Some(81_000)),
        ] {
            let out = broker
                .place_order(&creds(), "o", &request, Admission::default())
                .await
                .expect("accepted");
            assert_eq!(
                (out.status, out.filled_quantity, out.average_price),
                (OrderStatus::Open, 0, None),
                "{now}"
            );
            let modified = broker
                .modify_order(&creds(), &out.broker_order_id, &request, Filled::default())
                .await
                .expect("modifiable");
            assert_eq!(modified.status, OrderStatus::Open, "still after-market");
            let cancelled = broker
                .cancel_order(&creds(), &out.broker_order_id, &request, Filled::default())
                .await
                .expect("cancellable");
            assert_eq!(cancelled.status, OrderStatus::Cancelled);
        }
    }
    // In the session the same order fills at once; the checks still apply when closed.
    let open = broker_at("2026-12-02T10:00:00+05:30");
    let out = open
        .place_order(
            &creds(),
            "o",
            &order(OrderType::Market, Side::Buy, None),
            Admission::default(),
        )
        .await
        .expect("fills");
    assert_eq!(
        (out.status, out.average_price),
        (OrderStatus::Filled, Some(82_000))
    );
    let closed = broker_at("2026-12-02T20:00:00+05:30");
    assert!(matches!(
        closed
            .place_order(
                &creds(),
                "o",
                &order(OrderType::Limit, Side::Buy, None),
                Admission::default()
            )
            .await,
        Err(BrokerError::Rejected(_))
    ));
    assert!(matches!(
        closed
            .place_order(
                &BrokerCredentials::default(),
                "o",
                &order(OrderType::Market, Side::Buy, None),
                Admission::default()
            )
            .await,
        Err(BrokerError::Credentials(_))
    ));
}

#[tokio::test]
async fn what_filled_stays_filled_through_a_modify_or_a_cancel() {
    // A BUY LIMIT for 10 of which 4 filled at ₹800.03 (the last price is ₹820).
    let broker = broker_at("2026-12-02T10:00:00+05:30");
    let filled = Filled {
        quantity: 4,
        average_price: Some(80_003),
    };
    let resting = OrderRequest {
        quantity: 12,
        ..order(OrderType::Limit, Side::Buy, Some(81_000))
    };
    let out = broker
        .modify_order(&creds(), "PAPER-o", &resting, filled)
        .await
        .expect("modifiable");
    assert_eq!(
        (
            out.status,
            out.filled_quantity,
            out.average_price,
            out.fill_value
        ),
        (OrderStatus::PartiallyFilled, 4, Some(80_003), None),
        "still resting: the 4 stay filled at their price"
    );
    // Priced into the market: only the other 8 fill, at the last price, and the average
    // covers all 12 (rounded down), while the value is the 8's own.
    let marketable = OrderRequest {
        price: Some(83_000),
        ..resting.clone()
    };
    let out = broker
        .modify_order(&creds(), "PAPER-o", &marketable, filled)
        .await
        .expect("modifiable");
    assert_eq!(
        (out.status, out.filled_quantity, out.fill_value),
        (OrderStatus::Filled, 12, Some(8 * 82_000))
    );
    assert_eq!(out.average_price, Some((4 * 80_003 + 8 * 82_000) / 12));
    let out = broker
        .cancel_order(&creds(), "PAPER-o", &resting, filled)
        .await
        .expect("cancellable");
    assert_eq!(
        (out.status, out.filled_quantity, out.average_price),
        (OrderStatus::Cancelled, 4, Some(80_003)),
        "a cancel ends the rest, not the fill"
    );
}

/// A modify whose worker died after the paper broker took it (its re-reservation
/// committed) and before the new terms were recorded: `find_order` reports the order on
/// the terms the books hold, so reconciliation settles it there and its reservation
/// matches (black-box finding helper-60 F2). A modify that never reached the books leaves
/// nothing to report, and the order goes back to its old terms, as its reservation is.
#[tokio::test]
async fn a_lost_modify_is_found_on_the_terms_the_books_took() {
    use crate::engine::fixtures;
    use pinnacle_common::broker::{OrderKeys, OrderTerms};
    use pinnacle_common::entities::orders;
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};

    let db = fixtures::database_with_account().await;
    let broker = PaperBroker::with_ledger(db.clone(), 10_000_000);
    broker.observe(tick(1, 82_000));
    let creds = BrokerCredentials {
        account_id: "id-paper".into(),
        ..creds()
    };
    let resting = order(OrderType::Limit, Side::Buy, Some(81_000));
    let row = orders::Model {
        price: Some(81_000),
        product: resting.product.as_str().into(),
        status: "SUBMITTED".into(),
        ..fixtures::order_row("o-lost", "u1", "id-paper")
    };
    orders::Entity::insert(row.clone().into_active_model())
        .exec(&db)
        .await
        .expect("the order");
    let placed = broker
        .place_order(&creds, "o-lost", &resting, Admission::default())
        .await
        .expect("rests");
    assert_eq!(placed.status, OrderStatus::Open);
    let mut pending = row.into_active_model();
    pending.status = Set("PENDING_MODIFY".into());
    pending.broker_order_id = Set(Some(placed.broker_order_id.clone()));
    pending.update(&db).await.expect("pending modify");
    let keys = OrderKeys {
        order_id: "o-lost",
        broker_order_id: Some(&placed.broker_order_id),
        broker_unique_id: None,
    };
    let found = broker.find_order(&creds, keys).await.expect("read");
    assert!(found.is_none(), "no modify reached the books: {found:?}");

    // The modify to 6 at ₹805 reaches the books; its worker dies before recording it.
    let modified = OrderRequest {
        quantity: 6,
        price: Some(80_500),
        ..resting.clone()
    };
    broker
        .modify_order(
            &creds,
            &placed.broker_order_id,
            &modified,
            Filled::default(),
        )
        .await
        .expect("taken");
    let found = broker
        .find_order(&creds, keys)
        .await
        .expect("read")
        .expect("the modify the books took");
    assert_eq!(
        (found.status, found.filled_quantity, found.terms),
        (
            OrderStatus::Open,
            0,
            OrderTerms {
                quantity: Some(6),
                price: Some(80_500),
                trigger_price: None
            }
        )
    );
    assert_eq!(found.broker_order_id, placed.broker_order_id);
    let funds = broker.funds(&creds).await.expect("funds");
    assert_eq!(funds.blocked, 6 * 80_500, "reserved for the new terms");
}
