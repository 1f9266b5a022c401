//! The `md.req.*` verbs, each from a decoded request to a reply or an error body: last
//! value, snapshot, candles (Angel One's when configured, else simulated), symbol search
//! and lookup, market status.

use pinnacle_common::codec::Encoding;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{
    Candle, CandleReply, CandleRequest, ExchangeStatus, LastRequest, MarketTick, SnapshotReply,
    SnapshotRequest, StatusList, StatusRequest, SymbolList, SymbolLookup, SymbolSearch,
};

use super::state::MdService;
use crate::angel::AngelHistory;
use crate::calendar::EXCHANGES;
use crate::candles::{self, CandleQuery};
use crate::exchange::{self, unknown_symbol};

/// Default and largest number of search results.
const SEARCH_DEFAULT: u32 = 20;
const SEARCH_MAX: u32 = 500;
/// Bytes per candle in the worst (JSON) encoding, to keep replies under max_payload.
const CANDLE_BYTES: usize = 100;
/// `source` of candles made by [`crate::candles::SimHistory`].
pub const SOURCE_SIMULATED: &str = "simulated";
/// `source` of candles from Angel One's getCandleData.
pub const SOURCE_ANGEL_ONE: &str = "angel_one";

pub(super) fn last(service: &MdService, request: &LastRequest) -> Result<MarketTick, ErrorBody> {
    let exchange = request.exchange.to_ascii_uppercase();
    if let Some(tick) = service.cache.get(&exchange, &request.symbol) {
        return Ok(tick);
    }
    exchange::listed(&exchange, &service.catalog)?;
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

pub(super) fn snapshot(
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

pub(super) async fn candles(
    service: &MdService,
    request: &CandleRequest,
) -> Result<CandleReply, ErrorBody> {
    let query = candles::validate(request)?;
    let exchange = exchange::with_hours(&request.exchange)?;
    let max_payload = service.client.server_info().max_payload.max(64 * 1024);
    let limit = max_payload / CANDLE_BYTES;
    let (source, candles) = match &service.angel {
        Some(angel) => {
            let candles = angel_candles(service, angel, exchange, request, &query, limit);
            (SOURCE_ANGEL_ONE, candles.await?)
        }
        None => (
            SOURCE_SIMULATED,
            simulated_candles(service, exchange, request, &query, limit)?,
        ),
    };
    Ok(CandleReply {
        exchange: exchange.to_string(),
        symbol: request.symbol.clone(),
        interval: query.interval.name().to_string(),
        source: source.into(),
        candles,
    })
}

/// Candles from Angel One, which knows instruments by token: the symbol must be in the
/// master. A broker failure is an error, never a fallback to simulated data.
async fn angel_candles(
    service: &MdService,
    angel: &AngelHistory,
    exchange: &str,
    request: &CandleRequest,
    query: &CandleQuery,
    limit: usize,
) -> Result<Vec<Candle>, ErrorBody> {
    let Some(instrument) = service.catalog.by_symbol(exchange, &request.symbol) else {
        return Err(unknown_symbol(exchange, &request.symbol));
    };
    angel
        .candles(exchange, &instrument.token, query, limit)
        .await
}

/// Simulated candles around the symbol's last close (or ₹1000 before its first tick), in
/// its tick size; at most `limit` of them.
fn simulated_candles(
    service: &MdService,
    exchange: &str,
    request: &CandleRequest,
    query: &CandleQuery,
    limit: usize,
) -> Result<Vec<Candle>, ErrorBody> {
    let listed = service.catalog.by_symbol(exchange, &request.symbol);
    let cached = service.cache.get(exchange, &request.symbol);
    if listed.is_none() && cached.is_none() {
        return Err(unknown_symbol(exchange, &request.symbol));
    }
    let tick = listed.map_or(5, |i| i.tick_size);
    let base = cached.map_or(100_000, |t| t.close.unwrap_or(t.ltp));
    service
        .history
        .candles(
            &service.calendar,
            exchange,
            &request.symbol,
            (base, tick),
            query,
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
        })
}

pub(super) fn search(service: &MdService, request: &SymbolSearch) -> Result<SymbolList, ErrorBody> {
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
    let exchange = match &request.exchange {
        Some(raw) => Some(exchange::listed(raw, &service.catalog)?),
        None => None,
    };
    let instruments = service
        .catalog
        .search(&request.query, exchange.as_deref(), limit as usize);
    Ok(SymbolList { instruments })
}

pub(super) fn lookup(
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
    if let Some(found) = found {
        return Ok(found.clone());
    }
    let exchange = exchange::listed(&request.exchange, &service.catalog)?;
    let what = request
        .token
        .as_deref()
        .or(request.symbol.as_deref())
        .unwrap_or("");
    Err(unknown_symbol(&exchange, what))
}

pub(super) fn status(
    service: &MdService,
    request: &StatusRequest,
) -> Result<StatusList, ErrorBody> {
    let now = service.clock.now();
    let exchanges = match &request.exchange {
        None => all_statuses(service),
        Some(exchange) => vec![service
            .calendar
            .status(exchange::with_hours(exchange)?, now)],
    };
    Ok(StatusList { exchanges })
}
