//! The HTTP admin API under `/__sim/`, so the binary can be driven by non-Rust tests.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::SimAccount;
use crate::faults::Fault;
use crate::state::{lock, Shared};

/// Body of `POST /__sim/ltp`.
#[derive(Debug, Deserialize)]
struct SetLtp {
    exchange: String,
    token: String,
    ltp_paise: i64,
}

/// Body of `POST /__sim/clock`.
#[derive(Debug, Deserialize)]
struct SetClock {
    /// RFC 3339, e.g. `2026-12-02T20:00:00+05:30`.
    now: String,
    #[serde(default)]
    frozen: bool,
}

/// Body of `POST /__sim/orders/{client_code}/{orderid}/reject`.
#[derive(Debug, Deserialize)]
struct Reject {
    /// The rejection reason the order record's `text` carries.
    text: String,
}

/// The admin routes, mounted at `/__sim`.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/accounts", post(add_account))
        .route("/faults", post(inject).delete(clear))
        .route("/ltp", post(set_ltp))
        .route("/expire/{client_code}", post(expire))
        .route("/revoke/{client_code}", post(revoke))
        .route("/drop-sockets", post(drop_sockets))
        .route("/mute-updates", post(mute_updates).delete(unmute_updates))
        .route("/orders/{client_code}", get(orders))
        .route("/orders/{client_code}/{orderid}/reject", post(reject))
        .route("/requests", get(requests))
        .route("/requests", delete(clear_requests))
        .route("/rate-limits", get(rate_limits))
        .route("/clock", get(clock).post(set_clock).delete(reset_clock))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, (StatusCode, Json<Value>)> {
    serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
    })
}

async fn add_account(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<StatusCode, (StatusCode, Json<Value>)> {
    let account: SimAccount = parse(&body)?;
    s.add_account(account);
    Ok(StatusCode::NO_CONTENT)
}

async fn inject(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<StatusCode, (StatusCode, Json<Value>)> {
    let fault: Fault = parse(&body)?;
    lock(&s.faults).inject(fault);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear(State(s): State<Arc<Shared>>) -> StatusCode {
    lock(&s.faults).clear();
    StatusCode::NO_CONTENT
}

async fn set_ltp(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<StatusCode, (StatusCode, Json<Value>)> {
    let req: SetLtp = parse(&body)?;
    if s.ltp(&req.exchange, &req.token).is_none() {
        return Err((
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown instrument"})),
        ));
    }
    s.set_ltp(&req.exchange, &req.token, req.ltp_paise);
    Ok(StatusCode::NO_CONTENT)
}

async fn expire(State(s): State<Arc<Shared>>, Path(cc): Path<String>) -> StatusCode {
    lock(&s.sessions).expire(&cc);
    StatusCode::NO_CONTENT
}

async fn revoke(State(s): State<Arc<Shared>>, Path(cc): Path<String>) -> StatusCode {
    lock(&s.sessions).revoke(&cc);
    StatusCode::NO_CONTENT
}

async fn drop_sockets(State(s): State<Arc<Shared>>) -> StatusCode {
    s.kill.send_modify(|g| *g += 1);
    StatusCode::NO_CONTENT
}

async fn mute_updates(State(s): State<Arc<Shared>>) -> StatusCode {
    s.mute_updates
        .store(true, std::sync::atomic::Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn unmute_updates(State(s): State<Arc<Shared>>) -> StatusCode {
    s.mute_updates
        .store(false, std::sync::atomic::Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn reject(
    State(s): State<Arc<Shared>>,
    Path((cc, orderid)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, (StatusCode, Json<Value>)> {
    let Reject { text } = parse(&body)?;
    if s.reject_order(&cc, &orderid, &text) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err((
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no working order with nothing filled has that id"})),
        ))
    }
}

async fn orders(State(s): State<Arc<Shared>>, Path(cc): Path<String>) -> Json<Value> {
    Json(json!(lock(&s.book).orders(&cc)))
}

async fn requests(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(*lock(&s.requests)))
}

async fn clear_requests(State(s): State<Arc<Shared>>) -> StatusCode {
    lock(&s.requests).clear();
    StatusCode::NO_CONTENT
}

async fn rate_limits(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(lock(&s.limiter).stats()))
}

fn clock_json(s: &Shared) -> Json<Value> {
    Json(json!({
        "now": s.clock.now_ist().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "frozen": s.clock.is_frozen(),
    }))
}

async fn clock(State(s): State<Arc<Shared>>) -> Json<Value> {
    clock_json(&s)
}

async fn set_clock(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let req: SetClock = parse(&body)?;
    let at = chrono::DateTime::parse_from_rfc3339(req.now.trim()).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": format!("now must be RFC 3339 (2026-12-02T20:00:00+05:30): {e}")}),
            ),
        )
    })?;
    s.clock.set(at.with_timezone(&chrono::Utc), req.frozen);
    s.release_after_market();
    Ok(clock_json(&s))
}

async fn reset_clock(State(s): State<Arc<Shared>>) -> Json<Value> {
    s.clock.reset();
    clock_json(&s)
}
