//! The REST gateway: one entry point that records the request, applies injected faults,
//! rate limits and authentication exactly once, then dispatches to a route handler and
//! wraps its answer in the right envelope (SPEC §1.2).
//!
//! `reply` holds what handlers get and give ([`Ctx`], [`Reply`]); `gateway` the checks and
//! envelopes; `auth`, `market`, `orders` and `portfolio` the routes.

mod auth;
mod gateway;
mod market;
mod orders;
mod portfolio;
mod reply;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::codes;
use crate::faults::Fault;
use crate::jwt;
use crate::state::{lock, RequestRecord, Shared};
pub use gateway::header_str;
use gateway::{authenticate, envelope, rate_limited, recorded_headers, Auth};
use reply::{Ctx, Reply};

/// Route name (the fault/rate-limit key) and authentication of a normalised path.
fn route_of(path: &str) -> Option<(&'static str, Auth)> {
    if path.starts_with("/rest/secure/angelbroking/order/v1/details/") {
        return Some(("details", Auth::Secure));
    }
    Some(match path {
        "/rest/auth/angelbroking/user/v1/loginByPassword" => ("loginByPassword", Auth::Login),
        "/rest/auth/angelbroking/jwt/v1/generateTokens" => ("generateTokens", Auth::Refresh),
        "/rest/secure/angelbroking/user/v1/getProfile" => ("getProfile", Auth::Secure),
        "/rest/secure/angelbroking/user/v1/logout" => ("logout", Auth::Secure),
        "/rest/secure/angelbroking/user/v1/getRMS" => ("getRMS", Auth::Secure),
        "/rest/secure/angelbroking/order/v1/placeOrder" => ("placeOrder", Auth::Secure),
        "/rest/secure/angelbroking/order/v1/modifyOrder" => ("modifyOrder", Auth::Secure),
        "/rest/secure/angelbroking/order/v1/cancelOrder" => ("cancelOrder", Auth::Secure),
        "/rest/secure/angelbroking/order/v1/getOrderBook" => ("getOrderBook", Auth::Secure),
        "/rest/secure/angelbroking/order/v1/getTradeBook" => ("getTradeBook", Auth::Secure),
        "/rest/secure/angelbroking/order/v1/getLtpData" => ("getLtpData", Auth::Secure),
        "/rest/secure/angelbroking/order/v1/getPosition" => ("getPosition", Auth::Secure),
        "/rest/secure/angelbroking/order/v1/convertPosition" => ("convertPosition", Auth::Secure),
        "/rest/secure/angelbroking/order/v1/searchScrip" => ("searchScrip", Auth::Secure),
        "/rest/secure/angelbroking/portfolio/v1/getHolding" => ("getHolding", Auth::Secure),
        "/rest/secure/angelbroking/portfolio/v1/getAllHolding" => ("getAllHolding", Auth::Secure),
        "/rest/secure/angelbroking/market/v1/quote" => ("quote", Auth::Secure),
        "/rest/secure/angelbroking/historical/v1/getCandleData" => ("getCandleData", Auth::Secure),
        "/rest/secure/angelbroking/historical/v1/getOIData" => ("getOIData", Auth::Secure),
        _ => return None,
    })
}

fn dispatch(route: &str, ctx: &Ctx<'_>) -> Reply {
    match route {
        "loginByPassword" => auth::login(ctx),
        "generateTokens" => auth::generate_tokens(ctx),
        "getProfile" => auth::profile(ctx),
        "logout" => auth::logout(ctx),
        "getRMS" => portfolio::rms(ctx),
        "placeOrder" => orders::place(ctx),
        "modifyOrder" => orders::modify(ctx),
        "cancelOrder" => orders::cancel(ctx),
        "getOrderBook" => orders::book(ctx),
        "getTradeBook" => orders::trades(ctx),
        "details" => orders::details(ctx),
        "getPosition" => portfolio::positions(ctx),
        "convertPosition" => portfolio::convert(ctx),
        "getHolding" => portfolio::holdings(ctx),
        "getAllHolding" => portfolio::all_holdings(ctx),
        "getLtpData" => market::ltp(ctx),
        "quote" => market::quote(ctx),
        "searchScrip" => market::search(ctx),
        "getCandleData" => market::candles(ctx, false),
        "getOIData" => market::candles(ctx, true),
        _ => Reply::business(codes::GENERAL, "Not supported by the simulator"),
    }
}

/// The axum fallback: every non-WebSocket, non-admin request lands here.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = normalised(uri.path());
    let request = Incoming::read(&shared, &headers, &body);
    lock(&shared.requests).push(RequestRecord {
        method: method.to_string(),
        path: path.to_owned(),
        client_code: request.client_hint.clone(),
        source_ip: peer.ip(),
        headers: recorded_headers(&headers),
        body: request.body.clone(),
    });
    let Some((route, auth)) = route_of(path) else {
        return (StatusCode::NOT_FOUND, "").into_response();
    };
    tracing::debug!(%method, path, route, client = ?request.client_hint, "REST request");
    let fault = lock(&shared.faults).take(route);
    match &fault {
        Some(Fault::RateLimited { .. }) => return rate_limited(),
        Some(Fault::BusinessError { code, message, .. }) => {
            return envelope(Reply::business(code, message.clone()))
        }
        Some(Fault::Unanswered { delay, .. }) => {
            tokio::time::sleep(*delay).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        _ => {}
    }
    if shared.config.enforce_rate_limits {
        let key = request
            .client_hint
            .clone()
            .unwrap_or_else(|| peer.ip().to_string());
        if !lock(&shared.limiter).admit(&key, route) {
            return rate_limited();
        }
    }
    let reply = answer(&shared, (route, auth), &headers, &request, path, peer.ip());
    match fault {
        Some(Fault::SlowReply { delay, .. }) => {
            tokio::time::sleep(delay).await;
            envelope(reply)
        }
        Some(Fault::EmptyBody { status, .. }) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::BAD_REQUEST)
            .into_response(),
        _ => envelope(reply),
    }
}

/// The path without the `/order-service` prefix or a trailing slash.
fn normalised(raw_path: &str) -> &str {
    let path = raw_path.strip_prefix("/order-service").unwrap_or(raw_path);
    if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    }
}

/// A request's body and who it claims to come from, read once.
#[derive(Debug)]
struct Incoming {
    /// Whether the body is JSON (an empty body is `null`).
    json: bool,
    /// The JSON body, or the raw body as a string when it is not JSON (for the record).
    body: Value,
    /// The `Authorization` header.
    bearer: Option<String>,
    /// The client code of a signed token, else the body's `clientcode` (for the record and
    /// the rate-limit key; not yet checked).
    client_hint: Option<String>,
}

impl Incoming {
    fn read(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Self {
        let parsed: Result<Value, ()> = if body.iter().all(u8::is_ascii_whitespace) {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(body).map_err(|_| ())
        };
        let json = parsed.is_ok();
        let body =
            parsed.unwrap_or_else(|()| Value::String(String::from_utf8_lossy(body).into_owned()));
        let bearer = header_str(headers, header::AUTHORIZATION.as_str());
        let signed = bearer
            .as_deref()
            .and_then(|b| jwt::decode(&shared.secret, b.trim().trim_start_matches("Bearer ")).ok());
        let client_hint = signed
            .as_ref()
            .map(|c| c.username.clone())
            .or_else(|| crate::json::text(&body, "clientcode"));
        Self {
            json,
            body,
            bearer,
            client_hint,
        }
    }
}

/// Authenticates the request as `route` needs, then lets the route's handler answer.
fn answer(
    shared: &Arc<Shared>,
    (route, auth): (&str, Auth),
    headers: &HeaderMap,
    request: &Incoming,
    path: &str,
    ip: IpAddr,
) -> Reply {
    let bearer = request.bearer.as_deref();
    match authenticate(shared, auth, headers, bearer, &request.body) {
        Err(reply) => reply,
        Ok((claims, account)) if request.json => dispatch(
            route,
            &Ctx {
                shared,
                body: &request.body,
                path,
                ip,
                claims,
                account,
            },
        ),
        Ok(_) => Reply::business(codes::GENERAL, "Invalid request payload"),
    }
}
