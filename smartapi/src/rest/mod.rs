//! The SmartAPI REST client for one account: headers, routes, timeouts, the rate limiter,
//! and the account's egress (the static IP registered with Angel One, or a proxy).
//!
//! Secrets travel only in headers and bodies; spans and errors name the route, never a
//! value.
//!
//! Layout: `config` (shared settings, egress, the account's identity), `routes` (every
//! route with its method, path and rate-limit bucket), and here the client itself.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::envelope::{self, lenient};
use crate::error::{SmartApiError, SmartApiErrorKind};
use crate::limits::{RateLimiter, Slot};
use crate::types::*;

mod config;
mod routes;

pub use config::{AccountKey, Egress, RestConfig, PRODUCTION_URL};
use routes::*;

/// A client for one account.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    account: Arc<AccountKey>,
    limiter: Arc<RateLimiter>,
}

impl RestClient {
    /// A client for `account`, whose requests leave through `egress`.
    pub fn new(
        config: &RestConfig,
        account: AccountKey,
        egress: &Egress,
        limiter: Arc<RateLimiter>,
    ) -> Result<Self, SmartApiError> {
        let local_ip = match egress {
            Egress::Bind(ip) => ip.to_string(),
            _ => "127.0.0.1".to_string(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert("X-UserType", HeaderValue::from_static("USER"));
        headers.insert("X-SourceID", HeaderValue::from_static("WEB"));
        let header = |v: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| SmartApiError::invalid("a SmartAPI header value is not valid ASCII"))
        };
        headers.insert("X-ClientLocalIP", header(&local_ip)?);
        headers.insert("X-ClientPublicIP", header(&local_ip)?);
        headers.insert("X-MACAddress", header(&config.mac_address)?);
        let mut key = header(account.api_key.expose_secret())
            .map_err(|_| SmartApiError::invalid("the SmartAPI key is not a valid header value"))?;
        key.set_sensitive(true);
        headers.insert("X-PrivateKey", key);

        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("pinnacle-smartapi/", env!("CARGO_PKG_VERSION")));
        match egress {
            Egress::Default => {}
            Egress::Bind(ip) => builder = builder.local_address(*ip),
            Egress::Proxy(url) => {
                let proxy = reqwest::Proxy::all(url).map_err(|_| {
                    SmartApiError::invalid("the account's egress proxy URL is not valid")
                })?;
                builder = builder.proxy(proxy);
            }
        }
        let http = builder.build().map_err(|e| {
            SmartApiError::invalid(format!("cannot build the HTTP client: {}", e.without_url()))
        })?;
        Ok(Self {
            http,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            timeout: config.timeout,
            account: Arc::new(account),
            limiter,
        })
    }

    /// The account's client code.
    pub fn client_code(&self) -> &str {
        &self.account.client_code
    }

    /// Sends one request and unwraps the envelope.
    async fn call(
        &self,
        route: Route,
        suffix: &str,
        jwt: Option<&SecretString>,
        body: Option<Value>,
    ) -> Result<Value, SmartApiError> {
        self.send(route, suffix, jwt, body, None).await
    }

    /// [`Self::call`] in `slot`, when it was reserved for this client code and the route's
    /// bucket: at once while it is fresh, else after queueing again.
    async fn send(
        &self,
        route: Route,
        suffix: &str,
        jwt: Option<&SecretString>,
        body: Option<Value>,
        slot: Option<Slot>,
    ) -> Result<Value, SmartApiError> {
        let code = &self.account.client_code;
        match slot.filter(|s| s.is_for(code, route.bucket)) {
            Some(slot) if slot.is_fresh() => {}
            Some(stale) => self.limiter.renew(stale).await?,
            None => self.limiter.acquire(code, route.bucket).await?,
        }
        let server = reqwest::Url::parse(&self.base_url).ok();
        let span = tracing::info_span!(
            "smartapi.request",
            otel.kind = "client",
            pinnacle.smartapi.route = route.name,
            http.request.method = if route.post { "POST" } else { "GET" },
            server.address = server.as_ref().and_then(|u| u.host_str()).unwrap_or_default(),
            server.port = server.as_ref().and_then(|u| u.port_or_known_default()).map(i64::from).unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let failed = span.clone();
        async {
            let url = format!("{}{}{}", self.base_url, route.path, suffix);
            let mut request = if route.post {
                self.http
                    .post(&url)
                    .json(&body.unwrap_or_else(|| json!({})))
            } else {
                self.http.get(&url)
            };
            if let Some(jwt) = jwt {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", jwt.expose_secret()))
                    .map_err(|_| {
                    SmartApiError::invalid("the session token is not a valid header value")
                })?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            let response = request.send().await.map_err(|e| self.transport(route, e))?;
            let status = response.status().as_u16();
            tracing::Span::current().record("http.response.status_code", i64::from(status));
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.transport(route, e))?;
            envelope::unwrap(route.name, status, &bytes)
        }
        .instrument(span)
        .await
        .inspect_err(|error| {
            failed.record("otel.status_code", "ERROR");
            failed.record("error.type", error.code().unwrap_or(error.kind_name()));
        })
    }

    fn transport(&self, route: Route, error: reqwest::Error) -> SmartApiError {
        if error.is_timeout() {
            SmartApiError::timeout(route.name, self.timeout)
        } else {
            SmartApiError::new(
                SmartApiErrorKind::Transport,
                None,
                format!("SmartAPI {} failed: {}", route.name, error.without_url()),
            )
        }
    }

    async fn typed<T: serde::de::DeserializeOwned>(
        &self,
        route: Route,
        jwt: Option<&SecretString>,
        body: Option<Value>,
    ) -> Result<T, SmartApiError> {
        let data = self.call(route, "", jwt, body).await?;
        envelope::data(route.name, data)
    }

    /// Logs in with the PIN and a TOTP code.
    pub async fn login(
        &self,
        pin: &SecretString,
        totp: &str,
    ) -> Result<SessionTokens, SmartApiError> {
        let body = json!({
            "clientcode": self.account.client_code,
            "password": pin.expose_secret(),
            "totp": totp,
        });
        self.typed(LOGIN, None, Some(body)).await
    }

    /// Renews the session with the refresh token.
    pub async fn refresh(
        &self,
        jwt: &SecretString,
        refresh: &SecretString,
    ) -> Result<SessionTokens, SmartApiError> {
        let body = json!({ "refreshToken": refresh.expose_secret() });
        self.typed(REFRESH, Some(jwt), Some(body)).await
    }

    /// The account's profile.
    pub async fn profile(&self, jwt: &SecretString) -> Result<Profile, SmartApiError> {
        self.typed(PROFILE, Some(jwt), None).await
    }

    /// Ends the session; its tokens stop working.
    pub async fn logout(&self, jwt: &SecretString) -> Result<(), SmartApiError> {
        let body = json!({ "clientcode": self.account.client_code });
        self.call(LOGOUT, "", Some(jwt), Some(body)).await.map(drop)
    }

    /// Funds and margins.
    pub async fn rms(&self, jwt: &SecretString) -> Result<Rms, SmartApiError> {
        self.typed(RMS, Some(jwt), None).await
    }

    /// Takes a place's turn in the rate limit now, before the order exists anywhere: a
    /// refusal ([`SmartApiErrorKind::RateLimited`]) leaves nothing to undo. The slot goes to
    /// [`Self::place_order`].
    pub async fn reserve_place(&self) -> Result<Slot, SmartApiError> {
        self.limiter
            .reserve(&self.account.client_code, PLACE.bucket)
            .await
    }

    /// [`Self::reserve_place`] for an order already stored, sent again (after a renewed
    /// session or the broker's 403): it may queue for the limiter's
    /// [`stored_wait`](RateLimiter::stored_wait), since a refusal now would store a
    /// rejection of an order that was never sent.
    pub async fn reserve_stored_place(&self) -> Result<Slot, SmartApiError> {
        self.limiter
            .reserve_stored(&self.account.client_code, PLACE.bucket)
            .await
    }

    /// Places an order, in the rate-limit `slot` reserved for it if there is one (else it
    /// queues for its turn).
    pub async fn place_order(
        &self,
        jwt: &SecretString,
        order: &OrderParams,
        slot: Option<Slot>,
    ) -> Result<OrderAck, SmartApiError> {
        let body = to_value(order)?;
        let data = self.send(PLACE, "", Some(jwt), Some(body), slot).await?;
        envelope::data(PLACE.name, data)
    }

    /// Modifies an open order (`order.orderid` set).
    pub async fn modify_order(
        &self,
        jwt: &SecretString,
        order: &OrderParams,
    ) -> Result<OrderAck, SmartApiError> {
        self.typed(MODIFY, Some(jwt), Some(to_value(order)?)).await
    }

    /// Cancels an open order.
    pub async fn cancel_order(
        &self,
        jwt: &SecretString,
        variety: &str,
        orderid: &str,
    ) -> Result<OrderAck, SmartApiError> {
        let body = json!({ "variety": variety, "orderid": orderid });
        self.typed(CANCEL, Some(jwt), Some(body)).await
    }

    /// Today's orders (`null` is an empty book).
    pub async fn order_book(&self, jwt: &SecretString) -> Result<Vec<OrderRecord>, SmartApiError> {
        self.list(ORDER_BOOK, jwt).await
    }

    /// Today's fills.
    pub async fn trade_book(&self, jwt: &SecretString) -> Result<Vec<TradeRecord>, SmartApiError> {
        self.list(TRADE_BOOK, jwt).await
    }

    /// One order by its `uniqueorderid`.
    pub async fn order_details(
        &self,
        jwt: &SecretString,
        unique_order_id: &str,
    ) -> Result<OrderRecord, SmartApiError> {
        if !crate::types::is_unique_order_id(unique_order_id) {
            return Err(SmartApiError::invalid(
                "a unique order id is 1 to 64 letters, digits or dashes",
            ));
        }
        let data = self.call(DETAILS, unique_order_id, Some(jwt), None).await?;
        envelope::data(DETAILS.name, data)
    }

    /// Net positions.
    pub async fn positions(
        &self,
        jwt: &SecretString,
    ) -> Result<Vec<PositionRecord>, SmartApiError> {
        self.list(POSITIONS, jwt).await
    }

    /// Delivery holdings.
    pub async fn holdings(&self, jwt: &SecretString) -> Result<Vec<HoldingRecord>, SmartApiError> {
        self.list(HOLDINGS, jwt).await
    }

    /// Last price of one instrument.
    pub async fn ltp(
        &self,
        jwt: &SecretString,
        exchange: &str,
        symbol: &str,
        token: &str,
    ) -> Result<Ltp, SmartApiError> {
        let body = json!({ "exchange": exchange, "tradingsymbol": symbol, "symboltoken": token });
        self.typed(LTP, Some(jwt), Some(body)).await
    }

    /// Quotes (`mode` `LTP`, `OHLC` or `FULL`) for up to 50 tokens, as the broker sent them.
    pub async fn quote(
        &self,
        jwt: &SecretString,
        mode: &str,
        exchange_tokens: &Value,
    ) -> Result<Value, SmartApiError> {
        let tokens: usize = exchange_tokens
            .as_object()
            .map(|o| o.values().filter_map(Value::as_array).map(Vec::len).sum())
            .unwrap_or_default();
        if tokens > 50 {
            return Err(SmartApiError::invalid(format!(
                "a quote request takes at most 50 tokens, not {tokens}"
            )));
        }
        let body = json!({ "mode": mode, "exchangeTokens": exchange_tokens });
        self.call(QUOTE, "", Some(jwt), Some(body)).await
    }

    /// Instrument search.
    pub async fn search_scrip(
        &self,
        jwt: &SecretString,
        exchange: &str,
        text: &str,
    ) -> Result<Vec<ScripMatch>, SmartApiError> {
        let body = json!({ "exchange": exchange, "searchscrip": text });
        let data = self.call(SEARCH, "", Some(jwt), Some(body)).await?;
        if data.is_null() {
            return Ok(Vec::new());
        }
        envelope::data(SEARCH.name, data)
    }

    /// Historical candles.
    pub async fn candles(
        &self,
        jwt: &SecretString,
        request: &CandleRequest,
    ) -> Result<Vec<CandleRow>, SmartApiError> {
        let data = self
            .call(CANDLES, "", Some(jwt), Some(to_value(request)?))
            .await?;
        let rows: Vec<Vec<Value>> = if data.is_null() {
            Vec::new()
        } else {
            envelope::data(CANDLES.name, data)?
        };
        rows.into_iter().map(parse_candle).collect()
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        route: Route,
        jwt: &SecretString,
    ) -> Result<Vec<T>, SmartApiError> {
        let data = self.call(route, "", Some(jwt), None).await?;
        if data.is_null() {
            return Ok(Vec::new());
        }
        envelope::data(route.name, data)
    }
}

fn to_value(body: &impl Serialize) -> Result<Value, SmartApiError> {
    serde_json::to_value(body)
        .map_err(|e| SmartApiError::invalid(format!("cannot encode the request: {e}")))
}

/// `["2023-09-06T11:15:00+05:30", o, h, l, c, v]`.
fn parse_candle(row: Vec<Value>) -> Result<CandleRow, SmartApiError> {
    let bad = |detail: &str| {
        SmartApiError::new(
            SmartApiErrorKind::Decode,
            None,
            format!("SmartAPI candle row could not be read: {detail}"),
        )
    };
    let [time, open, high, low, close, volume] =
        <[Value; 6]>::try_from(row).map_err(|_| bad("not six fields"))?;
    let time = time
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| bad("bad time"))?;
    let price = |v: Value| -> Result<i64, SmartApiError> {
        lenient::paise(v).map_err(|e: serde_json::Error| bad(&e.to_string()))
    };
    Ok(CandleRow {
        time,
        open: price(open)?,
        high: price(high)?,
        low: price(low)?,
        close: price(close)?,
        volume: lenient::i64(volume).map_err(|e: serde_json::Error| bad(&e.to_string()))?,
    })
}
