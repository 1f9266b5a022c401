//! The gateway's checks and envelopes: the API key and token a route needs (SPEC §2, §7),
//! the rate-limit refusal, the JSON envelopes of a [`Reply`], and the request headers worth
//! recording.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::reply::Reply;
use crate::codes;
use crate::config::SimAccount;
use crate::jwt::{self, Claims, TokenKind};
use crate::sessions::TokenProblem;
use crate::state::{lock, Shared};

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Auth {
    /// Login: API key only.
    Login,
    /// generateTokens: a signed (possibly stale) Bearer JWT plus the refresh token.
    Refresh,
    /// `/rest/secure/...`: a live Bearer JWT.
    Secure,
}

/// Checks the API key and the token a route needs.
pub(super) fn authenticate(
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

pub(super) fn invalid_token() -> Reply {
    Reply::Gateway(codes::INVALID_TOKEN, "Invalid Token")
}

pub(super) fn rate_limited() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain")],
        codes::RATE_LIMIT_BODY,
    )
        .into_response()
}

/// Serialises a reply in its envelope, HTTP 200.
pub(super) fn envelope(reply: Reply) -> Response {
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

pub(super) fn recorded_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
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
