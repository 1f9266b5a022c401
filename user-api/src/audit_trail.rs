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

use crate::app::AppState;
use crate::caller::Caller;
use crate::error::ApiError;
use pinnacle_common::auth::SCOPE_READ;

/// The most events one page returns.
pub const MAX_LIMIT: usize = 1000;

/// Query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailQuery {
    /// Return events after this stream sequence.
    #[serde(default)]
    pub after: u64,
    /// How many events at most.
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    100
}

/// One page of the trail.
#[derive(Debug, Serialize, Deserialize)]
pub struct Trail {
    /// The events, oldest first.
    pub events: Vec<StoredEvent>,
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
    if !(1..=MAX_LIMIT).contains(&query.limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    if user_id.is_empty()
        || user_id.len() > 64
        || !user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::invalid("user_id must be a user id"));
    }
    let events = state
        .audit
        .read_user(&user_id, query.after, query.limit)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "audit trail unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::AuditUnavailable,
                "the audit log is unavailable",
            )
        })?;
    Ok(Json(Trail { events }))
}
