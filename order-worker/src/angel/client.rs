//! The Angel One broker's value: its settings, HTTP clients per account, sessions and
//! the steps its `Broker` methods share (a session, a lookup by tag, the details after a
//! change).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinnacle_common::broker::{BrokerCredentials, BrokerError, BrokerOutcome};
use pinnacle_common::model::OrderStatus;
use pinnacle_smartapi::limits::RateLimiter;
use pinnacle_smartapi::session::{LoginSecrets, Session, SessionManager, SessionStore};
use pinnacle_smartapi::types::{OrderAck, OrderRecord};
use pinnacle_smartapi::{
    tag, AccountKey, RestClient, RestConfig, SmartApiError, SmartApiErrorKind,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::symbols::SymbolResolver;
use super::updates::{LiveStreams, SessionNotice};

use super::creds::{egress, login_secrets, stored_session};
use super::map;

/// The name stored in `broker_accounts.broker`.
pub const NAME: &str = "angel_one";

/// How often a request the broker refused with its 403 rate limit is tried again (it was
/// not processed, so sending it again cannot duplicate it). A refusal by Pinnacle's own
/// limiter is final: it already queued for [`RATE_LIMIT_WAIT`].
pub(super) const RATE_LIMIT_RETRIES: u32 = 2;

/// How many times one request renews a session the broker refused (AG8001, not processed)
/// before the refusal is final. More than once: a request that waited its turn behind a
/// burst (a stored order may wait [`RATE_LIMIT_WAIT`] ten times over) can see the session
/// it renewed refused in turn. Each renewal takes the session another request already
/// renewed when there is one (`SessionManager::renew`), so a burst still logs in once.
pub(super) const SESSION_RENEWALS: u32 = 3;

/// How long a SmartAPI request queues for its rate-limit window before it is refused
/// `RATE_LIMITED` (docs/SMARTAPI.md, "Rate limits").
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(3);

/// How often the details of an order whose change the broker has not finished are read
/// again, and how long apart.
pub(super) const PENDING_RETRIES: u32 = 3;
pub(super) const PENDING_PAUSE: Duration = Duration::from_millis(200);

/// SmartAPI as a [`Broker`](pinnacle_common::broker::Broker).
pub struct AngelOneBroker {
    pub(super) config: RestConfig,
    pub(super) limiter: Arc<RateLimiter>,
    pub(super) sessions: SessionManager,
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) symbols: SymbolResolver,
    /// One HTTP client per account, rebuilt when its key, client code or egress changes.
    pub(super) clients: Mutex<HashMap<String, ([u8; 32], RestClient)>>,
    /// Tells the order-update follower about every session in use.
    pub(super) notices: Option<mpsc::UnboundedSender<SessionNotice>>,
    /// Which accounts' order-update streams the follower has live.
    pub(super) live: Arc<LiveStreams>,
}

impl std::fmt::Debug for AngelOneBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AngelOneBroker")
            .field("base_url", &self.config.base_url)
            .finish_non_exhaustive()
    }
}

impl AngelOneBroker {
    /// A broker calling SmartAPI at `config.base_url`, keeping sessions in `store` and
    /// asking `symbols` for symbol tokens.
    pub fn new(
        config: RestConfig,
        sessions: SessionManager,
        store: Arc<dyn SessionStore>,
        symbols: SymbolResolver,
    ) -> Self {
        Self {
            config,
            limiter: RateLimiter::new(RATE_LIMIT_WAIT),
            sessions,
            store,
            symbols,
            clients: Mutex::new(HashMap::new()),
            notices: None,
            live: Arc::default(),
        }
    }

    /// Limits requests with `limiter` (one whose windows every worker shares, in a
    /// deployment) instead of this process's own.
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Sends a [`SessionNotice`] for every session used, so that the order-update follower
    /// can connect with it.
    pub fn with_notices(mut self, notices: mpsc::UnboundedSender<SessionNotice>) -> Self {
        self.notices = Some(notices);
        self
    }

    pub(super) fn client_for(&self, creds: &BrokerCredentials) -> Result<RestClient, BrokerError> {
        let (Some(api_key), Some(client_code)) = (&creds.api_key, &creds.client_code) else {
            return Err(BrokerError::Credentials(
                "an angel_one account needs api_key and client_code",
            ));
        };
        let egress = egress(creds)?;
        let mut hasher = Sha256::new();
        for part in [
            api_key.expose_secret(),
            client_code.expose_secret(),
            &format!("{egress:?}"),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let fingerprint: [u8; 32] = hasher.finalize().into();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, client)) = clients.get(&creds.account_id) {
            if *seen == fingerprint {
                return Ok(client.clone());
            }
        }
        let key = AccountKey {
            api_key: api_key.clone(),
            client_code: client_code.expose_secret().to_string(),
        };
        let client = RestClient::new(&self.config, key, &egress, self.limiter.clone())
            .map_err(|e| BrokerError::Rejected(e.to_string()))?;
        clients.insert(creds.account_id.clone(), (fingerprint, client.clone()));
        Ok(client)
    }

    /// `creds`'s live session: the one in use or stored, or a new login (one at a time
    /// across workers). The order-update follower is told about it.
    pub(super) async fn session(
        &self,
        creds: &BrokerCredentials,
        client: &RestClient,
        secrets: &LoginSecrets,
    ) -> Result<Session, SmartApiError> {
        let session = self
            .sessions
            .ensure(
                client,
                &creds.account_id,
                stored_session(creds),
                secrets,
                self.store.as_ref(),
            )
            .await?;
        self.notify(creds, client, &session);
        Ok(session)
    }

    /// Runs `call` with a live session, renewing it on a session error (up to
    /// [`SESSION_RENEWALS`] times), and again (up to [`RATE_LIMIT_RETRIES`]) after the
    /// broker's 403 rate limit.
    pub(super) async fn with_session<T, F, Fut>(
        &self,
        creds: &BrokerCredentials,
        call: F,
    ) -> Result<T, SmartApiError>
    where
        F: Fn(RestClient, SecretString) -> Fut,
        Fut: Future<Output = Result<T, SmartApiError>>,
    {
        let client = self
            .client_for(creds)
            .map_err(|e| SmartApiError::invalid(e.to_string()))?;
        let secrets = login_secrets(creds)?;
        let mut session = self.session(creds, &client, &secrets).await?;
        let mut renewals = 0;
        let mut rate_limited = 0;
        loop {
            match call(client.clone(), session.jwt.clone()).await {
                Err(e) if e.kind() == SmartApiErrorKind::Session && renewals < SESSION_RENEWALS => {
                    tracing::info!(code = e.code(), "SmartAPI session refused; renewing");
                    renewals += 1;
                    session = self
                        .sessions
                        .renew(
                            &client,
                            &creds.account_id,
                            Some(&session),
                            &secrets,
                            self.store.as_ref(),
                        )
                        .await?;
                    self.notify(creds, &client, &session);
                }
                Err(e)
                    if e.kind() == SmartApiErrorKind::RateLimited
                        && e.retry_after().is_none()
                        && rate_limited < RATE_LIMIT_RETRIES =>
                {
                    rate_limited += 1;
                    tracing::warn!(
                        attempt = rate_limited,
                        "SmartAPI rate limit; waiting to retry"
                    );
                    tokio::time::sleep(Duration::from_millis(1_000)).await;
                }
                other => return other,
            }
        }
    }

    /// When sessions end and what "now" is.
    pub fn session_policy(&self) -> &pinnacle_smartapi::session::SessionPolicy {
        self.sessions.policy()
    }

    /// Renews `creds`'s session now, through the same single flight as requests (the
    /// in-process lock and the login lease): a refresh while the stored session lives, a
    /// login once it has ended; a session another worker stored meanwhile is taken as it
    /// is. The order-update follower is told, so its socket is ready too. Returns when the
    /// new session ends.
    pub async fn prepare_session(
        &self,
        creds: &BrokerCredentials,
    ) -> Result<chrono::DateTime<chrono::Utc>, SmartApiError> {
        let client = self
            .client_for(creds)
            .map_err(|e| SmartApiError::invalid(e.to_string()))?;
        let secrets = login_secrets(creds)?;
        let stale = stored_session(creds);
        let session = self
            .sessions
            .renew(
                &client,
                &creds.account_id,
                stale.as_ref(),
                &secrets,
                self.store.as_ref(),
            )
            .await?;
        self.notify(creds, &client, &session);
        Ok(session.expires_at)
    }

    pub(super) fn notify(&self, creds: &BrokerCredentials, client: &RestClient, session: &Session) {
        if let Some(notices) = &self.notices {
            let _ = notices.send(SessionNotice {
                account_id: creds.account_id.clone(),
                client_code: client.client_code().to_string(),
                jwt: session.jwt.clone(),
                expires_at: session.expires_at,
                client: client.clone(),
                live: self.live.clone(),
            });
        }
    }

    /// Today's order book of `creds`'s account, read with a live session (renewed once if
    /// the broker refuses it); the order-update follower is told about the session, so
    /// its socket connects too.
    pub(super) async fn order_book(
        &self,
        creds: &BrokerCredentials,
    ) -> Result<Vec<OrderRecord>, SmartApiError> {
        self.with_session(
            creds,
            |client, jwt| async move { client.order_book(&jwt).await },
        )
        .await
    }

    /// The order's record in today's order book, by Pinnacle's tag.
    pub(super) async fn find_by_tag(
        &self,
        creds: &BrokerCredentials,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, SmartApiError> {
        let wanted = tag::order_tag(order_id);
        let book = self
            .with_session(
                creds,
                |client, jwt| async move { client.order_book(&jwt).await },
            )
            .await?;
        Ok(book.into_iter().find(|record| record.ordertag == wanted))
    }

    /// The order's state right after the broker accepted a modify or cancel, from its
    /// details (a GET on its own 10/s budget; the order book, at 1/s, is never read).
    ///
    /// The acknowledgement carries only ids, and the outcome must say how much has filled:
    /// a partly filled order stays partly filled. A change the broker has not finished
    /// (`modify pending`, `cancel pending`) is read again a few times; if it is still
    /// pending, or the details cannot be read, the outcome is unknown and reconciliation
    /// asks the broker again.
    pub(super) async fn after_change(
        &self,
        creds: &BrokerCredentials,
        orderid: &str,
        ack: &OrderAck,
    ) -> Result<BrokerOutcome, BrokerError> {
        for attempt in 0..=PENDING_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(PENDING_PAUSE).await;
            }
            let record = self.details(creds, orderid, ack).await.map_err(|error| {
                tracing::info!(%error, "order details unavailable after an accepted change");
                BrokerError::Unavailable(format!(
                    "the broker accepted the change but its order state could not be read: {error}"
                ))
            })?;
            let outcome = BrokerOutcome {
                broker_order_id: orderid.to_string(),
                ..map::outcome(&record)
            };
            if !matches!(
                outcome.status,
                OrderStatus::PendingModify | OrderStatus::PendingCancel
            ) {
                return Ok(outcome);
            }
        }
        Err(BrokerError::Unavailable(
            "the broker accepted the change but had not finished it".into(),
        ))
    }

    /// A just-placed order's state from its details; a rejected order is a
    /// [`BrokerError::Rejected`] with the broker's reason. Unreadable details leave the
    /// order `UNKNOWN` with the ids the acknowledgement named, so reconciliation reads it
    /// by them, and never takes it for an order the broker does not have.
    pub(super) async fn placed_state(
        &self,
        creds: &BrokerCredentials,
        ack: &OrderAck,
    ) -> Result<BrokerOutcome, BrokerError> {
        let record = match self.details(creds, &ack.orderid, ack).await {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(broker_order_id = %ack.orderid, %error, "the broker took the order but its state could not be read; it is UNKNOWN until reconciled");
                return Ok(map::acknowledged(ack, OrderStatus::Unknown));
            }
        };
        if map::status(&record) == OrderStatus::Rejected {
            let reason = if record.text.is_empty() {
                "no reason given"
            } else {
                record.text.as_str()
            };
            return Err(BrokerError::Rejected(format!(
                "{reason} (broker order {})",
                ack.orderid
            )));
        }
        Ok(BrokerOutcome {
            broker_order_id: ack.orderid.clone(),
            ..map::outcome(&record)
        })
    }

    /// The details of the order `ack` answered for: by its unique id, or `orderid`.
    pub(super) async fn details(
        &self,
        creds: &BrokerCredentials,
        orderid: &str,
        ack: &OrderAck,
    ) -> Result<OrderRecord, SmartApiError> {
        let key = if ack.uniqueorderid.is_empty() {
            orderid
        } else {
            ack.uniqueorderid.as_str()
        };
        self.details_by_unique_id(creds, key).await
    }

    /// The details of the order the broker knows by `unique_id` (`details/{uniqueorderid}`,
    /// on its own 10/s budget).
    pub(super) async fn details_by_unique_id(
        &self,
        creds: &BrokerCredentials,
        unique_id: &str,
    ) -> Result<OrderRecord, SmartApiError> {
        self.with_session(creds, |client, jwt| async move {
            client.order_details(&jwt, unique_id).await
        })
        .await
    }

    pub(super) async fn token(&self, exchange: &str, symbol: &str) -> Result<String, BrokerError> {
        match self.symbols.resolve(exchange, symbol).await {
            Ok(instrument) => Ok(instrument.token),
            // Nothing was sent, so this is a clean refusal, not an unknown outcome.
            Err(BrokerError::Unavailable(reason)) => Err(BrokerError::Rejected(format!(
                "the symbol token could not be looked up, nothing was sent: {reason}"
            ))),
            Err(other) => Err(other),
        }
    }
}
