//! One owner per in-flight order (docs/ARCHITECTURE.md, "One owner per in-flight order").
//!
//! A second worker ("side worker") is started in its own thread and runtime, against the
//! stack's NATS and database, with a broker that waits before it forwards a place to the
//! real one (paper, or Angel One on the simulator). The stack's own worker reconciles
//! aggressively. Each fault must end with exactly one order at the broker (or none) and a
//! final state that says so truthfully, on both databases:
//!
//! - a slow broker (15 s): the owner renews its lease, reconciliation never steps in, and
//!   the request's deadline, passing meanwhile, does not cut it short;
//! - a database stall longer than the reconcile delay while the call waits: the owner cannot
//!   renew, drops the call before it reaches the broker, and reconciliation's
//!   `NOT_AT_BROKER` is the truth;
//! - the side worker's whole process paused (its runtime frozen) between storing the order
//!   and calling the broker: the same, and the paused worker never sends afterwards;
//! - (PostgreSQL) the paper books locked while orders reserve: their reservations wait out
//!   the leases, reconciliation ends the orders `NOT_AT_BROKER`, and the reservations that
//!   come afterwards are refused instead of holding the orders' cash for good.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pinnacle_common::broker::{
    Admission, Broker, BrokerCredentials, BrokerError, BrokerOutcome, Filled, OrderKeys,
};
use pinnacle_common::config::{DatabaseSettings, WorkerSettings};
use pinnacle_common::entities::orders;
use pinnacle_common::model::{
    Funds, Holding, OrderRequest, OrderStatus, OrderType, Position, Side, Trade,
};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_order_worker::engine::{deadline, Actor, Caller, RiskChecks};
use pinnacle_order_worker::paper::PaperBroker;
use pinnacle_order_worker::Worker;
use pinnacle_tests::angel::AngelStack;
use pinnacle_tests::{
    assert_complete_history, eventually, order_events, stall_database, TestStack,
};
use sea_orm::EntityTrait;
use serde_json::json;

use crate::each_backend;

/// Lease terms of both workers: short, so the faults outlast them many times over.
const LEASE_MS: u64 = 1_000;
const GRACE_MS: u64 = 500;
const RECONCILE_AFTER_MS: u64 = 2_000;

fn fast_reconcile(settings: &mut pinnacle_cli::stack::StackSettings) {
    settings.worker.lease_ms = LEASE_MS;
    settings.worker.lease_grace_ms = GRACE_MS;
    settings.worker.reconcile_after_ms = RECONCILE_AFTER_MS;
    settings.worker.reconcile_interval_ms = 100;
}

/// A broker that waits `delay` before forwarding a place to `inner`, and counts the places
/// it forwarded.
#[derive(Debug)]
pub(crate) struct Slow {
    pub(crate) inner: Arc<dyn Broker>,
    pub(crate) delay: Duration,
    pub(crate) forwarded: Arc<AtomicUsize>,
}

#[async_trait]
impl Broker for Slow {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn wait_ready(&self, timeout: Duration) -> bool {
        self.inner.wait_ready(timeout).await
    }
    async fn ready_for(&self, order: &OrderRequest) -> Result<(), BrokerError> {
        self.inner.ready_for(order).await
    }
    fn preflight(&self, c: &BrokerCredentials, order: &OrderRequest) -> Result<(), BrokerError> {
        self.inner.preflight(c, order)
    }
    async fn admit(
        &self,
        c: &BrokerCredentials,
        order: &OrderRequest,
    ) -> Result<Admission, BrokerError> {
        self.inner.admit(c, order).await
    }
    async fn place_order(
        &self,
        c: &BrokerCredentials,
        order_id: &str,
        order: &OrderRequest,
        admission: Admission,
    ) -> Result<BrokerOutcome, BrokerError> {
        tokio::time::sleep(self.delay).await;
        self.forwarded.fetch_add(1, Ordering::SeqCst);
        self.inner.place_order(c, order_id, order, admission).await
    }
    async fn modify_order(
        &self,
        c: &BrokerCredentials,
        id: &str,
        order: &OrderRequest,
        filled: Filled,
    ) -> Result<BrokerOutcome, BrokerError> {
        self.inner.modify_order(c, id, order, filled).await
    }
    async fn cancel_order(
        &self,
        c: &BrokerCredentials,
        id: &str,
        order: &OrderRequest,
        filled: Filled,
    ) -> Result<BrokerOutcome, BrokerError> {
        self.inner.cancel_order(c, id, order, filled).await
    }
    async fn funds(&self, c: &BrokerCredentials) -> Result<Funds, BrokerError> {
        self.inner.funds(c).await
    }
    async fn positions(&self, c: &BrokerCredentials) -> Result<Vec<Position>, BrokerError> {
        self.inner.positions(c).await
    }
    async fn holdings(&self, c: &BrokerCredentials) -> Result<Vec<Holding>, BrokerError> {
        self.inner.holdings(c).await
    }
    async fn trades(&self, c: &BrokerCredentials) -> Result<Vec<Trade>, BrokerError> {
        self.inner.trades(c).await
    }
    async fn find_order(
        &self,
        c: &BrokerCredentials,
        order: OrderKeys<'_>,
    ) -> Result<Option<BrokerOutcome>, BrokerError> {
        self.inner.find_order(c, order).await
    }
    async fn reference_price(&self, exchange: &str, symbol: &str) -> Option<i64> {
        self.inner.reference_price(exchange, symbol).await
    }
}

/// Which real broker the side worker forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Paper,
    Angel,
}

/// A worker in its own thread and runtime, so the test can freeze it whole.
struct SideWorker {
    runtime: tokio::runtime::Handle,
    worker: Arc<Worker>,
    forwarded: Arc<AtomicUsize>,
    stop: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SideWorker {
    fn start(stack: &TestStack, kind: Kind, settings: WorkerSettings, delay: Duration) -> Self {
        let nats_url = stack.nats.url().to_string();
        let db_url = stack.db_url().to_string();
        let vault = stack.vault.clone();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let counter = forwarded.clone();
        let stop = Shutdown::new();
        let token = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("side runtime");
            runtime.block_on(async move {
                let client = async_nats::connect(&nats_url).await.expect("side client");
                let db = pinnacle_common::db::connect(&DatabaseSettings {
                    database_url: db_url,
                    database_max_connections: 4,
                })
                .await
                .expect("side database");
                let inner: Arc<dyn Broker> = match kind {
                    Kind::Paper => {
                        let paper = PaperBroker::with_ledger(db.clone(), settings.paper_cash);
                        paper
                            .follow_ticks(client.clone(), token.clone())
                            .await
                            .expect("ticks");
                        Arc::new(paper)
                    }
                    Kind::Angel => {
                        let (angel, _notices) =
                            pinnacle_cli::stack::angel_one_broker(&client, &db, &vault, &settings);
                        Arc::new(angel)
                    }
                };
                let slow = Slow {
                    inner,
                    delay,
                    forwarded: counter,
                };
                let worker = Arc::new(Worker::new(
                    client,
                    db,
                    vault,
                    vec![Arc::new(slow)],
                    settings,
                ));
                let _ = ready_tx.send((tokio::runtime::Handle::current(), worker));
                token.cancelled().await;
            });
        });
        let (runtime, worker) = ready_rx.recv().expect("side worker starts");
        Self {
            runtime,
            worker,
            forwarded,
            stop,
            thread: Some(thread),
        }
    }

    /// Places `order` for `user_id` through the side worker's engine.
    fn submit(
        &self,
        user_id: &str,
        order: OrderRequest,
    ) -> tokio::task::JoinHandle<Result<orders::Model, pinnacle_common::error::ErrorBody>> {
        self.submit_until(user_id, order, None)
    }

    /// [`Self::submit`] under a request deadline, as the NATS handler runs a request that
    /// carries `Pinnacle-Deadline`.
    fn submit_until(
        &self,
        user_id: &str,
        order: OrderRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> tokio::task::JoinHandle<Result<orders::Model, pinnacle_common::error::ErrorBody>> {
        let worker = self.worker.clone();
        let user_id = user_id.to_string();
        self.runtime.spawn(deadline::run(deadline, async move {
            let caller = Caller {
                user_id: &user_id,
                actor: Actor {
                    name: &user_id,
                    token_id: None,
                },
                purpose: "order.place",
                request_id: "ownership-test",
                risk: RiskChecks::Opening,
                account: None,
            };
            worker.engine().submit(&caller, &order).await
        }))
    }

    /// Freezes the side worker's whole runtime for `pause`, like SIGSTOP.
    fn pause(&self, pause: Duration) {
        self.runtime.spawn(async move { std::thread::sleep(pause) });
    }
}

impl Drop for SideWorker {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn side_settings(stack_worker: &WorkerSettings) -> WorkerSettings {
    WorkerSettings {
        lease_ms: LEASE_MS,
        lease_grace_ms: GRACE_MS,
        reconcile_after_ms: RECONCILE_AFTER_MS,
        ..stack_worker.clone()
    }
}

fn buy(client_order_id: &str, order_type: OrderType, price: Option<i64>) -> OrderRequest {
    OrderRequest {
        client_order_id: client_order_id.into(),
        exchange: "NSE".into(),
        symbol: "SBIN-EQ".into(),
        side: Side::Buy,
        order_type,
        quantity: 1,
        price,
        trigger_price: None,
        product: Default::default(),
        account: None,
    }
}

/// Waits until the order with `client_order_id` is stored; returns its id.
async fn stored(stack: &TestStack, client_order_id: &str) -> String {
    stored_any(stack, &[client_order_id]).await
}

/// Waits until an order with one of `client_order_ids` is stored; returns its id.
async fn stored_any(stack: &TestStack, client_order_ids: &[impl AsRef<str>]) -> String {
    use sea_orm::{ColumnTrait, QueryFilter};
    let ids: Vec<&str> = client_order_ids.iter().map(AsRef::as_ref).collect();
    eventually(Duration::from_secs(20), "the order row", || async {
        orders::Entity::find()
            .filter(orders::Column::ClientOrderId.is_in(ids.iter().copied()))
            .one(&stack.db)
            .await
            .ok()
            .flatten()
            .map(|o| o.id)
    })
    .await
}

/// Waits until the order is final (not in flight, not UNKNOWN); returns it.
async fn settled(stack: &TestStack, id: &str) -> orders::Model {
    eventually(Duration::from_secs(30), "a final state", || async {
        let row = orders::Entity::find_by_id(id.to_string())
            .one(&stack.db)
            .await
            .ok()??;
        let status = OrderStatus::parse(&row.status)?;
        (!status.is_in_flight() && status != OrderStatus::Unknown).then_some(row)
    })
    .await
}

/// Asserts that the stream holds the order's whole history, ending where the row is.
async fn assert_events(stack: &TestStack, user_id: &str, row: &orders::Model) {
    let last = OrderStatus::parse(&row.status).expect("status");
    let events = eventually(Duration::from_secs(10), "every event", || async {
        let events = order_events(&stack.client, user_id).await;
        events
            .iter()
            .any(|e| e.order.order_id == row.id && e.order.status == last)
            .then_some(events)
    })
    .await;
    assert_complete_history(&events, &row.id, last);
}

/// How many orders the simulator holds for `client_code`.
fn at_sim(angel: &AngelStack, client_code: &str) -> usize {
    angel.sim.orders(client_code).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_broker_keeps_its_owner_and_places_exactly_once() {
    each_backend(|backend| async move {
        let angel = AngelStack::start_with(backend, |_| {}, fast_reconcile).await;
        let stack = &angel.stack;
        let delay = Duration::from_secs(15);
        // The owner renews every third of its lease; a 3 s lease lets a renewal take up to
        // 2 s on a loaded CI machine (with 1 s, one slow UPDATE lost the lease and the
        // call was dropped: safe, but not what this test is about). 15 s is still five
        // lease lengths, and the stack reconciles after lease + 0.5 s.
        let settings = WorkerSettings {
            lease_ms: 3 * LEASE_MS,
            ..side_settings(&pinnacle_tests::sim::angel_worker(&angel.sim))
        };
        let paper_side = SideWorker::start(stack, Kind::Paper, settings.clone(), delay);
        let angel_side = SideWorker::start(stack, Kind::Angel, settings, delay);
        let trader = stack.trader("slow-paper").await;
        let (angel_user, account) = angel.angel_trader("slow-angel", 11, json!({})).await;
        let (fills, _) = angel.prices();

        // Each request's deadline passes while the broker works: past its credentials, a
        // request runs to its end and is answered with the truth, never DEADLINE_EXCEEDED.
        let deadline = || Some(tokio::time::Instant::now() + Duration::from_secs(5));
        let paper = paper_side.submit_until(
            &trader.id,
            buy("slow-p", OrderType::Market, None),
            deadline(),
        );
        let live = angel_side.submit_until(
            &angel_user.id,
            buy("slow-a", OrderType::Limit, Some(fills)),
            deadline(),
        );
        let (paper, live) = (paper.await.expect("join"), live.await.expect("join"));
        let paper = paper.expect("paper order placed");
        let live = live.expect("angel order placed");
        assert_eq!(paper_side.forwarded.load(Ordering::SeqCst), 1);
        assert_eq!(angel_side.forwarded.load(Ordering::SeqCst), 1);

        let paper_row = settled(stack, &paper.id).await;
        assert_eq!(paper_row.status, "FILLED", "{paper_row:?}");
        let live_row = settled(stack, &live.id).await;
        assert_ne!(live_row.status, "REJECTED", "{live_row:?}");
        assert_eq!(at_sim(&angel, &account.client_code), 1);
        assert_events(stack, &trader.id, &paper_row).await;
        assert_events(stack, &angel_user.id, &live_row).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stall_longer_than_the_reconcile_delay_never_misreports() {
    each_backend(|backend| async move {
        let angel = AngelStack::start_with(backend, |_| {}, fast_reconcile).await;
        let stack = &angel.stack;
        let delay = Duration::from_secs(2);
        let settings = side_settings(&pinnacle_tests::sim::angel_worker(&angel.sim));
        let paper_side = SideWorker::start(stack, Kind::Paper, settings.clone(), delay);
        let angel_side = SideWorker::start(stack, Kind::Angel, settings, delay);
        let trader = stack.trader("stall-paper").await;
        let (angel_user, account) = angel.angel_trader("stall-angel", 12, json!({})).await;
        let (fills, _) = angel.prices();

        let paper = paper_side.submit(&trader.id, buy("stall-p", OrderType::Market, None));
        let live = angel_side.submit(
            &angel_user.id,
            buy("stall-a", OrderType::Limit, Some(fills)),
        );
        let paper_id = stored(stack, "stall-p").await;
        let live_id = stored(stack, "stall-a").await;
        // Longer than the lease, the grace and the reconcile delay together.
        stall_database(stack.db_url(), Duration::from_secs(6)).await;
        let _ = (paper.await.expect("join"), live.await.expect("join"));

        let paper_row = settled(stack, &paper_id).await;
        let live_row = settled(stack, &live_id).await;
        // The owner could not renew, so it dropped the calls before they were forwarded.
        assert_eq!(paper_side.forwarded.load(Ordering::SeqCst), 0);
        assert_eq!(angel_side.forwarded.load(Ordering::SeqCst), 0);
        assert_eq!(at_sim(&angel, &account.client_code), 0);
        for row in [&paper_row, &live_row] {
            assert_eq!(row.status, "REJECTED", "{row:?}");
            assert_eq!(row.reject_code.as_deref(), Some("NOT_AT_BROKER"));
        }
        assert_events(stack, &trader.id, &paper_row).await;
        assert_events(stack, &angel_user.id, &live_row).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_stalled_past_its_lease_never_holds_cash_for_an_ended_order() {
    use pinnacle_common::entities::{paper_funds, paper_reservations};

    // PostgreSQL only: there a placer's reservation can wait on the books' lock after its
    // order was stored (SQLite's one write lock holds back the insert as well).
    let Some(backend) = pinnacle_tests::backends()
        .into_iter()
        .find(|b| *b != pinnacle_tests::Backend::Sqlite)
    else {
        return;
    };
    let angel = AngelStack::start_with(backend, |_| {}, fast_reconcile).await;
    let stack = &angel.stack;
    let settings = side_settings(&pinnacle_tests::sim::angel_worker(&angel.sim));
    let side = SideWorker::start(stack, Kind::Paper, settings, Duration::ZERO);
    let trader = stack.trader("books-stall").await;

    // The books are locked (a stuck transaction holds `paper_funds` in EXCLUSIVE mode:
    // reads pass, writes wait): the orders are stored, their reservations wait and hold
    // every connection of the placer's pool (4), so it cannot renew its leases, and
    // reconciliation finds nothing reserved and ends the orders long before the lock goes.
    let lock = pinnacle_tests::lock_database_with(
        stack.db_url(),
        "LOCK TABLE paper_funds IN EXCLUSIVE MODE",
    )
    .await;
    let ids: Vec<String> = (0..6).map(|i| format!("books-{i}")).collect();
    let placed: Vec<_> = ids
        .iter()
        .map(|id| side.submit(&trader.id, buy(id, OrderType::Market, None)))
        .collect();
    // Any of them: the placer's pool (4) is held by the first reservations to wait, so
    // which orders are stored before the lock goes is the runtime's choice (waiting for
    // `books-0` alone deadlocked the test when its insert came fifth).
    stored_any(stack, &ids).await;
    // Longer than the lease, the grace and the reconcile delay together.
    tokio::time::sleep(Duration::from_secs(6)).await;
    lock.release().await;
    for order in placed {
        let _ = order.await.expect("join");
    }

    // The late reservations were refused: nothing is held for an ended order, and with
    // every order final the account holds no cash back.
    for id in &ids {
        let row = settled(stack, &stored(stack, id).await).await;
        assert_events(stack, &trader.id, &row).await;
    }
    let held = paper_reservations::Entity::find()
        .all(&stack.db)
        .await
        .expect("reservations");
    assert!(
        held.is_empty(),
        "a reservation outlived its order: {held:?}"
    );
    let funds = paper_funds::Entity::find()
        .all(&stack.db)
        .await
        .expect("funds");
    assert!(funds.iter().all(|f| f.reserved == 0), "{funds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_slower_than_its_lease_still_places_the_order_once() {
    // PostgreSQL only: there the insert alone can wait (on a lock of `orders`) while the
    // checks before it pass; SQLite's one write lock holds back the rate count as well, so
    // the lease would be issued after the stall.
    let Some(backend) = pinnacle_tests::backends()
        .into_iter()
        .find(|b| *b != pinnacle_tests::Backend::Sqlite)
    else {
        return;
    };
    // A grace long enough that nobody may take the orders while their inserts wait.
    const PATIENT_GRACE_MS: u64 = 10_000;
    let patient = |settings: &mut pinnacle_cli::stack::StackSettings| {
        fast_reconcile(settings);
        settings.worker.lease_grace_ms = PATIENT_GRACE_MS;
    };
    let angel = AngelStack::start_with(backend, |_| {}, patient).await;
    let stack = &angel.stack;
    let settings = WorkerSettings {
        lease_grace_ms: PATIENT_GRACE_MS,
        ..side_settings(&pinnacle_tests::sim::angel_worker(&angel.sim))
    };
    let paper_side = SideWorker::start(stack, Kind::Paper, settings.clone(), Duration::ZERO);
    let angel_side = SideWorker::start(stack, Kind::Angel, settings, Duration::ZERO);
    let trader = stack.trader("slow-insert-paper").await;
    let (angel_user, account) = angel.angel_trader("slow-insert-angel", 14, json!({})).await;
    let (fills, _) = angel.prices();

    let lock =
        pinnacle_tests::lock_database_with(stack.db_url(), "LOCK TABLE orders IN EXCLUSIVE MODE")
            .await;
    let paper = paper_side.submit(&trader.id, buy("slow-p", OrderType::Market, None));
    let live = angel_side.submit(&angel_user.id, buy("slow-a", OrderType::Limit, Some(fills)));
    // The inserts wait longer than the lease (1 s), not longer than lease and grace.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    lock.release().await;
    let paper_row = paper
        .await
        .expect("join")
        .expect("the paper order is placed");
    let live_row = live.await.expect("join").expect("the live order is placed");

    // Nobody had taken them, so their owners renewed the lapsed leases and sent them once.
    assert_eq!(paper_row.status, "FILLED", "{paper_row:?}");
    assert_ne!(live_row.status, "REJECTED", "{live_row:?}");
    assert_eq!(paper_side.forwarded.load(Ordering::SeqCst), 1);
    assert_eq!(angel_side.forwarded.load(Ordering::SeqCst), 1);
    assert_eq!(at_sim(&angel, &account.client_code), 1);
    let live_row = settled(stack, &live_row.id).await;
    assert_events(stack, &trader.id, &paper_row).await;
    assert_events(stack, &angel_user.id, &live_row).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_between_insert_and_broker_call_never_sends_after_it() {
    each_backend(|backend| async move {
        let angel = AngelStack::start_with(backend, |_| {}, fast_reconcile).await;
        let stack = &angel.stack;
        let delay = Duration::from_secs(1);
        let settings = side_settings(&pinnacle_tests::sim::angel_worker(&angel.sim));
        let angel_side = SideWorker::start(stack, Kind::Angel, settings.clone(), delay);
        let paper_side = SideWorker::start(stack, Kind::Paper, settings, delay);
        let trader = stack.trader("paused-paper").await;
        let (angel_user, account) = angel.angel_trader("paused-angel", 13, json!({})).await;
        let (fills, _) = angel.prices();

        let live = angel_side.submit(
            &angel_user.id,
            buy("paused-a", OrderType::Limit, Some(fills)),
        );
        let paper = paper_side.submit(&trader.id, buy("paused-p", OrderType::Market, None));
        let live_id = stored(stack, "paused-a").await;
        let paper_id = stored(stack, "paused-p").await;
        // Frozen longer than lease + grace + reconcile delay: reconciliation settles the
        // orders meanwhile, and the paused owners must not send when they wake.
        angel_side.pause(Duration::from_secs(5));
        paper_side.pause(Duration::from_secs(5));
        let live_row = settled(stack, &live_id).await;
        let paper_row = settled(stack, &paper_id).await;
        let _ = (live.await.expect("join"), paper.await.expect("join"));
        tokio::time::sleep(Duration::from_secs(2)).await;

        assert_eq!(angel_side.forwarded.load(Ordering::SeqCst), 0);
        assert_eq!(paper_side.forwarded.load(Ordering::SeqCst), 0);
        assert_eq!(at_sim(&angel, &account.client_code), 0);
        for row in [&live_row, &paper_row] {
            assert_eq!(row.reject_code.as_deref(), Some("NOT_AT_BROKER"), "{row:?}");
        }
        assert_events(stack, &angel_user.id, &live_row).await;
        assert_events(stack, &trader.id, &paper_row).await;
    })
    .await;
}
