//! Pre-trade limits and kill switches: `GET|PUT /v1/risk-limits/global` and
//! `GET|PUT|DELETE /v1/users/{user_id}/risk-limits`.
//!
//! A change names only what it changes: a field left out keeps its value, `null` lifts the
//! limit (no limit from this row), a value sets it; `kill_switch: true|false` trips or
//! resets the scope's kill switch. Every change is an audit event (`outcome: changed`,
//! purpose `risk.set`, `risk.clear`, `kill_switch.on` or `kill_switch.off`) on the
//! affected user's chain, or on `audit.credential.global` for the platform row, stored
//! before the row changes: with no audit stream nothing changes. Once the row changed, the
//! change is announced on `pinnacle.cache.invalidate`, so every order worker drops its
//! cached copy and the change applies to the next order (within a second if the
//! announcement is lost). Reading is open to the user themselves; changing is for the
//! admin.
//!
//! # Layout
//! - [`change`]: the change body, its scope and the bounds on every value.
//! - [`store`]: the audited writes and the view of the rows.
//! - this file: the routes.

pub mod change;
pub mod store;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use pinnacle_common::auth::SCOPE_READ;

pub use change::{
    Change, LimitsChange, Scope, LIST_ENTRY_PATTERN, MAX_LIST, MAX_QUANTITY, MAX_RATE,
    MAX_VALUE_PAISE,
};
pub use store::{clear, set, show, InForce, RiskError, Row, View};

use crate::accounts::Writer;
use crate::body::JsonObject;
use crate::caller::Caller;
use crate::error::{check_user_id, ApiError};
use crate::state::AppState;

fn writer(caller: &Caller) -> Writer {
    Writer {
        actor: caller.actor(),
        token_id: caller.token_id(),
        request_id: uuid::Uuid::now_v7().to_string(),
    }
}

/// `GET /v1/risk-limits/global` (admin).
pub async fn get_global(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<View>, ApiError> {
    caller.require_admin()?;
    Ok(Json(show(&state.db, None).await?))
}

/// `PUT /v1/risk-limits/global` (admin).
pub async fn put_global(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonObject<LimitsChange>, ApiError>,
) -> Result<Json<View>, ApiError> {
    caller.require_admin()?;
    let JsonObject(change) = body?;
    set(
        &state.db,
        &state.audit,
        &writer(&caller),
        &Scope::Global,
        change,
    )
    .await?;
    Ok(Json(show(&state.db, None).await?))
}

/// `GET /v1/users/{user_id}/risk-limits` (the user, `read` scope, or the admin).
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<View>, ApiError> {
    let Path(user_id) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_READ)?;
    check_user_id(&user_id)?;
    Ok(Json(show(&state.db, Some(&user_id)).await?))
}

/// `PUT /v1/users/{user_id}/risk-limits` (admin).
pub async fn put_user(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<JsonObject<LimitsChange>, ApiError>,
) -> Result<Json<View>, ApiError> {
    let Path(user_id) = path?;
    caller.require_admin()?;
    check_user_id(&user_id)?;
    let JsonObject(change) = body?;
    let scope = Scope::User(user_id.clone());
    set(&state.db, &state.audit, &writer(&caller), &scope, change).await?;
    Ok(Json(show(&state.db, Some(&user_id)).await?))
}

/// `DELETE /v1/users/{user_id}/risk-limits` (admin): the user falls back to the global row.
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<View>, ApiError> {
    let Path(user_id) = path?;
    caller.require_admin()?;
    check_user_id(&user_id)?;
    clear(&state.db, &state.audit, &writer(&caller), &user_id).await?;
    Ok(Json(show(&state.db, Some(&user_id)).await?))
}
