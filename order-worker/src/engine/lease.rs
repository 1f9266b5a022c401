//! One owner per in-flight order.
//!
//! An order being placed, modified or cancelled carries a lease: an owner token (unique per
//! acquisition) and `lease_until_ms`. The rule that makes "not at the broker" a safe
//! conclusion:
//!
//! 1. The owner calls the broker for the order only through [`guard`], which renews the
//!    lease every third of its length while the call runs and **drops the call** the
//!    moment the lease is not known to be held: at the local deadline of its last
//!    successful renewal, or at once when a renewal finds another owner. So no owner sends
//!    anything for the order after `lease_until_ms`. A lease that ran out before its call
//!    started is renewed once by compare-and-set ([`guard`]); the call never starts if
//!    someone took the order meanwhile.
//! 2. Reconciliation takes an order only when `lease_until_ms + grace` has passed
//!    ([`is_abandoned`]), by compare-and-set on the lease it saw
//!    ([`take`](super::store::OrderStore::take)).
//!    The grace covers a request already on the wire when its sender gave up, and clock
//!    skew between workers.
//! 3. Only the lease holder may settle an in-flight order
//!    ([`super::store::Ownership::Held`]); a handler that lost its lease replies with the
//!    order as the database now shows it.
//!
//! Hence when reconciliation asks the broker, no owner can still send the order, and the
//! broker's "no such order" is the final truth.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::entities::orders;
use pinnacle_common::model::OrderStatus;
use tokio::sync::watch;
use tokio::time::Instant;

use super::store::{self, OrderStore};

/// How long leases last and how long after expiry an order counts as abandoned.
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    /// The lease's length; renewed every third of it.
    pub length: Duration,
    /// Added to an expired lease before anyone else may take the order.
    pub grace: Duration,
}

/// A lease this process holds on one order.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The order.
    pub order_id: String,
    /// The token stored in `orders.lease_owner`.
    pub owner: String,
    /// The local instant after which the lease is no longer known to be held.
    pub deadline: Instant,
}

/// The broker call was dropped because the lease was lost; nothing more will be sent.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the lease on the order was lost; its outcome is left to reconciliation")]
pub struct LeaseLost;

/// Issues lease tokens for one worker instance.
#[derive(Debug)]
pub struct Issuer {
    instance: String,
    next: AtomicU64,
    terms: Terms,
}

impl Issuer {
    /// Tokens `<instance>#<n>`, with `terms`.
    pub fn new(instance: impl Into<String>, terms: Terms) -> Self {
        Self {
            instance: instance.into(),
            next: AtomicU64::new(1),
            terms,
        }
    }

    /// The lease terms.
    pub fn terms(&self) -> Terms {
        self.terms
    }

    /// A new lease on `order_id`, starting now: the token, the `lease_until_ms` to store,
    /// and the local deadline (taken before the clock reading, so it is never later than
    /// the stored expiry).
    pub fn issue(&self, order_id: &str) -> (Lease, i64) {
        let deadline = Instant::now() + self.terms.length;
        let until_ms = store::now_ms() + self.terms.length.as_millis() as i64;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let lease = Lease {
            order_id: order_id.to_string(),
            owner: format!("{}#{n}", self.instance),
            deadline,
        };
        (lease, until_ms)
    }
}

/// Whether nobody can still be talking to the broker about `order`: it is in flight or
/// `UNKNOWN`, and its lease (if any) expired more than `grace` ago at `now_ms`. An order
/// without a lease (written before leases existed, or `UNKNOWN`) counts as abandoned once
/// it has been quiet for `quiet`. A corrupt status is not abandoned: nothing may conclude
/// from it (reading the order reports it).
pub fn is_abandoned(order: &orders::Model, terms: Terms, quiet: Duration, now_ms: i64) -> bool {
    let Ok(status) = store::status_of(order) else {
        return false;
    };
    if !(status.is_in_flight() || status == OrderStatus::Unknown) {
        return false;
    }
    let quiet_for = now_ms - order.updated_at.timestamp_millis();
    match order.lease_until_ms {
        Some(until) => now_ms > until + terms.grace.as_millis() as i64,
        None => quiet_for >= quiet.as_millis() as i64,
    }
}

/// Runs `call` (a broker call for the leased order) while renewing the lease, and drops it
/// as soon as the lease is not known to be held. See the module docs.
pub async fn guard<F: Future>(
    orders: &Arc<dyn OrderStore>,
    lease: &Lease,
    terms: Terms,
    call: F,
) -> Result<F::Output, LeaseLost> {
    let start = if Instant::now() < lease.deadline {
        lease.deadline
    } else {
        renew_lapsed(orders, lease, terms).await?
    };
    let (deadline_tx, mut deadline) = watch::channel(start);
    let keeper = tokio::spawn(keep(orders.clone(), lease.clone(), terms, deadline_tx));
    let _stop_keeper = AbortOnDrop(keeper);
    tokio::pin!(call);
    loop {
        let until = *deadline.borrow_and_update();
        if Instant::now() >= until {
            tracing::debug!(order_id = %lease.order_id, "lease not renewed; the broker call is dropped");
            return Err(LeaseLost);
        }
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(until) => {}
            changed = deadline.changed() => {
                if changed.is_err() {
                    // The keeper stopped without word: keep the last deadline.
                    return tokio::select! {
                        () = tokio::time::sleep_until(until) => Err(LeaseLost),
                        output = &mut call => Ok(output),
                    };
                }
            }
            output = &mut call => return Ok(output),
        }
    }
}

/// The new local deadline of a lease that ran out before its call started (the insert or
/// the `PENDING_*` step was slower than the lease): renewed by compare-and-set on the
/// owner, which fails once reconciliation took the order or it ended. Until then nobody
/// has concluded anything about it, and nothing was sent, so holding it again is safe.
async fn renew_lapsed(
    orders: &Arc<dyn OrderStore>,
    lease: &Lease,
    terms: Terms,
) -> Result<Instant, LeaseLost> {
    match renew(orders.as_ref(), lease, terms).await {
        Ok(Some(deadline)) => {
            tracing::debug!(order_id = %lease.order_id, "a lapsed lease was renewed before the broker call");
            Ok(deadline)
        }
        Ok(None) => Err(LeaseLost),
        Err(error) => {
            tracing::warn!(order_id = %lease.order_id, %error, "could not renew the lapsed lease");
            Err(LeaseLost)
        }
    }
}

/// Renews `lease` once: its new local deadline (taken before the clock reading, so never
/// later than the stored expiry), or `None` when another owner holds the order.
async fn renew(
    orders: &dyn OrderStore,
    lease: &Lease,
    terms: Terms,
) -> Result<Option<Instant>, sea_orm::DbErr> {
    let started = Instant::now();
    let until_ms = store::now_ms() + terms.length.as_millis() as i64;
    let renewed = orders
        .renew(&lease.order_id, &lease.owner, until_ms)
        .await?;
    Ok(renewed.then(|| started + terms.length))
}

/// Renews `lease` every third of its length, publishing each new local deadline; a renewal
/// that finds another owner sets the deadline to now.
async fn keep(
    orders: Arc<dyn OrderStore>,
    lease: Lease,
    terms: Terms,
    deadline: watch::Sender<Instant>,
) {
    let every = terms.length / 3;
    loop {
        tokio::time::sleep(every).await;
        match renew(orders.as_ref(), &lease, terms).await {
            Ok(Some(until)) => {
                deadline.send_replace(until);
            }
            Ok(None) => {
                deadline.send_replace(Instant::now());
                return;
            }
            Err(error) => {
                tracing::warn!(order_id = %lease.order_id, %error, "could not renew the lease");
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus, lease_until_ms: Option<i64>, updated_ms: i64) -> orders::Model {
        let at = chrono::DateTime::from_timestamp_millis(updated_ms).expect("in range");
        orders::Model {
            status: status.as_str().into(),
            created_at: at,
            updated_at: at,
            lease_owner: lease_until_ms.map(|_| "w#1".into()),
            lease_until_ms,
            ..crate::engine::fixtures::order_row("o", "u", "a")
        }
    }

    const TERMS: Terms = Terms {
        length: Duration::from_secs(5),
        grace: Duration::from_secs(2),
    };
    const QUIET: Duration = Duration::from_secs(10);

    #[test]
    fn an_order_is_abandoned_only_after_its_lease_and_the_grace() {
        let leased = order(OrderStatus::Submitted, Some(10_000), 0);
        assert!(!is_abandoned(&leased, TERMS, QUIET, 9_000));
        assert!(
            !is_abandoned(&leased, TERMS, QUIET, 12_000),
            "within the grace"
        );
        assert!(is_abandoned(&leased, TERMS, QUIET, 12_001));
        let unknown = order(OrderStatus::Unknown, None, 0);
        assert!(!is_abandoned(&unknown, TERMS, QUIET, 9_999));
        assert!(is_abandoned(&unknown, TERMS, QUIET, 10_000));
        let open = order(OrderStatus::Open, None, 0);
        assert!(
            !is_abandoned(&open, TERMS, QUIET, 1_000_000),
            "not in flight"
        );
    }

    /// A store over a database without tables: every renewal fails.
    async fn store_without_tables() -> Arc<dyn OrderStore> {
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        Arc::new(store::SqlOrderStore::new(
            db,
            crate::engine::ledger::Books::new(0),
        ))
    }

    #[tokio::test]
    async fn a_call_outliving_an_unrenewable_lease_is_dropped_before_it_sends() {
        // No such table: renewals fail, so the deadline is never extended.
        let orders = store_without_tables().await;
        tokio::time::pause();
        let issuer = Issuer::new("w", TERMS);
        let (lease, _) = issuer.issue("missing");
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = sent.clone();
        let call = async move {
            tokio::time::sleep(Duration::from_secs(6)).await;
            flag.store(true, Ordering::SeqCst);
        };
        let outcome = guard(&orders, &lease, TERMS, call).await;
        assert!(outcome.is_err());
        assert!(
            !sent.load(Ordering::SeqCst),
            "the call never reached its send"
        );
    }

    /// Order `o1` of user `u1`, stored under `owner`'s lease, which ran out a second ago;
    /// the store holding it, and the lease as its owner sees it (lapsed).
    async fn lapsed(db: &sea_orm::DatabaseConnection, owner: &str) -> (Arc<dyn OrderStore>, Lease) {
        crate::engine::fixtures::with_account(db).await;
        let orders: Arc<dyn OrderStore> = Arc::new(store::SqlOrderStore::new(
            db.clone(),
            crate::engine::ledger::Books::new(0),
        ));
        let request =
            crate::engine::fixtures::limit_buy("c1", pinnacle_common::model::Product::Delivery);
        let new = store::NewOrder {
            order_id: "o1",
            user_id: "u1",
            broker_account_id: "id-paper",
            request: &request,
            owner,
            lease_until_ms: store::now_ms() - 1_000,
        };
        orders.insert_new(new).await.expect("insert");
        let lease = Lease {
            order_id: "o1".into(),
            owner: owner.into(),
            deadline: Instant::now(),
        };
        (orders, lease)
    }

    #[tokio::test]
    async fn a_lease_that_lapsed_before_its_call_is_renewed_while_nobody_took_the_order() {
        for (db, _pg) in crate::engine::fixtures::databases().await {
            let (orders, lease) = lapsed(&db, "w#1").await;
            let before = store::now_ms();
            let outcome = guard(&orders, &lease, TERMS, async { 7 }).await;
            assert_eq!(
                outcome.ok(),
                Some(7),
                "a slow insert does not lose the order"
            );
            let row = orders.get("o1").await.expect("get").expect("stored");
            assert_eq!(row.lease_owner.as_deref(), Some("w#1"));
            let until = row.lease_until_ms.expect("leased");
            assert!(until >= before + TERMS.length.as_millis() as i64, "{until}");
        }
    }

    #[tokio::test]
    async fn a_lease_that_lapsed_and_was_taken_is_never_renewed_and_its_call_never_starts() {
        for (db, _pg) in crate::engine::fixtures::databases().await {
            let (orders, lease) = lapsed(&db, "w#1").await;
            let row = orders.get("o1").await.expect("get").expect("stored");
            let taken = orders
                .take(&row, "reconciler#1", store::now_ms() + 60_000)
                .await
                .expect("take");
            assert!(taken.is_some(), "reconciliation takes the lapsed order");
            assert!(
                never_started(&orders, &lease).await,
                "nothing sent for a taken order"
            );
            let row = orders.get("o1").await.expect("get").expect("stored");
            assert_eq!(row.lease_owner.as_deref(), Some("reconciler#1"));
        }
    }

    #[tokio::test]
    async fn a_paused_owner_never_starts_the_call() {
        let orders = store_without_tables().await;
        tokio::time::pause();
        let issuer = Issuer::new("w", TERMS);
        let (lease, _) = issuer.issue("o");
        tokio::time::sleep(TERMS.length).await; // paused between insert and broker call
        assert!(never_started(&orders, &lease).await);
    }

    /// Whether [`guard`] refused a call under `lease` without ever polling it.
    async fn never_started(orders: &Arc<dyn OrderStore>, lease: &Lease) -> bool {
        let polled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = polled.clone();
        let outcome = guard(orders, lease, TERMS, async move {
            flag.store(true, Ordering::SeqCst);
        })
        .await;
        outcome.is_err() && !polled.load(Ordering::SeqCst)
    }
}
