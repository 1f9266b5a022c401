//! `GET /v1/users/{user_id}/audit`: a user's own credential audit trail.
//!
//! Read from the JetStream `AUDIT` stream (subject `audit.credential.<user_id>`), oldest
//! first, `limit` (1 to 1000, default 100) events after stream sequence `after` (default
//! 0); page by passing the last `seq` seen as `after`. Events never hold a secret.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use pinnacle_common::audit::StoredEvent;
use pinnacle_common::error::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::caller::Caller;
use crate::error::{check_user_id, ApiError};
use crate::lookup::find_chain_owner;
use crate::state::AppState;
use pinnacle_common::auth::SCOPE_READ;

/// The most events one page returns.
pub const MAX_LIMIT: usize = 1000;
/// The largest `after` accepted (`i64::MAX`; stream sequences never come near it).
pub const MAX_AFTER: u64 = i64::MAX as u64;

/// Query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailQuery {
    /// Return events after this stream sequence.
    #[serde(default, deserialize_with = "query_integer")]
    pub after: u64,
    /// How many events at most.
    #[serde(default = "default_limit", deserialize_with = "query_integer")]
    pub limit: u64,
}

fn default_limit() -> u64 {
    100
}

/// A non-negative integer query value, as JSON Schema reads one: `5`, and also `5.0` or
/// `5e0` (a number with no fractional part).
fn query_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    let exact = text.parse::<u64>().ok();
    let integral = || {
        let x = text.parse::<f64>().ok()?;
        let fits = x.is_finite() && x.fract() == 0.0 && (0.0..2f64.powi(64)).contains(&x);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        fits.then_some(x as u64)
    };
    exact.or_else(integral).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a non-negative integer, got {text:?}"))
    })
}

/// One page of the trail.
#[derive(Debug, Serialize, Deserialize)]
pub struct Trail {
    /// The events, oldest first.
    pub events: Vec<StoredEvent>,
    /// Stream sequences in the page that hold no readable event (corrupt or foreign
    /// messages on the user's chain); absent when there are none. `pinnacle audit verify`
    /// says what is wrong with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undecodable: Vec<u64>,
}

/// `GET /v1/users/{user_id}/audit`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<TrailQuery>, QueryRejection>,
) -> Result<Json<Trail>, ApiError> {
    let Path(user_id) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_READ)?;
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    if query.after > MAX_AFTER {
        return Err(ApiError::invalid(format!("after must be 0 to {MAX_AFTER}")));
    }
    check_user_id(&user_id)?;
    find_chain_owner(&state.db, &user_id).await?;
    let trail = state
        .audit
        .read_user(&user_id, query.after, limit)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "audit trail unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::AuditUnavailable,
                "the audit log is unavailable",
            )
        })?;
    Ok(Json(Trail {
        events: trail.events,
        undecodable: trail.undecodable,
    }))
}
