//! The Angel One broker: SmartAPI behind the [`Broker`] port.
//!
//! - Sessions come from the account's stored tokens, or a login with its PIN and TOTP
//!   seed; AG8001 renews them once and retries ([`pinnacle_smartapi::session`]).
//! - Every order carries a tag derived from Pinnacle's order id. When a place request
//!   times out or gets an empty reply, the order is looked up by that tag in the order book
//!   instead of being sent again; if it is not there, the order is `UNKNOWN` and
//!   reconciliation asks again later.
//! - Place is one request once the account's order-update stream is live: its reply
//!   carries the broker's order id, the order is OPEN, and fills, cancellations and
//!   rejections arrive on the stream. Before that (a session's first order), one details
//!   request reads the state, since nothing else would report it.
//!   Modify and cancel name the variety place sent, derived from the stored order type
//!   ([`map::variety`]), so they never read the order book; their replies carry only ids,
//!   so one details request (10/s) says how much has filled.
//! - Regulatory settings are checked before anything is sent: the account's registered
//!   static IP (bound locally, or reached through its proxy) and its algo id; MARKET orders
//!   are refused (barred for API orders under NSE's retail algo framework).
//! - [`store`] keeps sessions encrypted and audited in the account row, [`symbols`] finds
//!   symbol tokens, [`map`] translates records, and [`updates`] follows each account's
//!   order-update WebSocket into the order state machine.

pub mod map;
pub mod prewarm;
pub mod store;
pub mod symbols;
pub mod updates;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pinnacle_common::broker::{Broker, BrokerCredentials, BrokerError, BrokerOutcome};
use pinnacle_common::model::{
    Funds, Holding, OrderRequest, OrderStatus, OrderType, Position, Trade,
};
use pinnacle_smartapi::limits::RateLimiter;
use pinnacle_smartapi::session::{LoginSecrets, Session, SessionManager, SessionStore};
use pinnacle_smartapi::types::{OrderAck, OrderRecord};
use pinnacle_smartapi::{
    tag, AccountKey, Egress, RestClient, RestConfig, SmartApiError, SmartApiErrorKind,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use self::symbols::SymbolResolver;
use self::updates::{LiveStreams, SessionNotice};

/// The name stored in `broker_accounts.broker`.
pub const NAME: &str = "angel_one";

/// How often a request the broker refused with its 403 rate limit is tried again (it was
/// not processed, so sending it again cannot duplicate it). A refusal by Pinnacle's own
/// limiter is final: it already queued for [`RATE_LIMIT_WAIT`].
const RATE_LIMIT_RETRIES: u32 = 2;

/// How long a SmartAPI request queues for its rate-limit window before it is refused
/// `RATE_LIMITED` (docs/SMARTAPI.md, "Rate limits").
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(3);

/// How often the details of an order whose change the broker has not finished are read
/// again, and how long apart.
const PENDING_RETRIES: u32 = 3;
const PENDING_PAUSE: Duration = Duration::from_millis(200);

/// SmartAPI as a [`Broker`].
pub struct AngelOneBroker {
    config: RestConfig,
    limiter: Arc<RateLimiter>,
    sessions: SessionManager,
    store: Arc<dyn SessionStore>,
    symbols: SymbolResolver,
    /// One HTTP client per account, rebuilt when its key, client code or egress changes.
    clients: Mutex<HashMap<String, ([u8; 32], RestClient)>>,
    /// Tells the order-update follower about every session in use.
    notices: Option<mpsc::UnboundedSender<SessionNotice>>,
    /// Which accounts' order-update streams the follower has live.
    live: Arc<LiveStreams>,
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

    fn client_for(&self, creds: &BrokerCredentials) -> Result<RestClient, BrokerError> {
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

    /// Runs `call` with a live session, renewing it once on a session error, and again
    /// (up to [`RATE_LIMIT_RETRIES`]) after the broker's 403 rate limit.
    async fn with_session<T, F, Fut>(
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
        let mut session = self
            .sessions
            .ensure(
                &client,
                &creds.account_id,
                stored_session(creds),
                &secrets,
                self.store.as_ref(),
            )
            .await?;
        self.notify(creds, &client, &session);
        let mut renewed = false;
        let mut rate_limited = 0;
        loop {
            match call(client.clone(), session.jwt.clone()).await {
                Err(e) if e.kind() == SmartApiErrorKind::Session && !renewed => {
                    tracing::info!(code = e.code(), "SmartAPI session refused; renewing");
                    renewed = true;
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

    fn notify(&self, creds: &BrokerCredentials, client: &RestClient, session: &Session) {
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

    /// The order's record in today's order book, by Pinnacle's tag.
    async fn find_by_tag(
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
    async fn after_change(
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
    /// [`BrokerError::Rejected`] with the broker's reason, and unreadable details leave the
    /// outcome unknown, for reconciliation to find the order by its tag.
    async fn placed_state(
        &self,
        creds: &BrokerCredentials,
        ack: &OrderAck,
    ) -> Result<BrokerOutcome, BrokerError> {
        let record = self
            .details(creds, &ack.orderid, ack)
            .await
            .map_err(|error| {
                BrokerError::Unavailable(format!(
                    "the broker took the order but its state could not be read: {error}"
                ))
            })?;
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
    async fn details(
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
        self.with_session(creds, |client, jwt| async move {
            client.order_details(&jwt, key).await
        })
        .await
    }

    async fn token(&self, exchange: &str, symbol: &str) -> Result<String, BrokerError> {
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

/// Which way the account's traffic leaves: its proxy, or its static IP bound locally.
fn egress(creds: &BrokerCredentials) -> Result<Egress, BrokerError> {
    if let Some(proxy) = &creds.egress_proxy {
        return Ok(Egress::Proxy(proxy.clone()));
    }
    match &creds.static_ip {
        Some(ip) => ip
            .parse::<IpAddr>()
            .map(Egress::Bind)
            .map_err(|_| BrokerError::Regulatory(format!("static_ip {ip:?} is not an IP address"))),
        None => Ok(Egress::Default),
    }
}

/// The account's regulatory settings (SEBI/NSE retail algo framework, from 1 April 2026).
fn check_compliance(creds: &BrokerCredentials) -> Result<(), BrokerError> {
    let Some(ip) = &creds.static_ip else {
        return Err(BrokerError::Regulatory(
            "this Angel One account has no static_ip: since 1 April 2026 API orders are accepted \
             only from the static IP registered for the API key; set static_ip (and egress_proxy \
             if this host cannot use that address itself)"
                .into(),
        ));
    };
    if creds.algo_id.as_deref().is_none_or(str::is_empty) {
        return Err(BrokerError::Regulatory(
            "this Angel One account has no algo_id: API orders must carry the exchange-issued algo \
             id (the exchange's generic id below 10 orders per second, a registered one above)"
                .into(),
        ));
    }
    if creds.egress_proxy.is_none() {
        let ip: IpAddr = ip.parse().map_err(|_| {
            BrokerError::Regulatory(format!("static_ip {ip:?} is not an IP address"))
        })?;
        // Binding an ephemeral UDP port proves the address is this host's without sending.
        if std::net::UdpSocket::bind((ip, 0)).is_err() {
            return Err(BrokerError::Regulatory(format!(
                "static_ip {ip} is not an address of this host; set egress_proxy to a proxy that \
                 leaves from it"
            )));
        }
    }
    Ok(())
}

fn login_secrets(creds: &BrokerCredentials) -> Result<LoginSecrets, SmartApiError> {
    match (&creds.secret, &creds.totp_seed) {
        (Some(pin), Some(seed)) => Ok(LoginSecrets {
            pin: pin.clone(),
            totp_seed: seed.clone(),
        }),
        _ => Err(SmartApiError::new(
            SmartApiErrorKind::Login,
            None,
            "an angel_one account needs secret (the PIN) and totp_seed to log in",
        )),
    }
}

fn stored_session(creds: &BrokerCredentials) -> Option<Session> {
    Some(Session {
        jwt: creds.jwt_token.clone()?,
        refresh: creds.refresh_token.clone()?,
        feed: creds.feed_token.clone()?,
        expires_at: creds.session_expires_at?,
    })
}

/// A failure of a request that changes nothing, or that certainly was not processed.
fn broker_error(error: SmartApiError) -> BrokerError {
    match error.kind() {
        SmartApiErrorKind::Timeout
        | SmartApiErrorKind::EmptyReply
        | SmartApiErrorKind::Transport
        | SmartApiErrorKind::Decode => BrokerError::Unavailable(error.to_string()),
        SmartApiErrorKind::RateLimited => BrokerError::RateLimited(error.to_string()),
        SmartApiErrorKind::Api
        | SmartApiErrorKind::Session
        | SmartApiErrorKind::Login
        | SmartApiErrorKind::Invalid => BrokerError::Rejected(error.to_string()),
    }
}

/// Whether the request may have been processed although no usable reply came back.
fn ambiguous(error: &SmartApiError) -> bool {
    error.outcome_unknown() || error.kind() == SmartApiErrorKind::Decode
}

#[async_trait]
impl Broker for AngelOneBroker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn preflight(
        &self,
        creds: &BrokerCredentials,
        order: &OrderRequest,
    ) -> Result<(), BrokerError> {
        check_compliance(creds)?;
        if matches!(
            order.order_type,
            OrderType::Market | OrderType::StoplossMarket
        ) {
            return Err(BrokerError::Regulatory(
                "MARKET and STOPLOSS_MARKET orders are barred for API (algo) orders under NSE's \
                 retail algo framework; send LIMIT or STOPLOSS_LIMIT"
                    .into(),
            ));
        }
        login_secrets(creds).map_err(|e| BrokerError::Rejected(e.to_string()))?;
        Ok(())
    }

    async fn place_order(
        &self,
        creds: &BrokerCredentials,
        order_id: &str,
        order: &OrderRequest,
    ) -> Result<BrokerOutcome, BrokerError> {
        self.preflight(creds, order)?;
        let token = self.token(&order.exchange, &order.symbol).await?;
        let params = map::order_params(order, &token, Some(tag::order_tag(order_id)));
        let stream = self.live.connection(&creds.account_id);
        let placed = self
            .with_session(creds, |client, jwt| {
                let params = params.clone();
                async move { client.place_order(&jwt, &params).await }
            })
            .await;
        match placed {
            // The reply carries the broker's order id, all a later modify or cancel needs
            // besides the stored order (SPEC §3.1), but nothing about the order's state.
            // With the account's order-update stream live from before the request until
            // after the reply, that is all: the order is OPEN and its fill or rejection
            // arrives on the stream. Otherwise (the session's first order, a socket that is
            // down or reconnected meanwhile) the state may never be reported, so it is read
            // once.
            Ok(ack) if !ack.orderid.is_empty() => {
                let streamed =
                    stream.is_some() && stream == self.live.connection(&creds.account_id);
                if streamed {
                    Ok(BrokerOutcome {
                        broker_order_id: ack.orderid,
                        status: OrderStatus::Open,
                        filled_quantity: 0,
                        average_price: None,
                    })
                } else {
                    self.placed_state(creds, &ack).await
                }
            }
            Ok(_) => {
                tracing::warn!(
                    "placeOrder succeeded without an order id; looking the order up by its tag"
                );
                match self.find_by_tag(creds, order_id).await {
                    Ok(Some(record)) => Ok(map::outcome(&record)),
                    Ok(None) | Err(_) => Err(BrokerError::Unavailable(
                        "placeOrder succeeded without an order id".into(),
                    )),
                }
            }
            Err(error) if ambiguous(&error) => {
                tracing::warn!(%error, "placeOrder outcome unknown; looking the order up by its tag");
                match self.find_by_tag(creds, order_id).await {
                    Ok(Some(record)) => Ok(map::outcome(&record)),
                    Ok(None) | Err(_) => Err(BrokerError::Unavailable(error.to_string())),
                }
            }
            Err(error) => Err(broker_error(error)),
        }
    }

    async fn modify_order(
        &self,
        creds: &BrokerCredentials,
        broker_order_id: &str,
        order: &OrderRequest,
    ) -> Result<BrokerOutcome, BrokerError> {
        check_compliance(creds)?;
        let token = self.token(&order.exchange, &order.symbol).await?;
        // The whole order again, with its variety from the stored order type (the one place
        // sent) and the new quantity and prices.
        let mut params = map::order_params(order, &token, None);
        params.orderid = Some(broker_order_id.to_string());
        let ack = self
            .with_session(creds, |client, jwt| {
                let params = params.clone();
                async move { client.modify_order(&jwt, &params).await }
            })
            .await
            .map_err(broker_error)?;
        self.after_change(creds, broker_order_id, &ack).await
    }

    async fn cancel_order(
        &self,
        creds: &BrokerCredentials,
        broker_order_id: &str,
        order: &OrderRequest,
    ) -> Result<BrokerOutcome, BrokerError> {
        check_compliance(creds)?;
        // The variety place sent, derived from the stored order type: no order-book read.
        let variety = map::variety(order.order_type);
        let ack = self
            .with_session(creds, |client, jwt| async move {
                client.cancel_order(&jwt, variety, broker_order_id).await
            })
            .await
            .map_err(broker_error)?;
        self.after_change(creds, broker_order_id, &ack).await
    }

    async fn funds(&self, creds: &BrokerCredentials) -> Result<Funds, BrokerError> {
        let rms = self
            .with_session(creds, |client, jwt| async move { client.rms(&jwt).await })
            .await
            .map_err(broker_error)?;
        Ok(map::funds(&rms))
    }

    async fn positions(&self, creds: &BrokerCredentials) -> Result<Vec<Position>, BrokerError> {
        let records = self
            .with_session(
                creds,
                |client, jwt| async move { client.positions(&jwt).await },
            )
            .await
            .map_err(broker_error)?;
        Ok(records.iter().map(map::position).collect())
    }

    async fn holdings(&self, creds: &BrokerCredentials) -> Result<Vec<Holding>, BrokerError> {
        let records = self
            .with_session(
                creds,
                |client, jwt| async move { client.holdings(&jwt).await },
            )
            .await
            .map_err(broker_error)?;
        Ok(records.iter().map(map::holding).collect())
    }

    async fn trades(&self, creds: &BrokerCredentials) -> Result<Vec<Trade>, BrokerError> {
        let records = self
            .with_session(
                creds,
                |client, jwt| async move { client.trade_book(&jwt).await },
            )
            .await
            .map_err(broker_error)?;
        let mut trades: Vec<Trade> = records.iter().map(map::trade).collect();
        trades.sort_by_key(|t| t.ts_ms);
        Ok(trades)
    }

    async fn find_order(
        &self,
        creds: &BrokerCredentials,
        order_id: &str,
    ) -> Result<Option<BrokerOutcome>, BrokerError> {
        let found = self
            .find_by_tag(creds, order_id)
            .await
            .map_err(broker_error)?;
        Ok(found.as_ref().map(map::outcome))
    }

    async fn reference_price(&self, _exchange: &str, _symbol: &str) -> Option<i64> {
        // MARKET orders are refused for this broker, so no reference price is needed.
        None
    }

    async fn last_price(
        &self,
        creds: &BrokerCredentials,
        exchange: &str,
        symbol: &str,
    ) -> Result<Option<i64>, BrokerError> {
        // getLtpData (10 requests/s), with the account's session.
        let token = self.token(exchange, symbol).await?;
        let ltp = self
            .with_session(creds, |client, jwt| {
                let token = token.clone();
                async move { client.ltp(&jwt, exchange, symbol, &token).await }
            })
            .await
            .map_err(broker_error)?;
        Ok((ltp.ltp > 0).then_some(ltp.ltp))
    }
}
