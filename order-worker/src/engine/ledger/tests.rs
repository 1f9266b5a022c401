//! The books against a real (in-memory SQLite) database: reservations, fills, ends and the
//! short-selling rule, checked through the rows.

use pinnacle_common::broker::OrderTerms;
use pinnacle_common::entities::{
    orders, paper_funds, paper_positions, paper_reservations, paper_trades,
};
use pinnacle_common::model::{Funds, Product, Side};
use pinnacle_common::writes::{WriteTxn, Writer};
use sea_orm::{DatabaseConnection, EntityTrait, TransactionTrait};

use super::reserve::reserve_unfenced as reserve;
use super::*;
use crate::engine::fixtures::{self, database as db, databases};

/// The paper account [`fixtures::with_account`] stores (of user `u1`).
const ACCOUNT: &str = "id-paper";

fn claim<'a>(order_id: &'a str, side: Side, product: Product, units: i64, price: i64) -> Claim<'a> {
    Claim {
        account_id: ACCOUNT,
        order_id,
        exchange: "NSE",
        symbol: "SBIN-EQ",
        product,
        side,
        units,
        unit_price: price,
    }
}

fn order(
    id: &str,
    side: Side,
    product: Product,
    status: &str,
    filled: i64,
    average: Option<i64>,
) -> orders::Model {
    orders::Model {
        side: side.as_str().into(),
        product: product.as_str().into(),
        status: status.into(),
        filled_quantity: filled,
        average_price: average,
        broker_order_id: Some(format!("PAPER-{id}")),
        ..fixtures::order_row(id, "u1", ACCOUNT)
    }
}

async fn step(
    db: &DatabaseConnection,
    books: &Books,
    before: &orders::Model,
    after: &orders::Model,
) {
    let txn = db.begin().await.expect("begin");
    apply(&txn, books, before, after, None)
        .await
        .expect("apply");
    txn.commit().await.expect("commit");
}

async fn funds(db: &DatabaseConnection, books: &Books) -> Funds {
    books.funds(db, ACCOUNT).await.expect("funds")
}

async fn position(db: &DatabaseConnection, product: Product) -> paper_positions::Model {
    position_if_any(db, product.as_str())
        .await
        .expect("position")
}

/// The account's position in the one instrument these tests trade, if it has one.
async fn position_if_any(db: &DatabaseConnection, product: &str) -> Option<paper_positions::Model> {
    paper_positions::Entity::find_by_id((
        ACCOUNT.to_string(),
        "NSE".to_string(),
        "SBIN-EQ".to_string(),
        product.to_string(),
    ))
    .one(db)
    .await
    .expect("query")
}

/// Stores `order` (the books read a reservation's side and instrument from its order).
async fn store_order(db: &DatabaseConnection, order: &orders::Model) {
    use sea_orm::IntoActiveModel;
    orders::Entity::insert(order.clone().into_active_model())
        .exec(db)
        .await
        .expect("order");
}

/// The books balance: the cash reserved is what the reservations' cash units cost, the
/// units each position holds are what its orders' reservations hold, and no position
/// holds more units than it can close (a sell's held units are long units, a buy's short).
async fn assert_books_balance(db: &DatabaseConnection, step_no: i32) {
    let orders = orders::Entity::find().all(db).await.expect("orders");
    let reservations = paper_reservations::Entity::find()
        .all(db)
        .await
        .expect("reservations");
    let reserved: i64 = reservations
        .iter()
        .map(|r| r.cash_units * r.unit_price)
        .sum();
    for f in paper_funds::Entity::find().all(db).await.expect("funds") {
        assert_eq!(
            f.reserved, reserved,
            "step {step_no}: {f:?} {reservations:?}"
        );
    }
    for p in paper_positions::Entity::find()
        .all(db)
        .await
        .expect("positions")
    {
        let held = |side: &str| -> i64 {
            reservations
                .iter()
                .filter(|r| {
                    orders
                        .iter()
                        .any(|o| o.id == r.order_id && o.side == side && o.product == p.product)
                })
                .map(|r| r.held_units)
                .sum()
        };
        assert_eq!(
            (p.buy_held, p.sell_held),
            (held("BUY"), held("SELL")),
            "step {step_no}: {p:?} {reservations:?}"
        );
        assert!(
            p.sell_held <= p.net_quantity.max(0) && p.buy_held <= (-p.net_quantity).max(0),
            "step {step_no}: holds more than it can close: {p:?}"
        );
    }
}

/// The F1 case: long 100 intraday; a resting sell `a` holds all 100 units; a market sell
/// `b` of 100 finds none free and reserves cash to go short. `b` fills first and closes
/// the long, so `a` will open the short: its reservation becomes cash at its own price,
/// and the cash `b` released does not come back as available to spend.
#[tokio::test]
async fn a_fill_that_closes_units_another_order_held_makes_that_order_reserve_cash() {
    for (db, _pg) in databases().await {
        closing_someone_elses_units(db, false).await;
    }
    // SQLite's statements that decide in SQL (`fill_in_sql`), through a pipelining writer.
    closing_someone_elses_units(db().await, true).await;
}

async fn closing_someone_elses_units(db: DatabaseConnection, pipelined: bool) {
    let books = Books::new(100_000);
    let w = Writer::new(&db);
    let step = |before: orders::Model, after: orders::Model| {
        let (db, w) = (db.clone(), w.clone());
        async move {
            if pipelined {
                let txn = WriteTxn::begin(&w).await.expect("begin");
                apply(&txn, &books, &before, &after, None)
                    .await
                    .expect("apply in SQL");
                txn.commit().await.expect("commit");
            } else {
                step(&db, &books, &before, &after).await;
            }
        }
    };
    fixtures::with_account(&db).await;
    let intraday = Product::Intraday;
    let long = order("l", Side::Buy, intraday, "OPEN", 0, None);
    store_order(&db, &long).await;
    reserve(&w, &books, &claim("l", Side::Buy, intraday, 100, 100))
        .await
        .expect("buy");
    let mut filled = order("l", Side::Buy, intraday, "FILLED", 100, Some(100));
    filled.quantity = 100;
    step(long, filled).await;
    // Resting sell `a` at 120 holds the 100 units; market sell `b` reserves 100 × 110.
    for (id, price) in [("a", 120), ("b", 110)] {
        let mut model = order(id, Side::Sell, intraday, "OPEN", 0, None);
        model.quantity = 100;
        store_order(&db, &model).await;
        reserve(&w, &books, &claim(id, Side::Sell, intraday, 100, price))
            .await
            .expect("sell");
    }
    assert_eq!(position(&db, intraday).await.sell_held, 100);
    assert_eq!(funds(&db, &books).await.blocked, 11_000);
    let mut b = order("b", Side::Sell, intraday, "OPEN", 0, None);
    b.quantity = 100;
    let mut b_filled = order("b", Side::Sell, intraday, "FILLED", 100, Some(110));
    b_filled.quantity = 100;
    step(b, b_filled).await;

    let p = position(&db, intraday).await;
    assert_eq!((p.net_quantity, p.sell_held, p.realized_pnl), (0, 0, 1_000));
    let a = paper_reservations::Entity::find_by_id("a".to_string())
        .one(&db)
        .await
        .expect("query")
        .expect("a still reserves");
    assert_eq!((a.held_units, a.cash_units, a.unit_price), (0, 100, 120));
    // Cash 100,000, bought for 10,000 and sold for 11,000; `a`'s short holds 12,000.
    let f = funds(&db, &books).await;
    assert_eq!((f.used, f.blocked, f.available), (-1_000, 12_000, 89_000));
    // A buy of 98 % of what looked free before the fix is refused now...
    let refused = reserve(&w, &books, &claim("x", Side::Buy, intraday, 99, 1_000)).await;
    assert!(
        matches!(
            refused,
            Err(Refusal::Funds {
                available: 89_000,
                ..
            })
        ),
        "{refused:?}"
    );
    // ... and `a` filling opens the short with the margin it now holds.
    let mut a_open = order("a", Side::Sell, intraday, "OPEN", 0, None);
    a_open.quantity = 100;
    let mut a_filled = order("a", Side::Sell, intraday, "FILLED", 100, Some(120));
    a_filled.quantity = 100;
    step(a_open, a_filled).await;
    let f = funds(&db, &books).await;
    assert_eq!((f.used, f.blocked, f.available), (-13_000, 24_000, 89_000));
    assert_books_balance(&db, 0).await;
}

#[tokio::test]
async fn a_buy_reserves_its_fills_pay_and_its_cancel_releases_the_rest() {
    let (db, books) = (db().await, Books::new(1_000));
    let w = Writer::new(&db);
    reserve(
        &w,
        &books,
        &claim("b", Side::Buy, Product::Delivery, 10, 100),
    )
    .await
    .expect("fits exactly");
    assert_eq!(funds(&db, &books).await.available, 0);
    let refused = reserve(&w, &books, &claim("x", Side::Buy, Product::Delivery, 1, 5)).await;
    assert!(
        matches!(
            refused,
            Err(Refusal::Funds {
                required: 5,
                available: 0
            })
        ),
        "{refused:?}"
    );

    let open = order("b", Side::Buy, Product::Delivery, "OPEN", 0, None);
    let partial = order(
        "b",
        Side::Buy,
        Product::Delivery,
        "PARTIALLY_FILLED",
        4,
        Some(90),
    );
    step(&db, &books, &open, &partial).await;
    let f = funds(&db, &books).await;
    assert_eq!(
        (f.used, f.blocked, f.available),
        (360, 600, 40),
        "a fill pays its price and frees its reservation"
    );
    let p = position(&db, Product::Delivery).await;
    assert_eq!((p.net_quantity, p.average_price), (4, Some(90)));

    let cancelled = order("b", Side::Buy, Product::Delivery, "CANCELLED", 4, Some(90));
    step(&db, &books, &partial, &cancelled).await;
    let f = funds(&db, &books).await;
    assert_eq!((f.used, f.blocked, f.available), (360, 0, 640));
    assert!(paper_reservations::Entity::find_by_id("b".to_string())
        .one(&db)
        .await
        .expect("query")
        .is_none());
    assert_eq!(trades(&db, ACCOUNT).await.expect("trades").len(), 1);
}

#[tokio::test]
async fn sells_use_the_holding_first_and_only_intraday_goes_short() {
    let (db, books) = (db().await, Books::new(10_000));
    let w = Writer::new(&db);
    // Long 4 delivery.
    reserve(
        &w,
        &books,
        &claim("b", Side::Buy, Product::Delivery, 4, 100),
    )
    .await
    .expect("buy");
    step(
        &db,
        &books,
        &order("b", Side::Buy, Product::Delivery, "SUBMITTED", 0, None),
        &order("b", Side::Buy, Product::Delivery, "FILLED", 4, Some(100)),
    )
    .await;
    assert_eq!(
        holdings(&db, ACCOUNT).await.expect("holdings")[0].quantity,
        4
    );
    // A delivery sell of 5 is one more than held.
    let refused = reserve(
        &w,
        &books,
        &claim("s5", Side::Sell, Product::Delivery, 5, 100),
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(Refusal::Holdings {
                required: 5,
                available: 4
            })
        ),
        "{refused:?}"
    );
    // A delivery sell of 3 holds 3 units; then only 1 is free to sell.
    reserve(
        &w,
        &books,
        &claim("s3", Side::Sell, Product::Delivery, 3, 100),
    )
    .await
    .expect("held");
    assert_eq!(position(&db, Product::Delivery).await.sell_held, 3);
    let refused = reserve(
        &w,
        &books,
        &claim("s2", Side::Sell, Product::Delivery, 2, 100),
    )
    .await;
    assert!(
        matches!(refused, Err(Refusal::Holdings { available: 1, .. })),
        "{refused:?}"
    );
    // Its rejection gives the units back.
    step(
        &db,
        &books,
        &order("s3", Side::Sell, Product::Delivery, "SUBMITTED", 0, None),
        &order("s3", Side::Sell, Product::Delivery, "CANCELLED", 0, None),
    )
    .await;
    assert_eq!(position(&db, Product::Delivery).await.sell_held, 0);

    // Intraday: short 5 at 200, margin 1,000 reserved; filled, it holds 2 × 1,000.
    reserve(
        &w,
        &books,
        &claim("ss", Side::Sell, Product::Intraday, 5, 200),
    )
    .await
    .expect("short");
    assert_eq!(funds(&db, &books).await.blocked, 1_000);
    step(
        &db,
        &books,
        &order("ss", Side::Sell, Product::Intraday, "OPEN", 0, None),
        &order("ss", Side::Sell, Product::Intraday, "FILLED", 5, Some(200)),
    )
    .await;
    let f = funds(&db, &books).await;
    assert_eq!(
        (f.used, f.blocked, f.available),
        (400 - 1_000, 2_000, 10_000 - 400 - 1_000)
    );
    // A buy covering it holds the short's units, not cash; covering at 180 books 100.
    reserve(
        &w,
        &books,
        &claim("cv", Side::Buy, Product::Intraday, 5, 180),
    )
    .await
    .expect("cover");
    assert_eq!(
        funds(&db, &books).await.blocked,
        2_000,
        "no cash reserved to cover"
    );
    step(
        &db,
        &books,
        &order("cv", Side::Buy, Product::Intraday, "OPEN", 0, None),
        &order("cv", Side::Buy, Product::Intraday, "FILLED", 5, Some(180)),
    )
    .await;
    let f = funds(&db, &books).await;
    assert_eq!((f.used, f.blocked), (400 - 1_000 + 900, 0));
    let p = position(&db, Product::Intraday).await;
    assert_eq!((p.net_quantity, p.realized_pnl, p.buy_held), (0, 100, 0));
}

#[tokio::test]
async fn a_modify_re_reserves_the_difference_or_changes_nothing() {
    let (db, books) = (db().await, Books::new(1_000));
    let w = Writer::new(&db);
    fixtures::with_account(&db).await;
    // The order, as the engine holds it while the modify is with the broker.
    let mut pending = order("m", Side::Buy, Product::Delivery, "PENDING_MODIFY", 0, None);
    (pending.quantity, pending.price) = (4, Some(100));
    store_order(&db, &pending).await;
    reserve(
        &w,
        &books,
        &claim("m", Side::Buy, Product::Delivery, 4, 100),
    )
    .await
    .expect("buy");
    let terms = |quantity, price| OrderTerms {
        quantity: Some(quantity),
        price: Some(price),
        trigger_price: None,
    };
    // 4 → 11 units at 100 needs 1,100: refused, the old 400 stays.
    let refused = re_reserve(
        &w,
        &books,
        &claim("m", Side::Buy, Product::Delivery, 11, 100),
        terms(11, 100),
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(Refusal::Funds {
                required: 1_100,
                available: 1_000
            })
        ),
        "{refused:?}"
    );
    assert_eq!(funds(&db, &books).await.blocked, 400);
    let taken = modify_taken(&db, "m").await.expect("read");
    assert!(taken.is_none(), "a refused modify was not taken: {taken:?}");
    // 4 → 8 at 125 fits exactly, and the books say the modify was taken.
    re_reserve(
        &w,
        &books,
        &claim("m", Side::Buy, Product::Delivery, 8, 125),
        terms(8, 125),
    )
    .await
    .expect("fits");
    assert_eq!(funds(&db, &books).await.blocked, 1_000);
    let (_, taken) = modify_taken(&db, "m")
        .await
        .expect("read")
        .expect("taken while the order is still on its old terms");
    assert_eq!(taken, terms(8, 125));
    // Once the order stands on them, nothing is pending.
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    let mut applied = pending.into_active_model();
    applied.quantity = sea_orm::Set(8);
    applied.price = sea_orm::Set(Some(125));
    applied.update(&db).await.expect("the modify recorded");
    assert!(modify_taken(&db, "m").await.expect("read").is_none());
}

/// Parts filled at 995, 990 and 1,000: the stored average is rounded down (992 after two,
/// 994 after three), but the trades, cash and position carry each part's own value.
#[tokio::test]
async fn parts_filled_at_different_prices_are_booked_at_their_own_prices() {
    let (db, books) = (db().await, Books::new(1_000_000));
    let w = Writer::new(&db);
    reserve(
        &w,
        &books,
        &claim("m", Side::Buy, Product::Delivery, 3, 1_000),
    )
    .await
    .expect("reserve");
    let mut before = order("m", Side::Buy, Product::Delivery, "OPEN", 0, None);
    for (filled, average, price) in [(1, 995, 995), (2, 992, 990), (3, 994, 1_000)] {
        let status = if filled == 3 {
            "FILLED"
        } else {
            "PARTIALLY_FILLED"
        };
        let after = order(
            "m",
            Side::Buy,
            Product::Delivery,
            status,
            filled,
            Some(average),
        );
        let txn = db.begin().await.expect("begin");
        apply(&txn, &books, &before, &after, Some(price))
            .await
            .expect("apply");
        txn.commit().await.expect("commit");
        before = after;
    }
    let prices: Vec<i64> = trades(&db, ACCOUNT)
        .await
        .expect("trades")
        .iter()
        .map(|t| t.price)
        .collect();
    assert_eq!(prices, vec![995, 990, 1_000]);
    let f = funds(&db, &books).await;
    assert_eq!((f.used, f.blocked), (2_985, 0), "cash is the parts' sum");
    let p = position(&db, Product::Delivery).await;
    assert_eq!((p.net_quantity, p.buy_value), (3, 2_985));
}

#[tokio::test]
async fn an_order_costs_a_fixed_number_of_statements_whatever_the_history() {
    use sea_orm::IntoActiveModel;
    use std::sync::{Arc, Mutex};

    let (mut db, books) = (db().await, Books::new(1_000_000_000));
    let w = Writer::new(&db);
    // A long history: 2,000 filled orders in the account (with no user or account rows
    // behind them, which the books never look at either).
    sea_orm::ConnectionTrait::execute_unprepared(&db, "PRAGMA foreign_keys = OFF")
        .await
        .expect("pragma");
    for chunk in 0..10 {
        let rows = (0..200).map(|i| {
            let id = format!("old-{chunk}-{i}");
            order(&id, Side::Buy, Product::Delivery, "FILLED", 10, Some(100)).into_active_model()
        });
        orders::Entity::insert_many(rows)
            .exec(&db)
            .await
            .expect("history");
    }
    // The account has traded before: its funds and position rows exist.
    reserve(
        &w,
        &books,
        &claim("w", Side::Buy, Product::Delivery, 1, 100),
    )
    .await
    .expect("reserve");
    step(
        &db,
        &books,
        &order("w", Side::Buy, Product::Delivery, "OPEN", 0, None),
        &order("w", Side::Buy, Product::Delivery, "FILLED", 1, Some(100)),
    )
    .await;
    let statements: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = statements.clone();
    db.set_metric_callback(move |info| {
        if let Ok(mut log) = log.lock() {
            log.push(info.statement.sql.clone());
        }
    });
    let take = || std::mem::take(&mut *statements.lock().expect("log"));

    // Statement by statement (a plain transaction, as on PostgreSQL), where SeaORM sees
    // each one.
    let txn = db.begin().await.expect("begin");
    reserve::reserve_with(
        &books,
        &txn,
        &claim("n", Side::Buy, Product::Delivery, 10, 100),
        reserve::Fence::None,
    )
    .await
    .expect("reserve");
    txn.commit().await.expect("commit");
    let reserving = take();
    step(
        &db,
        &books,
        &order("n", Side::Buy, Product::Delivery, "OPEN", 0, None),
        &order("n", Side::Buy, Product::Delivery, "FILLED", 10, Some(100)),
    )
    .await;
    let filling = take();
    funds(&db, &books).await;
    positions(&db, ACCOUNT).await.expect("positions");
    holdings(&db, ACCOUNT).await.expect("holdings");
    trades(&db, ACCOUNT).await.expect("trades");
    let reading = take();

    for sql in reserving.iter().chain(&filling).chain(&reading) {
        assert!(
            !sql.contains("\"orders\""),
            "the books never read the orders table: {sql}"
        );
    }
    // The account's lock, the position, cash, the reservation.
    assert_eq!(reserving.len(), 4, "{reserving:#?}");
    // The reservation, funds (and lock), the position and its update, the reservation's
    // end, the trade (plus the short value, when it changes).
    assert_eq!(filling.len(), 6, "{filling:#?}");
    assert_eq!(reading.len(), 4, "one query per read: {reading:#?}");

    // On SQLite's pipeline, the round trips to the connection's thread before the commit:
    // none. The reservation's and the fill's statements decide, so each transaction is
    // one command (it can join a group commit).
    let txn = WriteTxn::begin(&w).await.expect("begin");
    reserve::reserve_with(
        &books,
        &txn,
        &claim("p", Side::Buy, Product::Delivery, 10, 100),
        reserve::Fence::None,
    )
    .await
    .expect("reserve");
    assert_eq!(txn.round_trips().await, 0, "reserving");
    txn.commit().await.expect("commit");
    let txn = WriteTxn::begin(&w).await.expect("begin");
    apply(
        &txn,
        &books,
        &order("p", Side::Buy, Product::Delivery, "OPEN", 0, None),
        &order("p", Side::Buy, Product::Delivery, "FILLED", 10, Some(100)),
        None,
    )
    .await
    .expect("apply");
    assert_eq!(txn.round_trips().await, 0, "filling");
    txn.commit().await.expect("commit");
    assert_eq!(
        take(),
        Vec::<String>::new(),
        "the pipeline's statements bypass SeaORM"
    );
    let after = funds(&db, &books).await;
    assert_eq!(
        (after.used, after.blocked),
        (2_000 + 100, 0),
        "both orders filled and paid, nothing left reserved"
    );
}

#[tokio::test]
async fn concurrent_buys_reserve_no_more_than_the_cash_and_refusals_say_why() {
    for (db, _pg) in databases().await {
        concurrent_buys(db).await;
    }
}

async fn concurrent_buys(db: DatabaseConnection) {
    let books = Books::new(1_000);
    let w = Writer::new(&db);
    let ids: Vec<String> = (0..24).map(|i| format!("c{i}")).collect();
    let tries = ids.iter().map(|id| {
        let (w, claim) = (&w, claim(id, Side::Buy, Product::Delivery, 1, 100));
        async move { reserve(w, &books, &claim).await }
    });
    let results = futures::future::join_all(tries).await;
    let placed = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(placed, 10, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(
                refused,
                Refusal::Funds {
                    required: 100,
                    available: 0
                }
            ),
            "{refused:?}"
        );
    }
    assert_eq!(funds(&db, &books).await.available, 0);
    let reservations = paper_reservations::Entity::find()
        .all(&db)
        .await
        .expect("reservations");
    assert_eq!(
        reservations.len(),
        10,
        "only the orders that fit hold anything"
    );
}

#[tokio::test]
async fn a_refused_first_claim_leaves_the_account_without_books() {
    for (db, _pg) in databases().await {
        let (books, w) = (Books::new(1_000), Writer::new(&db));
        let sell = claim("s", Side::Sell, Product::Delivery, 5, 100);
        let refused = reserve(&w, &books, &sell).await;
        assert!(
            matches!(
                refused,
                Err(Refusal::Holdings {
                    required: 5,
                    available: 0
                })
            ),
            "{refused:?}"
        );
        let buy = claim("b", Side::Buy, Product::Delivery, 11, 100);
        let refused = reserve(&w, &books, &buy).await;
        assert!(
            matches!(
                refused,
                Err(Refusal::Funds {
                    required: 1_100,
                    available: 1_000
                })
            ),
            "{refused:?}"
        );
        let funds = paper_funds::Entity::find().all(&db).await.expect("funds");
        assert!(funds.is_empty(), "a refusal writes nothing: {funds:?}");
    }
}

#[tokio::test]
async fn concurrent_fills_on_one_account_lose_no_update() {
    for (db, _pg) in databases().await {
        let (books, w) = (Books::new(1_000_000), Writer::new(&db));
        let ids: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
        for id in &ids {
            let buy = claim(id, Side::Buy, Product::Intraday, 2, 100 + 5);
            reserve(&w, &books, &buy).await.expect("reserved");
        }
        let fills = ids.iter().enumerate().map(|(i, id)| {
            let (w, books) = (&w, &books);
            async move {
                let mut before = order(id, Side::Buy, Product::Intraday, "OPEN", 0, None);
                before.quantity = 2;
                let mut after = before.clone();
                after.status = "FILLED".into();
                after.filled_quantity = 2;
                let value = 2 * (100 + i64::try_from(i).expect("small"));
                let txn = WriteTxn::begin(w).await.expect("begin");
                apply(&txn, books, &before, &after, Some(value))
                    .await
                    .expect("apply");
                txn.commit().await.expect("commit");
                value
            }
        });
        let spent: i64 = futures::future::join_all(fills).await.iter().sum();
        let position = position(&db, Product::Intraday).await;
        assert_eq!(position.net_quantity, 32);
        assert_eq!(position.buy_value, spent);
        assert_eq!(funds(&db, &books).await.used, spent);
        let trades = paper_trades::Entity::find().all(&db).await.expect("trades");
        assert_eq!(trades.len(), 16);
        let reservations = paper_reservations::Entity::find()
            .all(&db)
            .await
            .expect("reservations");
        assert!(reservations.is_empty(), "{reservations:?}");
        assert_eq!(funds(&db, &books).await.blocked, 0);
    }
}

#[tokio::test]
async fn a_reservation_too_big_for_64_bits_is_refused_and_holds_nothing() {
    for (db, _pg) in databases().await {
        too_big(db).await;
    }
}

async fn too_big(db: DatabaseConnection) {
    let books = Books::new(1_000);
    let w = Writer::new(&db);
    let huge = claim(
        "h",
        Side::Buy,
        Product::Intraday,
        1_000_000_000_000_000,
        100_000,
    );
    let refused = reserve(&w, &books, &huge).await;
    assert!(
        matches!(
            refused,
            Err(Refusal::Funds {
                required: i64::MAX,
                available: 1_000
            })
        ),
        "{refused:?}"
    );
    assert_eq!(funds(&db, &books).await.available, 1_000);
    reserve(
        &w,
        &books,
        &claim("s", Side::Buy, Product::Intraday, 10, 100),
    )
    .await
    .expect("the books are whole after the refusal");
    assert_eq!(funds(&db, &books).await.available, 0);
}

/// The SQL the books run where writes are pipelined (SQLite: `reserve_in_sql`,
/// `fill_in_sql`, `release_in_sql`) and their PostgreSQL functions (`pinnacle_paper_reserve`,
/// `pinnacle_paper_fill`) must decide exactly as the Rust they replace (`reserve_in`,
/// `fill` and `Book::fill`'s arithmetic, `release_in`). The SQL runs on SQLite through a
/// `Writer`, the Rust on SQLite through plain transactions, and the functions on a
/// PostgreSQL database where a server answers, over the same random reservations, partial
/// fills at varying prices, flips, shorts and ends; every row is compared after every step.
#[tokio::test]
async fn the_books_decide_the_same_in_sql_as_in_rust() {
    // Cash that runs short, so that refusals come and fills above the reserved price take
    // the available cash below zero.
    let books = Books::new(20_000);
    let (in_sql, in_rust) = (db().await, db().await);
    let w = Writer::new(&in_sql);
    let postgres = fixtures::postgres().await;
    let in_functions = postgres.as_ref().map(|pg| Writer::new(&pg.db));
    // A small xorshift: the same sequence every run, no dependency.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: i64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        i64::try_from(seed % u64::try_from(n).expect("positive")).expect("small")
    };
    // Orders still open: (model, units left to fill).
    let mut open: Vec<(orders::Model, i64)> = Vec::new();
    let all: Vec<&DatabaseConnection> = [&in_sql, &in_rust]
        .into_iter()
        .chain(postgres.as_ref().map(|pg| &pg.db))
        .collect();
    for db in &all {
        fixtures::with_account(db).await;
    }
    let (mut refused, mut filled, mut flips, mut overdrawn) = (0, 0, 0, 0);
    let mut converted = 0;
    for step_no in 0..600 {
        if open.is_empty() || next(3) == 0 {
            let id = format!("o{step_no}");
            let side = if next(2) == 0 { Side::Buy } else { Side::Sell };
            let product = if next(2) == 0 {
                Product::Intraday
            } else {
                Product::Delivery
            };
            let units = 1 + next(20);
            // Now and then an order priced at nothing (a market order with no tick yet).
            let price = if next(10) == 0 { 0 } else { 50 + next(150) };
            let c = claim(&id, side, product, units, price);
            let mut model = order(&id, side, product, "OPEN", 0, None);
            model.quantity = units;
            for db in &all {
                store_order(db, &model).await;
            }
            let sql = reserve(&w, &books, &c).await;
            let txn = in_rust.begin().await.expect("begin");
            let rust = reserve::reserve_with(&books, &txn, &c, reserve::Fence::None).await;
            match &rust {
                Ok(()) => txn.commit().await.expect("commit"),
                Err(_) => txn.rollback().await.expect("rollback"),
            }
            assert_eq!(
                format!("{sql:?}"),
                format!("{rust:?}"),
                "step {step_no}: {c:?}"
            );
            if let Some(pg) = &in_functions {
                let function = reserve(pg, &books, &c).await;
                assert_eq!(
                    format!("{function:?}"),
                    format!("{rust:?}"),
                    "step {step_no} on PostgreSQL: {c:?}"
                );
            }
            if sql.is_ok() {
                open.push((model, units));
            } else {
                refused += 1;
            }
        } else {
            let at = usize::try_from(next(i64::try_from(open.len()).expect("len"))).expect("index");
            let (before, left) = open[at].clone();
            let quantity = if next(4) == 0 { 0 } else { 1 + next(left) };
            let ends = quantity == left || next(5) == 0;
            let mut after = before.clone();
            after.filled_quantity += quantity;
            after.status = match (ends, after.filled_quantity == after.quantity) {
                (true, true) => "FILLED",
                (true, false) => "CANCELLED",
                (false, _) if after.filled_quantity > 0 => "PARTIALLY_FILLED",
                (false, _) => "OPEN",
            }
            .into();
            // A price that is not a whole multiple of the quantity now and then.
            let value = quantity * (50 + next(150)) + next(quantity.max(1));
            let position_before = position_if_any(&in_sql, &before.product).await;
            let others_cash = |rows: Vec<paper_reservations::Model>| -> i64 {
                rows.iter()
                    .filter(|r| r.order_id != before.id)
                    .map(|r| r.cash_units)
                    .sum()
            };
            let cash_before = others_cash(
                paper_reservations::Entity::find()
                    .all(&in_rust)
                    .await
                    .expect("reservations"),
            );
            let txn = WriteTxn::begin(&w).await.expect("begin");
            apply(&txn, &books, &before, &after, Some(value))
                .await
                .expect("apply in SQL");
            txn.commit().await.expect("commit");
            let txn = in_rust.begin().await.expect("begin");
            apply(&txn, &books, &before, &after, Some(value))
                .await
                .expect("apply in Rust");
            txn.commit().await.expect("commit");
            if let Some(pg) = &in_functions {
                let txn = WriteTxn::begin(pg).await.expect("begin");
                apply(&txn, &books, &before, &after, Some(value))
                    .await
                    .expect("apply on PostgreSQL");
                txn.commit().await.expect("commit");
            }
            let cash_after = others_cash(
                paper_reservations::Entity::find()
                    .all(&in_rust)
                    .await
                    .expect("reservations"),
            );
            if cash_after > cash_before {
                converted += 1;
            }
            if quantity > 0 {
                filled += 1;
                let after_net = position_if_any(&in_sql, &before.product)
                    .await
                    .map(|p| p.net_quantity);
                let before_net = position_before.map(|p| p.net_quantity);
                if let (Some(b), Some(a)) = (before_net, after_net) {
                    if b != 0 && a != 0 && b.signum() != a.signum() {
                        flips += 1;
                    }
                }
            }
            if ends {
                open.remove(at);
            } else {
                open[at] = (after, left - quantity);
            }
        }
        let rows = books_rows(&in_rust).await;
        assert_eq!(books_rows(&in_sql).await, rows, "step {step_no}");
        assert_costs_exact(&in_rust, step_no).await;
        assert_books_balance(&in_rust, step_no).await;
        if let Some(pg) = &postgres {
            assert_eq!(
                books_rows(&pg.db).await,
                rows,
                "step {step_no} on PostgreSQL"
            );
        }
        if funds(&in_sql, &books).await.available < 0 {
            overdrawn += 1;
        }
    }
    // The run covered what it is for.
    assert!(
        refused > 10 && filled > 100 && flips > 3 && overdrawn > 3 && converted > 3,
        "{refused} {filled} {flips} {overdrawn} {converted}"
    );
}

/// Every position is at exact cost: what was sold less what was bought is the booked P&L
/// less the open long's cost (plus the open short's proceeds), to the paisa, and its
/// average is that cost over its units, rounded down.
async fn assert_costs_exact(db: &DatabaseConnection, step_no: i32) {
    for p in paper_positions::Entity::find()
        .all(db)
        .await
        .expect("positions")
    {
        assert_eq!(
            p.sell_value - p.buy_value - p.realized_pnl,
            -p.net_quantity.signum() * p.open_cost,
            "step {step_no}: {p:?}"
        );
        let average = (p.net_quantity != 0).then(|| p.open_cost / p.net_quantity.abs());
        assert_eq!(p.average_price, average, "step {step_no}: {p:?}");
    }
}

/// Every row of the books, in key order (sorted here: databases collate text apart).
async fn books_rows(db: &DatabaseConnection) -> String {
    let funds = paper_funds::Entity::find().all(db).await.expect("funds");
    let mut positions = paper_positions::Entity::find()
        .all(db)
        .await
        .expect("positions");
    positions.sort_by(|a, b| a.product.cmp(&b.product));
    let mut reservations = paper_reservations::Entity::find()
        .all(db)
        .await
        .expect("reservations");
    reservations.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let mut trades = paper_trades::Entity::find().all(db).await.expect("trades");
    trades.sort_by_key(|t| t.id);
    format!("{funds:#?}\n{positions:#?}\n{reservations:#?}\n{trades:#?}")
}
