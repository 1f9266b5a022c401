//! Following each Angel One account's order-update WebSocket into the order state machine
//! and so onto `events.orders.<user>`.
//!
//! The broker sends a [`SessionNotice`] whenever it uses a session; [`run`] keeps one
//! connection per account with the newest session, reconnecting with backoff, until the
//! session expires or is refused. The broker does not replay updates sent while the socket
//! was down, so every (re)connect catches up from the order book. Each update is matched to a Pinnacle order by the
//! broker's order id (or, before that id is stored, by the order tag) and applied with the
//! same compare-and-set as every other transition, so duplicates and stale updates from
//! several workers are harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pinnacle_common::broker::BrokerOutcome;
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::OrderStatus;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_smartapi::order_updates::{self, Ended, Event};
use pinnacle_smartapi::tag;
use pinnacle_smartapi::types::OrderRecord;
use pinnacle_smartapi::RestClient;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::service::Worker;
use crate::store::Patch;

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
    worker: Arc<Worker>,
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
        }
        let task = tokio::spawn(follow_account(
            worker.clone(),
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
    worker: Arc<Worker>,
    url: String,
    notice: SessionNotice,
    shutdown: Shutdown,
) {
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    let applier = {
        let worker = worker.clone();
        let notice = notice.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match event {
                    Event::Connected => catch_up(&worker, &notice).await,
                    Event::Update(update) => {
                        apply(&worker, &notice.account_id, &update.order).await;
                    }
                }
            }
        })
    };
    let mut backoff = Duration::from_millis(250);
    while Utc::now() < notice.expires_at && !shutdown.is_cancelled() {
        let ended = tokio::select! {
            () = shutdown.cancelled() => break,
            ended = order_updates::follow(&url, &notice.jwt, &tx) => ended,
        };
        match ended {
            Ok(Ended::SessionRefused(status)) => {
                tracing::info!(client_code = %notice.client_code, status, "order-update socket refused the session; waiting for a new one");
                break;
            }
            Ok(Ended::ReceiverGone) => break,
            Ok(Ended::TooManyConnections) => {
                tracing::warn!(client_code = %notice.client_code, "order-update socket: connection limit reached");
                backoff = Duration::from_secs(30);
            }
            Ok(Ended::Closed(reason)) => {
                tracing::info!(client_code = %notice.client_code, %reason, "order-update socket closed; reconnecting");
            }
            Err(error) => {
                tracing::warn!(client_code = %notice.client_code, %error, "order-update socket failed; reconnecting");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
    drop(tx);
    let _ = applier.await;
}

/// Updates sent while the socket was down are lost: apply today's order book instead.
async fn catch_up(worker: &Worker, notice: &SessionNotice) {
    match notice.client.order_book(&notice.jwt).await {
        Ok(book) => {
            for record in &book {
                apply(worker, &notice.account_id, record).await;
            }
        }
        Err(error) => {
            tracing::warn!(client_code = %notice.client_code, %error, "could not catch up from the order book");
        }
    }
}

/// Applies one order record to the matching order, if Pinnacle has it.
async fn apply(worker: &Worker, account_id: &str, record: &OrderRecord) {
    let Some(order) = find(worker, account_id, record).await else {
        tracing::debug!(status = %record.status, "order update for an order Pinnacle did not place");
        return;
    };
    let outcome = super::map::outcome(record);
    let current = crate::store::status_of(&order);
    if current == outcome.status && order.filled_quantity == outcome.filled_quantity {
        return;
    }
    // Losing the compare-and-set to the request path or another worker is normal.
    if let Err(error) = worker
        .advance(&order, outcome.status, patch_for(&order, record, &outcome))
        .await
    {
        tracing::debug!(order_id = %order.id, %error, "order update not applied");
    }
}

/// The fields a broker record sets: its fill, and its quantity and prices, which are the
/// broker's truth after a modification (the stream may see it before the modify's reply
/// does); a rejection keeps the broker's reason.
fn patch_for(order: &orders::Model, record: &OrderRecord, outcome: &BrokerOutcome) -> Patch {
    let order_type = crate::store::view(order).order_type;
    let (quantity, price, trigger_price) = super::map::terms(record, order_type);
    let rejection = (outcome.status == OrderStatus::Rejected).then(|| {
        let reason = if record.text.is_empty() {
            "the broker rejected the order".to_string()
        } else {
            format!("the broker rejected the order: {}", record.text)
        };
        ErrorBody::new(ErrorCode::BrokerRejected, reason)
    });
    Patch {
        quantity,
        price,
        trigger_price,
        rejection,
        ..Patch::from_outcome(outcome)
    }
}

async fn find(worker: &Worker, account_id: &str, record: &OrderRecord) -> Option<orders::Model> {
    let by_id = orders::Entity::find()
        .filter(orders::Column::BrokerAccountId.eq(account_id))
        .filter(orders::Column::BrokerOrderId.eq(record.orderid.as_str()))
        .one(&worker.db)
        .await
        .ok()
        .flatten();
    if by_id.is_some() || record.ordertag.is_empty() {
        return by_id;
    }
    // The update can beat the place reply: match the account's in-flight orders by tag.
    let in_flight = orders::Entity::find()
        .filter(orders::Column::BrokerAccountId.eq(account_id))
        .filter(orders::Column::Status.is_in([
            OrderStatus::Submitted.as_str(),
            OrderStatus::Unknown.as_str(),
        ]))
        .all(&worker.db)
        .await
        .ok()?;
    in_flight
        .into_iter()
        .find(|o| tag::order_tag(&o.id) == record.ordertag)
}
