//! The REST gateway: one entry point that records the request, applies injected faults,
//! rate limits and authentication exactly once, then dispatches to a route handler and
//! wraps its answer in the right envelope (SPEC §1.2).

mod auth;
mod market;
mod orders;
mod portfolio;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::codes;
use crate::config::SimAccount;
use crate::faults::Fault;
use crate::jwt::{self, Claims, TokenKind};
use crate::sessions::TokenProblem;
use crate::state::{lock, RequestRecord, Shared};

/// What a handler answers; the gateway turns it into HTTP.
#[derive(Debug)]
pub enum Reply {
    /// `{"status":true,"message":"SUCCESS","errorcode":"","data":…}`
    Ok(Value),
    /// `{"status":false,"message":…,"errorcode":…,"data":null}`, HTTP 200.
    Business(String, String),
    /// `{"success":false,"message":…,"errorCode":…,"data":""}`, HTTP 200 (token failures).
    Gateway(&'static str, &'static str),
}

impl Reply {
    pub fn business(code: &str, message: impl Into<String>) -> Reply {
        Reply::Business(code.to_owned(), message.into())
    }
}

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Login: API key only.
    Login,
    /// generateTokens: a signed (possibly stale) Bearer JWT plus the refresh token.
    Refresh,
    /// `/rest/secure/...`: a live Bearer JWT.
    Secure,
}

/// What a handler gets to work with.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub body: &'a Value,
    /// The path after normalisation, e.g. for `details/{uniqueorderid}`.
    pub path: &'a str,
    pub ip: IpAddr,
    /// Present for Secure routes and generateTokens.
    pub claims: Option<Claims>,
    /// Present for Secure routes.
    pub account: Option<SimAccount>,
}

impl Ctx<'_> {
    /// The authenticated client code (empty on login).
    pub fn client_code(&self) -> &str {
        self.claims.as_ref().map_or("", |c| c.username.as_str())
    }
}

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
    let raw_path = uri.path();
    let path = raw_path.strip_prefix("/order-service").unwrap_or(raw_path);
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let parsed: Result<Value, ()> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(&body).map_err(|_| ())
    };
    let body_value = match &parsed {
        Ok(v) => v.clone(),
        Err(()) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    let bearer = header_str(&headers, header::AUTHORIZATION.as_str());
    let signed = bearer
        .as_deref()
        .and_then(|b| jwt::decode(&shared.secret, b.trim().trim_start_matches("Bearer ")).ok());
    let client_hint = signed
        .as_ref()
        .map(|c| c.username.clone())
        .or_else(|| crate::json::text(&body_value, "clientcode"));
    lock(&shared.requests).push(RequestRecord {
        method: method.to_string(),
        path: path.to_owned(),
        client_code: client_hint.clone(),
        source_ip: peer.ip(),
        headers: recorded_headers(&headers),
        body: body_value.clone(),
    });
    let Some((route, auth)) = route_of(path) else {
        return (StatusCode::NOT_FOUND, "").into_response();
    };
    tracing::debug!(%method, path, route, client = ?client_hint, "REST request");

    let fault = lock(&shared.faults).take(route);
    match &fault {
        Some(Fault::RateLimited { .. }) => return rate_limited(),
        Some(Fault::BusinessError { code, message, .. }) => {
            return envelope(Reply::business(code, message.clone()))
        }
        _ => {}
    }
    if shared.config.enforce_rate_limits {
        let key = client_hint.clone().unwrap_or_else(|| peer.ip().to_string());
        if !lock(&shared.limiter).admit(&key, route) {
            return rate_limited();
        }
    }
    let reply = match authenticate(&shared, auth, &headers, bearer.as_deref(), &body_value) {
        Err(reply) => reply,
        Ok((claims, account)) if parsed.is_ok() => dispatch(
            route,
            &Ctx {
                shared: &shared,
                body: &body_value,
                path,
                ip: peer.ip(),
                claims,
                account,
            },
        ),
        Ok(_) => Reply::business(codes::GENERAL, "Invalid request payload"),
    };
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

/// Checks the API key and the token a route needs.
fn authenticate(
    shared: &Arc<Shared>,
    auth: Auth,
    headers: &HeaderMap,
    bearer: Option<&str>,
    body: &Value,
) -> Result<(Option<Claims>, Option<SimAccount>), Reply> {
    let api_key = header_str(headers, "x-privatekey");
    if auth == Auth::Login {
        // SPEC §7: a wrong API key at login is AB1007 in the normal envelope (the token
        // envelope there makes Angel One's own Python SDK fail on the missing `status`).
        let bad_login_key = || Reply::business(codes::LOGIN_FAILED, "Invalid API Key");
        if api_key.as_deref().is_none_or(|k| k.trim().is_empty()) {
            return Err(bad_login_key());
        }
        let cc = crate::json::text(body, "clientcode").unwrap_or_default();
        if let Some(acc) = shared.account(&cc) {
            if api_key.as_deref() != Some(acc.api_key.as_str()) {
                return Err(bad_login_key());
            }
        }
        return Ok((None, None));
    }
    let bad_key = || Reply::Gateway(codes::INVALID_API_KEY, "Invalid API Key");
    if api_key.as_deref().is_none_or(str::is_empty) {
        return Err(bad_key());
    }
    let Some(bearer) = bearer.filter(|b| !b.trim().is_empty()) else {
        return Err(Reply::Gateway(codes::TOKEN_MISSING, "Token missing"));
    };
    let claims = if auth == Auth::Refresh {
        jwt::decode(&shared.secret, bearer.trim().trim_start_matches("Bearer "))
            .map_err(|_| invalid_token())?
    } else {
        lock(&shared.sessions)
            .verify(&shared.secret, bearer, TokenKind::Access, false)
            .map_err(|_: TokenProblem| invalid_token())?
    };
    let account = shared.account(&claims.username).ok_or_else(invalid_token)?;
    if api_key.as_deref() != Some(account.api_key.as_str()) {
        return Err(bad_key());
    }
    Ok((Some(claims), Some(account)))
}

fn invalid_token() -> Reply {
    Reply::Gateway(codes::INVALID_TOKEN, "Invalid Token")
}

fn rate_limited() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain")],
        codes::RATE_LIMIT_BODY,
    )
        .into_response()
}

/// Serialises a reply in its envelope, HTTP 200.
fn envelope(reply: Reply) -> Response {
    let body = match reply {
        Reply::Ok(data) => {
            json!({"status": true, "message": "SUCCESS", "errorcode": "", "data": data})
        }
        Reply::Business(code, message) => {
            json!({"status": false, "message": message, "errorcode": code, "data": null})
        }
        Reply::Gateway(code, message) => {
            json!({"success": false, "message": message, "errorCode": code, "data": ""})
        }
    };
    axum::Json(body).into_response()
}

pub fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn recorded_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n.starts_with("x-")
                || matches!(
                    n,
                    "authorization" | "content-type" | "accept" | "user-agent"
                )
        })
        .map(|(name, v)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
