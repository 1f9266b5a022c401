//! Following each Angel One account's order-update WebSocket into the order state machine
//! and so onto `events.orders.<user>`.
//!
//! The broker sends a [`SessionNotice`] whenever it uses a session; [`run`] keeps one
//! connection per account with the newest session, reconnecting with backoff, until the
//! session expires or is refused. The broker does not replay updates sent while the socket
//! was down, so every (re)connect catches up from the order book, and while the socket is
//! connected the book of an account with working orders is read again every
//! `PINNACLE_WORKER_ORDER_BOOK_SWEEP_MS` (a socket can stay open and stop delivering).
//! Each update is matched to a Pinnacle order by the
//! broker's order id (or, before that id is stored, by the order tag) and applied with the
//! same compare-and-set as every other transition, so duplicates and stale updates from
//! several workers are harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pinnacle_common::broker::BrokerOutcome;
use pinnacle_common::entities::orders;
use pinnacle_common::model::OrderStatus;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_smartapi::order_updates::{self, Ended, Event};
use pinnacle_smartapi::tag;
use pinnacle_smartapi::types::OrderRecord;
use pinnacle_smartapi::RestClient;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::{row, CorruptOrder, Engine, Patch};

/// The first wait before reconnecting a dropped order-update socket; it doubles while
/// reconnects keep failing, up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The longest wait before reconnecting (and the wait after "too many connections").
const LAST_RETRY: Duration = Duration::from_secs(30);
/// A socket that stayed up this long starts the backoff again from [`FIRST_RETRY`] when it
/// ends: without it, a few drops early in the day left every later one 30 s blind to fills.
const STABLE: Duration = Duration::from_secs(5);

/// A session the broker is using for an account.
#[derive(Clone)]
pub struct SessionNotice {
    /// Pinnacle's broker account id.
    pub account_id: String,
    /// The account's client code (for logs; not secret).
    pub client_code: String,
    /// The session token.
    pub jwt: SecretString,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
    /// The account's REST client, to catch up from the order book after a reconnect.
    pub client: RestClient,
    /// Where the follower says whether the account's stream is live.
    pub live: Arc<LiveStreams>,
}

/// The accounts whose order-update socket is connected, in this process, each with the
/// number of that connection. An order placed and acknowledged within one connection has
/// every later change reported on it; one placed while the socket was (re)connecting may
/// have changed before the socket listened and after the catch-up read the order book.
#[derive(Debug, Default)]
pub struct LiveStreams(std::sync::Mutex<(u64, HashMap<String, u64>)>);

impl LiveStreams {
    /// The number of `account_id`'s current connection, if its stream is live.
    pub fn connection(&self, account_id: &str) -> Option<u64> {
        self.lock().1.get(account_id).copied()
    }

    fn set(&self, account_id: &str, live: bool) {
        let mut state = self.lock();
        if live {
            state.0 += 1;
            let number = state.0;
            state.1.insert(account_id.to_string(), number);
        } else {
            state.1.remove(account_id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<String, u64>)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for SessionNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionNotice")
            .field("account_id", &self.account_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

struct Follower {
    jwt: SecretString,
    task: JoinHandle<()>,
}

/// Runs until `shutdown`: one follower per account with a live session.
pub async fn run(
    engine: Arc<Engine>,
    url: String,
    mut notices: mpsc::UnboundedReceiver<SessionNotice>,
    shutdown: Shutdown,
) {
    let mut followers: HashMap<String, Follower> = HashMap::new();
    loop {
        let notice = tokio::select! {
            () = shutdown.cancelled() => break,
            notice = notices.recv() => match notice { Some(n) => n, None => break },
        };
        let current = followers.get(&notice.account_id);
        let same = current.is_some_and(|f| {
            !f.task.is_finished() && f.jwt.expose_secret() == notice.jwt.expose_secret()
        });
        if same {
            continue;
        }
        if let Some(old) = followers.remove(&notice.account_id) {
            old.task.abort();
            // Aborted, the old follower cannot say its socket is gone.
            notice.live.set(&notice.account_id, false);
        }
        let task = tokio::spawn(follow_account(
            engine.clone(),
            url.clone(),
            notice.clone(),
            shutdown.clone(),
        ));
        followers.insert(
            notice.account_id.clone(),
            Follower {
                jwt: notice.jwt,
                task,
            },
        );
    }
    for (_, follower) in followers {
        follower.task.abort();
    }
}

async fn follow_account(
    engine: Arc<Engine>,
    url: String,
    notice: SessionNotice,
    shutdown: Shutdown,
) {
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    let applier = {
        let engine = engine.clone();
        let notice = notice.clone();
        tokio::spawn(async move {
            let mut sweep = sweep_timer(engine.settings().order_book_sweep_ms);
            loop {
                let event = tokio::select! {
                    event = rx.recv() => match event {
                        Some(event) => event,
                        None => break,
                    },
                    () = next_sweep(&mut sweep) => {
                        sweep_book(&engine, &notice).await;
                        continue;
                    }
                };
                match event {
                    Event::Connected => {
                        // Whatever changes from now on arrives on the socket; what changed
                        // before is in the order book.
                        notice.live.set(&notice.account_id, true);
                        catch_up(&engine, &notice).await;
                        if let Some(timer) = &mut sweep {
                            timer.reset();
                        }
                    }
                    Event::Update(update) => {
                        apply(&engine, &notice.account_id, &update.order).await;
                    }
                }
            }
        })
    };
    let mut backoff = FIRST_RETRY;
    while Utc::now() < notice.expires_at && !shutdown.is_cancelled() {
        let started = tokio::time::Instant::now();
        let ended = tokio::select! {
            () = shutdown.cancelled() => break,
            ended = order_updates::follow(&url, &notice.jwt, &tx) => ended,
        };
        notice.live.set(&notice.account_id, false);
        // A socket that served a while was healthy: its end is news, not a flapping server.
        if started.elapsed() >= STABLE {
            backoff = FIRST_RETRY;
        }
        let retry_in_ms = backoff.as_millis();
        match ended {
            Ok(Ended::SessionRefused(status)) => {
                tracing::info!(client_code = %notice.client_code, status, "order-update socket refused the session; waiting for a new one");
                break;
            }
            Ok(Ended::ReceiverGone) => break,
            Ok(Ended::TooManyConnections) => {
                backoff = LAST_RETRY;
                let retry_in_ms = backoff.as_millis();
                tracing::warn!(client_code = %notice.client_code, retry_in_ms, "order-update socket: connection limit reached");
            }
            Ok(Ended::Closed(reason)) => {
                tracing::info!(client_code = %notice.client_code, %reason, retry_in_ms, "order-update socket closed; reconnecting");
            }
            Err(error) => {
                tracing::warn!(client_code = %notice.client_code, %error, retry_in_ms, "order-update socket failed; reconnecting");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(LAST_RETRY);
    }
    drop(tx);
    let _ = applier.await;
    notice.live.set(&notice.account_id, false);
}

/// The timer of the order-book sweep ([`sweep_book`]): every `every_ms`, the first one a
/// period from now; none when `every_ms` is 0.
pub(super) fn sweep_timer(every_ms: u64) -> Option<tokio::time::Interval> {
    let period = Duration::from_millis(every_ms);
    (every_ms > 0).then(|| {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    })
}

/// The sweep timer's next tick; never, with the sweep off.
pub(super) async fn next_sweep(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The periodic catch-up: while the account's socket is connected and it has working
/// orders, applies the order book as after a reconnect. A socket can stay open and stop
/// delivering (the broker's side stalls, a proxy drops frames), and nothing else would
/// notice: fills at the broker would never reach Pinnacle, and `OPEN` orders are not
/// reconciled. While the socket is down the reconnect's own catch-up does this.
async fn sweep_book(engine: &Engine, notice: &SessionNotice) {
    if notice.live.connection(&notice.account_id).is_none() {
        return;
    }
    match engine.working_at(&notice.account_id).await {
        Ok(true) => catch_up(engine, notice).await,
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(client_code = %notice.client_code, %error, "could not list working orders for the order-book sweep");
        }
    }
}

/// Updates sent while the socket was down are lost: apply today's order book instead.
async fn catch_up(engine: &Engine, notice: &SessionNotice) {
    match notice.client.order_book(&notice.jwt).await {
        Ok(book) => {
            for record in &book {
                apply(engine, &notice.account_id, record).await;
            }
        }
        Err(error) => {
            tracing::warn!(client_code = %notice.client_code, %error, "could not catch up from the order book");
        }
    }
}

/// Applies one order record to the matching order, if Pinnacle has it.
///
/// Losing the compare-and-set to the request path or another worker is normal; the record
/// is then weighed again against the order as it now stands (a rejection that raced the
/// place reply's OPEN still lands), a few times at most.
pub(super) async fn apply(engine: &Engine, account_id: &str, record: &OrderRecord) {
    for _ in 0..APPLY_ATTEMPTS {
        let Some(order) = find(engine, account_id, record).await else {
            if !super::late::found_after_not_at_broker(engine, account_id, record).await {
                tracing::debug!(status = %record.status, "order update for an order Pinnacle did not place");
            }
            return;
        };
        let outcome = super::map::outcome(record);
        let status = match row::status_of(&order) {
            Ok(status) => status,
            Err(error) => {
                tracing::error!(%error, "order update for a corrupt order, not applied");
                return;
            }
        };
        let acknowledged = order.broker_order_id.is_some();
        if !applies(status, order.filled_quantity, acknowledged, &outcome) {
            return;
        }
        let patch = match patch_for(&order, &outcome) {
            Ok(patch) => patch,
            Err(error) => {
                tracing::error!(%error, "order update for a corrupt order, not applied");
                return;
            }
        };
        match engine.apply_update(&order, outcome.status, patch).await {
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(order_id = %order.id, %error, "order update not applied");
            }
        }
    }
}

/// How many times one record is weighed against an order that keeps changing under it.
const APPLY_ATTEMPTS: usize = 3;

/// Whether a record moves an order that is `current` with `filled` units filled.
///
/// Not when the state machine forbids it, or when it changes nothing. Never into `PENDING_MODIFY` / `PENDING_CANCEL`: those are
/// Pinnacle's own steps, and a late `modify pending` would strand a settled order in one.
/// And while a modify or cancel is in flight, not to a working state with the same fill:
/// such a record is either the change's own confirmation, which the request records from
/// the broker's answer, or a stale one from before the change (several workers each follow
/// the socket, some behind), which would put back the old terms or undo the cancel. Fills
/// and final states always apply.
///
/// Nor, to any working state, to an `UNKNOWN` order the broker had `acknowledged` (its
/// order id is stored): that is a change or a place whose answer was lost, and a working
/// record may be from before the change (the order-book catch-up after a reconnect reads
/// a snapshot that can predate it; a socket that lags sends old records), while the order
/// is no longer in flight, so nothing would ever correct the old terms it put back. Such an
/// order is settled by reconciliation, which reads the broker afresh, or by a final state.
/// An `UNKNOWN` order with no broker id yet (a place whose answer was lost) takes any
/// record: nothing was at the broker before it.
fn applies(current: OrderStatus, filled: i64, acknowledged: bool, outcome: &BrokerOutcome) -> bool {
    use OrderStatus::*;
    let unchanged = current == outcome.status && filled == outcome.filled_quantity;
    let to_pending = matches!(outcome.status, PendingModify | PendingCancel);
    let in_flight = matches!(current, PendingModify | PendingCancel)
        && outcome.status.is_working()
        && outcome.filled_quantity == filled;
    let lost_answer = current == Unknown && acknowledged && outcome.status.is_working();
    // A rejection of an order with fills is recorded as its end (`CANCELLED`).
    let recorded = outcome
        .status
        .recorded_as(filled.max(outcome.filled_quantity));
    current.can_become(recorded) && !(unchanged || to_pending || in_flight || lost_answer)
}

/// The fields a broker record sets: its fill, and its quantity and prices, which are the
/// broker's truth after a modification (the stream may see it before the modify's reply
/// does); a rejection keeps the broker's reason ([`Patch::from_outcome`]).
fn patch_for(order: &orders::Model, outcome: &BrokerOutcome) -> Result<Patch, CorruptOrder> {
    let terms = outcome.terms.for_type(row::view(order)?.order_type);
    Ok(Patch::from_outcome(outcome).with_terms(terms))
}

async fn find(engine: &Engine, account_id: &str, record: &OrderRecord) -> Option<orders::Model> {
    let by_id = engine
        .order_at_broker(account_id, record.orderid.as_str())
        .await
        .ok()
        .flatten();
    if by_id.is_some() || record.ordertag.is_empty() {
        return by_id;
    }
    // The update can beat the place reply: match the account's in-flight orders by tag.
    let in_flight = engine.awaiting_broker(account_id).await.ok()?;
    in_flight
        .into_iter()
        .find(|o| tag::order_tag(&o.id) == record.ordertag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: OrderStatus, filled: i64) -> BrokerOutcome {
        BrokerOutcome {
            broker_order_id: "1".into(),
            broker_unique_id: None,
            status,
            filled_quantity: filled,
            average_price: None,
            terms: pinnacle_common::broker::OrderTerms::default(),
            fill_value: None,
            reason: None,
        }
    }

    #[test]
    fn each_connection_has_its_own_number() {
        let live = LiveStreams::default();
        assert_eq!(live.connection("a"), None);
        live.set("a", true);
        let first = live.connection("a");
        assert!(first.is_some());
        live.set("a", false);
        assert_eq!(live.connection("a"), None);
        live.set("a", true);
        assert_ne!(
            live.connection("a"),
            first,
            "a reconnect is a new connection"
        );
    }

    #[test]
    fn records_move_orders_except_where_the_request_path_owns_the_change() {
        use OrderStatus::*;
        assert!(applies(Submitted, 0, true, &outcome(Open, 0)));
        assert!(applies(Open, 0, true, &outcome(Filled, 3)));
        assert!(applies(Open, 0, true, &outcome(Rejected, 0)));
        assert!(
            !applies(Open, 0, true, &outcome(Open, 0)),
            "nothing changed"
        );
        assert!(
            !applies(Open, 0, true, &outcome(PendingModify, 0)),
            "a late modify pending"
        );
        assert!(
            !applies(PendingModify, 0, true, &outcome(Open, 0)),
            "stale or the modify's own"
        );
        assert!(
            !applies(PendingCancel, 0, true, &outcome(Open, 0)),
            "stale: would undo the cancel"
        );
        assert!(
            applies(PendingModify, 0, true, &outcome(PartiallyFilled, 1)),
            "a fill races it"
        );
        assert!(applies(PendingModify, 0, true, &outcome(Filled, 4)));
        assert!(applies(PendingCancel, 0, true, &outcome(Cancelled, 0)));
        assert!(
            applies(PendingCancel, 0, true, &outcome(Rejected, 0)),
            "rejected before the cancel reached it"
        );
        assert!(
            applies(PendingModify, 2, true, &outcome(Rejected, 0)),
            "recorded as its end, CANCELLED: what filled stands"
        );
        assert!(
            applies(PartiallyFilled, 2, true, &outcome(Rejected, 2)),
            "recorded as its end, CANCELLED"
        );
        assert!(
            applies(Unknown, 0, false, &outcome(Open, 0)),
            "a place whose answer was lost: the order exists"
        );
        assert!(
            !applies(Unknown, 0, true, &outcome(Open, 0)),
            "a lost change's order: possibly from before the change"
        );
        assert!(
            !applies(Unknown, 0, true, &outcome(PartiallyFilled, 1)),
            "a fill of it, with terms possibly from before the change"
        );
        assert!(applies(Unknown, 0, true, &outcome(Filled, 5)));
        assert!(applies(Unknown, 0, true, &outcome(Cancelled, 0)));
        assert!(applies(Unknown, 0, true, &outcome(Rejected, 0)));
        assert!(
            !applies(Filled, 3, true, &outcome(Cancelled, 3)),
            "nothing leaves a final state"
        );
    }
}
