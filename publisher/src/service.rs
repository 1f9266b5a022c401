//! The market-data request-reply service on `md.req.<verb>`: last value, snapshot,
//! candles, symbol search and lookup, market status.
//!
//! It registers with the NATS micro services API as [`SERVICE_NAME`] (`$SRV.PING`,
//! `$SRV.INFO`, `$SRV.STATS`, one endpoint per verb with its own statistics), and each
//! request is handled in an `md.request` server span that continues the caller's
//! `traceparent`.
//!
//! Replies follow the workspace convention: `{"ok":true,"result":…}` or
//! `{"ok":false,"error":{code,message}}` with a `Pinnacle-Error` header, MessagePack
//! unless the request says `Content-Type: application/json`. Market data is public: no
//! token is read, and no per-user credential is ever touched.

use std::sync::Arc;

use async_nats::{HeaderMap, Message};
use pinnacle_common::codec::Encoding;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{
    CandleReply, CandleRequest, ExchangeStatus, LastRequest, MarketTick, Reply, SnapshotReply,
    SnapshotRequest, StatusList, StatusRequest, SymbolList, SymbolLookup, SymbolSearch,
};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects::{self, headers, md};
use pinnacle_common::{micro, serve, telemetry};
use serde::{de::DeserializeOwned, Serialize};
use tracing::Instrument as _;

use crate::angel::AngelHistory;
use crate::cache::LastValues;
use crate::calendar::{Calendar, EXCHANGES};
use crate::candles::{self, SimHistory};
use crate::instruments::Catalog;

/// Requests handled at once.
const CONCURRENCY: usize = 64;
/// Default and largest number of search results.
const SEARCH_DEFAULT: u32 = 20;
const SEARCH_MAX: u32 = 500;
/// Bytes per candle in the worst (JSON) encoding, to keep replies under max_payload.
const CANDLE_BYTES: usize = 100;
/// `source` of candles made by [`SimHistory`].
pub const SOURCE_SIMULATED: &str = "simulated";
/// `source` of candles from Angel One's getCandleData.
pub const SOURCE_ANGEL_ONE: &str = "angel_one";

/// The micro-service name the market-data service registers under.
pub const SERVICE_NAME: &str = "pinnacle-market-data";

/// Every `md.req.*` verb as a micro endpoint: (endpoint name, subject). Endpoint names
/// may not contain dots, so `symbols.search` is `symbols_search`.
pub const ENDPOINTS: [(&str, &str); 6] = [
    ("last", md::LAST),
    ("snapshot", md::SNAPSHOT),
    ("candles", md::CANDLES),
    ("symbols_search", md::SYMBOLS_SEARCH),
    ("symbols_lookup", md::SYMBOLS_LOOKUP),
    ("status", md::STATUS),
];

/// The discovery identity and per-endpoint statistics of the market-data service; one
/// per publisher process, shared by its incarnations.
pub fn discovery() -> micro::Service {
    micro::Service::new(
        SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
        "Pinnacle market data: last value, snapshot, candles, symbols, market status",
        ENDPOINTS
            .iter()
            .map(|(name, subject)| micro::Endpoint {
                name: (*name).to_string(),
                subject: (*subject).to_string(),
                queue_group: subjects::MD_QUEUE.to_string(),
            })
            .collect(),
    )
}

/// The endpoint name of a request subject, if it is one of [`ENDPOINTS`].
fn endpoint_of(subject: &str) -> Option<&'static str> {
    ENDPOINTS
        .iter()
        .find(|(_, s)| *s == subject)
        .map(|(name, _)| *name)
}

/// Everything the service reads.
#[derive(Debug)]
pub struct MdService {
    /// Connection used for replies.
    pub client: async_nats::Client,
    /// The last-value cache the publishing loop fills.
    pub cache: Arc<LastValues>,
    /// The instrument master.
    pub catalog: Arc<Catalog>,
    /// Exchange hours and holidays.
    pub calendar: Arc<Calendar>,
    /// Simulated history, for candles when Angel One is not configured.
    pub history: SimHistory,
    /// "Now" for simulated candles and market status (`PINNACLE_SIM_NOW`, else real).
    pub clock: pinnacle_common::clock::Clock,
    /// Angel One's history, when the `ANGEL_ONE_*` credentials are set: candles then come
    /// only from it (a broker failure is an error, never a fallback to simulated data).
    pub angel: Option<Arc<AngelHistory>>,
    /// Largest accepted request body, bytes.
    pub max_payload: usize,
    /// Discovery (`$SRV.*`) and per-endpoint statistics; see [`discovery`].
    pub micro: micro::Service,
}

/// The service could not start.
#[derive(Debug, thiserror::Error)]
#[error("could not subscribe to {subject}: {reason}")]
pub struct ServiceError {
    /// The subject.
    pub subject: &'static str,
    /// Why.
    pub reason: String,
}

/// Serves `md.req.>` in the `md-service` queue group until `shutdown` fires.
pub async fn run(service: Arc<MdService>, shutdown: Shutdown) -> Result<(), ServiceError> {
    let (ready, _) = tokio::sync::oneshot::channel();
    run_with_ready(service, shutdown, ready).await
}

/// [`run`], reporting on `ready` once the subscription is in place (or failed).
pub async fn run_with_ready(
    service: Arc<MdService>,
    shutdown: Shutdown,
    ready: tokio::sync::oneshot::Sender<Result<(), ServiceError>>,
) -> Result<(), ServiceError> {
    let subscribed = service
        .client
        .queue_subscribe(subjects::MD_REQUEST_ALL, subjects::MD_QUEUE.into())
        .await
        .map_err(|e| ServiceError {
            subject: subjects::MD_REQUEST_ALL,
            reason: e.to_string(),
        });
    let discovery = match subscribed {
        Ok(subscription) => service
            .micro
            .serve(service.client.clone(), shutdown.clone())
            .await
            .map(|task| (subscription, task))
            .map_err(|e| ServiceError {
                subject: "$SRV.>",
                reason: e.to_string(),
            }),
        Err(error) => Err(error),
    };
    let (subscription, discovery) = match discovery {
        Ok((subscription, discovery)) => {
            // Make sure the server has the subscription before anyone relies on it.
            let _ = service.client.flush().await;
            let _ = ready.send(Ok(()));
            (subscription, discovery)
        }
        Err(error) => {
            let _ = ready.send(Err(ServiceError {
                subject: error.subject,
                reason: error.reason.clone(),
            }));
            return Err(error);
        }
    };
    tracing::info!(
        subject = subjects::MD_REQUEST_ALL,
        "market-data service started"
    );
    let handler_service = service.clone();
    serve::serve_requests(subscription, CONCURRENCY, shutdown, move |message| {
        let service = handler_service.clone();
        async move { handle(&service, message).await }
    })
    .await;
    // Requests have stopped (shutdown, or the connection closed): so does discovery.
    discovery.abort();
    let _ = discovery.await;
    // With NATS gone a flush would wait for ever.
    let _ = tokio::time::timeout(crate::SHUTDOWN_FLUSH, service.client.flush()).await;
    tracing::info!("market-data service stopped");
    Ok(())
}

fn decode<T: DeserializeOwned>(encoding: Encoding, payload: &[u8]) -> Result<T, ErrorBody> {
    encoding
        .decode(payload)
        .map_err(|e| ErrorBody::new(ErrorCode::BadPayload, e.to_string()))
}

/// Handles one request and publishes exactly one reply, in an `md.request` server span
/// that continues the caller's `traceparent`, and counts it in the endpoint's statistics.
/// A request without a reply subject, or with one in a protected namespace, is dropped
/// before anything is read or asked of a broker (candles use the platform's Angel One
/// session).
pub async fn handle(service: &MdService, message: Message) {
    match &message.reply {
        None => {
            tracing::debug!(subject = %message.subject, "ignoring a market-data request without a reply subject");
            return;
        }
        Some(reply_to) if !pinnacle_common::subjects::is_safe_reply(reply_to) => {
            tracing::warn!(reply_to = %reply_to, "ignoring a request whose reply subject is protected");
            return;
        }
        Some(_) => {}
    }
    let span = tracing::info_span!(
        "md.request",
        otel.kind = "server",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %message.subject,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    telemetry::set_parent_from(&span, message.headers.as_ref());
    async {
        let started = std::time::Instant::now();
        let error = dispatch(service, &message).await;
        if let Some(code) = error {
            telemetry::record_failure(&tracing::Span::current(), code.as_str());
        }
        if let Some(endpoint) = endpoint_of(&message.subject) {
            let error = error.map(ErrorCode::as_str);
            service.micro.record(endpoint, started.elapsed(), error);
        }
    }
    .instrument(span)
    .await;
}

/// Answers one request; the error code of the reply, if it was a failure.
async fn dispatch(service: &MdService, message: &Message) -> Option<ErrorCode> {
    let encoding = Encoding::from_headers(message.headers.as_ref());
    let payload = &message.payload;
    // A snapshot lists up to 1000 symbols, more than the usual limit allows.
    let limit = if message.subject.as_str() == md::SNAPSHOT {
        service.max_payload.max(crate::snapshot::MAX_REQUEST_BYTES)
    } else {
        service.max_payload
    };
    if payload.len() > limit {
        let error = ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!("payload is {} bytes; the limit is {limit}", payload.len(),),
        );
        return respond::<()>(service, message, encoding, Err(error)).await;
    }
    if let Err(error) = pinnacle_common::codec::check_headers(message.headers.as_ref()) {
        let error = ErrorBody::new(ErrorCode::BadPayload, error.to_string());
        return respond::<()>(service, message, encoding, Err(error)).await;
    }
    match message.subject.as_str() {
        md::LAST => {
            let outcome = decode(encoding, payload).and_then(|r| last(service, &r));
            respond(service, message, encoding, outcome).await
        }
        md::SNAPSHOT => {
            let outcome = decode(encoding, payload).and_then(|r| snapshot(service, &r, encoding));
            respond(service, message, encoding, outcome).await
        }
        md::CANDLES => {
            let outcome = match decode(encoding, payload) {
                Ok(request) => candles(service, &request).await,
                Err(error) => Err(error),
            };
            respond(service, message, encoding, outcome).await
        }
        md::SYMBOLS_SEARCH => {
            let outcome = decode(encoding, payload).and_then(|r| search(service, &r));
            respond(service, message, encoding, outcome).await
        }
        md::SYMBOLS_LOOKUP => {
            let outcome = decode(encoding, payload).and_then(|r| lookup(service, &r));
            respond(service, message, encoding, outcome).await
        }
        md::STATUS => {
            // An empty body means "every exchange", so `nats req md.req.status ''` works.
            let outcome = if payload.is_empty() {
                Ok(StatusRequest::default())
            } else {
                decode(encoding, payload)
            }
            .and_then(|r| status(service, &r));
            respond(service, message, encoding, outcome).await
        }
        other => {
            let error = ErrorBody::new(
                ErrorCode::UnknownVerb,
                format!(
                    "no market-data verb {:?}",
                    other.chars().take(80).collect::<String>()
                ),
            );
            respond::<()>(service, message, encoding, Err(error)).await
        }
    }
}

fn last(service: &MdService, request: &LastRequest) -> Result<MarketTick, ErrorBody> {
    let exchange = request.exchange.to_ascii_uppercase();
    if let Some(tick) = service.cache.get(&exchange, &request.symbol) {
        return Ok(tick);
    }
    Err(
        if service
            .catalog
            .by_symbol(&exchange, &request.symbol)
            .is_some()
        {
            ErrorBody::new(
                ErrorCode::NotFound,
                "no tick has been published for this symbol yet",
            )
        } else {
            unknown_symbol(&exchange, &request.symbol)
        },
    )
}

fn snapshot(
    service: &MdService,
    request: &SnapshotRequest,
    encoding: Encoding,
) -> Result<SnapshotReply, ErrorBody> {
    let max_payload = service.client.server_info().max_payload.max(64 * 1024);
    crate::snapshot::answer(
        &service.cache,
        &service.catalog,
        request,
        all_statuses(service),
        encoding,
        max_payload,
    )
}

/// Every exchange's status now, as `md.status.<EXCHANGE>` last announced it.
fn all_statuses(service: &MdService) -> Vec<ExchangeStatus> {
    let now = service.clock.now();
    EXCHANGES
        .iter()
        .map(|e| service.calendar.status(e, now))
        .collect()
}

fn unknown_symbol(exchange: &str, symbol: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownSymbol,
        format!(
            "unknown symbol {exchange}:{}",
            symbol.chars().take(60).collect::<String>()
        ),
    )
}

async fn candles(service: &MdService, request: &CandleRequest) -> Result<CandleReply, ErrorBody> {
    let query = candles::validate(request)?;
    let exchange = request.exchange.to_ascii_uppercase();
    if !Calendar::knows(&exchange) {
        return Err(ErrorBody::new(
            ErrorCode::UnknownExchange,
            format!(
                "unknown exchange {:?}",
                exchange.chars().take(20).collect::<String>()
            ),
        ));
    }
    let listed = service.catalog.by_symbol(&exchange, &request.symbol);
    let max_payload = service.client.server_info().max_payload.max(64 * 1024);
    let limit = max_payload / CANDLE_BYTES;
    if let Some(angel) = &service.angel {
        // The broker knows instruments by token, so the symbol must be in the master.
        let Some(instrument) = listed else {
            return Err(unknown_symbol(&exchange, &request.symbol));
        };
        let candles = angel
            .candles(&exchange, &instrument.token, &query, limit)
            .await?;
        return Ok(CandleReply {
            exchange,
            symbol: request.symbol.clone(),
            interval: query.interval.name().to_string(),
            source: SOURCE_ANGEL_ONE.into(),
            candles,
        });
    }
    let cached = service.cache.get(&exchange, &request.symbol);
    if listed.is_none() && cached.is_none() {
        return Err(unknown_symbol(&exchange, &request.symbol));
    }
    let tick = listed.map_or(5, |i| i.tick_size);
    let base = cached.map_or(100_000, |t| t.close.unwrap_or(t.ltp));
    let candles = service
        .history
        .candles(
            &service.calendar,
            &exchange,
            &request.symbol,
            (base, tick),
            &query,
            limit,
            service.clock.now(),
        )
        .ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::RangeTooLarge,
                format!(
                    "more than {limit} candles would not fit in one reply; ask for a shorter range"
                ),
            )
        })?;
    Ok(CandleReply {
        exchange,
        symbol: request.symbol.clone(),
        interval: query.interval.name().to_string(),
        source: SOURCE_SIMULATED.into(),
        candles,
    })
}

fn search(service: &MdService, request: &SymbolSearch) -> Result<SymbolList, ErrorBody> {
    if request.query.trim().is_empty() || request.query.len() > 64 {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            "query must be 1 to 64 characters",
        ));
    }
    let limit = request.limit.unwrap_or(SEARCH_DEFAULT);
    if limit == 0 || limit > SEARCH_MAX {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            format!("limit must be 1 to {SEARCH_MAX}"),
        ));
    }
    let instruments =
        service
            .catalog
            .search(&request.query, request.exchange.as_deref(), limit as usize);
    Ok(SymbolList { instruments })
}

fn lookup(
    service: &MdService,
    request: &SymbolLookup,
) -> Result<pinnacle_common::model::Instrument, ErrorBody> {
    let found = match (&request.token, &request.symbol) {
        (Some(token), _) => service.catalog.by_token(&request.exchange, token),
        (None, Some(symbol)) => service.catalog.by_symbol(&request.exchange, symbol),
        (None, None) => {
            return Err(ErrorBody::new(
                ErrorCode::InvalidRequest,
                "give a token or a symbol",
            ))
        }
    };
    found.cloned().ok_or_else(|| {
        let what = request
            .token
            .as_deref()
            .or(request.symbol.as_deref())
            .unwrap_or("");
        unknown_symbol(&request.exchange.to_ascii_uppercase(), what)
    })
}

fn status(service: &MdService, request: &StatusRequest) -> Result<StatusList, ErrorBody> {
    let now = service.clock.now();
    let exchanges = match &request.exchange {
        None => all_statuses(service),
        Some(exchange) => {
            let exchange = exchange.to_ascii_uppercase();
            if !Calendar::knows(&exchange) {
                return Err(ErrorBody::new(
                    ErrorCode::UnknownExchange,
                    format!(
                        "unknown exchange {:?}; known: {}",
                        exchange.chars().take(20).collect::<String>(),
                        EXCHANGES.join(", ")
                    ),
                ));
            }
            vec![service.calendar.status(&exchange, now)]
        }
    };
    Ok(StatusList { exchanges })
}

/// Publishes the reply; the error code it carried, if it was a failure.
async fn respond<T: Serialize>(
    service: &MdService,
    message: &Message,
    encoding: Encoding,
    outcome: Result<T, ErrorBody>,
) -> Option<ErrorCode> {
    let mut failed = outcome.as_ref().err().map(|e| e.code);
    let Some(reply_to) = message.reply.clone() else {
        return failed;
    };
    if !pinnacle_common::subjects::is_safe_reply(&reply_to) {
        tracing::warn!(reply_to = %reply_to, "refusing to reply into a protected subject");
        return failed;
    }
    let mut hdrs = HeaderMap::new();
    hdrs.insert(headers::CONTENT_TYPE, encoding.content_type());
    if let Some(id) = message
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::REQUEST_ID))
    {
        if id.as_str().len() <= 128 {
            hdrs.insert(headers::REQUEST_ID, id.as_str());
        }
    }
    let body = match outcome {
        Ok(result) => Reply::success(result),
        Err(error) => {
            tracing::debug!(code = %error.code, message = %error.message, subject = %message.subject, "market-data request failed");
            hdrs.insert(headers::ERROR_CODE, error.code.as_str());
            Reply::failure(error)
        }
    };
    let payload = match encoding.encode(&body) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(%error, "could not encode a market-data reply");
            let failure =
                Reply::<()>::failure(ErrorBody::new(ErrorCode::Internal, "internal error"));
            hdrs.insert(headers::ERROR_CODE, ErrorCode::Internal.as_str());
            failed = Some(ErrorCode::Internal);
            match encoding.encode(&failure) {
                Ok(p) => p,
                Err(_) => return Some(ErrorCode::Internal),
            }
        }
    };
    if let Err(error) = service
        .client
        .publish_with_headers(reply_to, hdrs, payload)
        .await
    {
        tracing::warn!(%error, "could not send a market-data reply");
    }
    failed
}
