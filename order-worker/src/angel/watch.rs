//! Accounts with working orders are followed even when nobody sends a request.
//!
//! A worker follows an account's order-update socket once a request has used its session
//! ([`super::updates`]). After every worker restarted, or once the broker refused the
//! socket's session (revoked, expired), nothing would follow the account until its trader
//! sent another request, and fills at the broker would not reach Pinnacle meanwhile.
//!
//! So every `PINNACLE_WORKER_ORDER_BOOK_SWEEP_MS` each worker lists the `angel_one`
//! accounts with `OPEN` or `PARTIALLY_FILLED` orders whose socket is not connected in this
//! process, and for each one opens its credentials (audited, purpose `order.follow`) and
//! reads its order book with a live session: the book is applied as after a reconnect,
//! a refused session is renewed on the way, and the follower is told about the session,
//! so the socket connects. An account whose attempt failed (a login the broker refuses)
//! waits, doubling from one period up to 30 minutes, before it is tried again.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pinnacle_common::entities::{broker_accounts, orders};
use pinnacle_common::model::OrderStatus;
use pinnacle_common::shutdown::Shutdown;
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::prewarm::Backoff;
use super::updates::{next_sweep, sweep_timer};
use super::AngelOneBroker;
use crate::engine::Engine;

/// The audit actor of these reads.
pub const ACTOR: &str = "pinnacle-order-follow";

/// Follows unfollowed accounts with working orders on the order-book sweep's timer until
/// `shutdown` (never, with the sweep off).
pub async fn run(
    engine: Arc<Engine>,
    db: DatabaseConnection,
    broker: Arc<AngelOneBroker>,
    shutdown: Shutdown,
) {
    let every_ms = engine.settings().order_book_sweep_ms;
    let every = Duration::from_millis(every_ms);
    let mut timer = sweep_timer(every_ms);
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = next_sweep(&mut timer) => {}
        }
        let accounts = match unfollowed(&db, &broker).await {
            Ok(accounts) => accounts,
            Err(error) => {
                tracing::warn!(%error, "could not list accounts with working orders to follow");
                continue;
            }
        };
        for account in accounts {
            let now = Utc::now();
            if backoff.is_waiting(&account.id, now) {
                continue;
            }
            match follow(&engine, &broker, &account).await {
                Ok(records) => {
                    backoff.succeeded(&account.id);
                    tracing::info!(account = %account.id, records, "followed an account with working orders that nothing followed");
                }
                Err(error) => {
                    let pause = backoff.failed(&account.id, now, every);
                    tracing::warn!(
                        account = %account.id,
                        %error,
                        retry_in_s = pause.as_secs(),
                        "could not follow an account with working orders"
                    );
                }
            }
        }
    }
}

/// The `angel_one` accounts with `OPEN` or `PARTIALLY_FILLED` orders whose order-update
/// socket is not connected in this process.
async fn unfollowed(
    db: &DatabaseConnection,
    broker: &AngelOneBroker,
) -> Result<Vec<broker_accounts::Model>, DbErr> {
    let angel_accounts = Query::select()
        .column(broker_accounts::Column::Id)
        .from(broker_accounts::Entity)
        .and_where(broker_accounts::Column::Broker.eq(super::NAME))
        .to_owned();
    let working: Vec<String> = orders::Entity::find()
        .select_only()
        .column(orders::Column::BrokerAccountId)
        .distinct()
        .filter(orders::Column::Status.is_in([
            OrderStatus::Open.as_str(),
            OrderStatus::PartiallyFilled.as_str(),
        ]))
        .filter(orders::Column::BrokerAccountId.in_subquery(angel_accounts))
        .into_tuple()
        .all(db)
        .await?;
    let unfollowed: Vec<String> = working
        .into_iter()
        .filter(|id| broker.live.connection(id).is_none())
        .collect();
    if unfollowed.is_empty() {
        return Ok(Vec::new());
    }
    broker_accounts::Entity::find()
        .filter(broker_accounts::Column::Id.is_in(unfollowed))
        .all(db)
        .await
}

/// Reads `account`'s order book with a live session and applies it; returns how many
/// records it held.
async fn follow(
    engine: &Engine,
    broker: &AngelOneBroker,
    account: &broker_accounts::Model,
) -> Result<usize, String> {
    let creds = engine
        .open_credentials(ACTOR, account, "order.follow")
        .await
        .map_err(|e| e.message)?;
    let book = broker.order_book(&creds).await.map_err(|e| e.to_string())?;
    drop(creds);
    for record in &book {
        super::updates::apply(engine, &account.id, record).await;
    }
    Ok(book.len())
}
