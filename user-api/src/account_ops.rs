//! One broker account: its credential status, and deleting it.
//!
//! `GET /v1/users/{user_id}/broker-accounts/{label}` shows which credential fields are set
//! and when they were written, never a value. `DELETE` of the same path is audited
//! (`credentials.delete`) before anything changes; an account that orders still refer to
//! keeps its row for the order history, with every credential erased. Either way the
//! account's generation moves one past the last write, in the row (when kept) and in the
//! generation register, so a restored copy of the old row is refused.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use pinnacle_common::entities::broker_accounts;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::invalidate::{self, Invalidation};
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::telemetry;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, ModelTrait, QueryFilter, Set, SqlErr,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::accounts::AccountView;
use crate::caller::Caller;
use crate::error::{check_name, check_user_id, ApiError};
use crate::state::AppState;
use pinnacle_common::auth::{SCOPE_READ, SCOPE_TRADE};

/// The reply to a delete.
#[derive(Debug, Serialize, Deserialize)]
pub struct Deleted {
    /// True if the row is gone; false if orders keep it (its credentials are erased).
    pub deleted: bool,
    /// The account as it was left.
    pub account: AccountView,
}

async fn find(
    db: &DatabaseConnection,
    user_id: &str,
    label: &str,
) -> Result<broker_accounts::Model, ApiError> {
    broker_accounts::Entity::of_user(user_id)
        .filter(broker_accounts::Column::Label.eq(label))
        .one(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "broker_accounts"))
        .await
        .map_err(|e| ApiError::internal("loading the account", e))?
        .ok_or_else(|| ApiError::not_found("no broker account with that label"))
}

/// `GET /v1/users/{user_id}/broker-accounts/{label}`: credential status.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let Path((user_id, label)) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_READ)?;
    check_user_id(&user_id)?;
    check_name("label", &label)?;
    let row = find(&state.db, &user_id, &label).await?;
    Ok(Json(AccountView::from(&row)))
}

/// `DELETE /v1/users/{user_id}/broker-accounts/{label}`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let Path((user_id, label)) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_TRADE)?;
    check_user_id(&user_id)?;
    check_name("label", &label)?;
    let row = find(&state.db, &user_id, &label).await?;
    // Deleting is a write of "no credentials" at the next generation.
    let erased_generation = row.generation + 1;
    record_delete(&state, &caller, &row, erased_generation).await?;
    let view = AccountView::from(&row);
    match row.clone().delete(&state.db).await {
        Ok(_) => {
            state
                .register
                .advance_after_commit(&view.id, erased_generation)
                .await;
            announce_accounts(&state, &user_id).await;
            tracing::info!(%user_id, account_id = %view.id, "broker account deleted");
            return Ok(Json(Deleted {
                deleted: true,
                account: view,
            }));
        }
        Err(e) if matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) => {}
        Err(e) => return Err(ApiError::internal("deleting the account", e)),
    }
    // Orders refer to it: keep the row, erase every credential.
    let kept = erase_credentials(&state.db, row, erased_generation).await?;
    state
        .register
        .advance_after_commit(&kept.id, kept.generation)
        .await;
    announce_accounts(&state, &user_id).await;
    tracing::info!(%user_id, account_id = %kept.id, "broker account credentials erased");
    Ok(Json(Deleted {
        deleted: false,
        account: AccountView::from(&kept),
    }))
}

/// Tells the order workers' caches that `user_id`'s accounts changed.
async fn announce_accounts(state: &AppState, user_id: &str) {
    let change = Invalidation::Accounts {
        user_id: user_id.to_string(),
    };
    invalidate::announce(&state.audit.client(), &change).await;
}

/// Records the `credentials.delete` event (the fields `row` holds) at `erased_generation`,
/// before anything is deleted.
async fn record_delete(
    state: &AppState,
    caller: &Caller,
    row: &broker_accounts::Model,
    erased_generation: i64,
) -> Result<(), ApiError> {
    state
        .audit
        .record(&AuditEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            ts_ms: Utc::now().timestamp_millis(),
            actor: caller.actor(),
            token_id: caller.token_id(),
            user_id: row.user_id.clone(),
            broker_account_id: row.id.clone(),
            fields: row.fields_set().into_iter().map(String::from).collect(),
            purpose: "credentials.delete".into(),
            request_id: uuid::Uuid::now_v7().to_string(),
            trace_id: telemetry::current_trace_id(),
            outcome: AuditOutcome::Written,
            generation: Some(erased_generation),
            reason: None,
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::AuditUnavailable,
                format!("the audit log is unavailable, so nothing was deleted: {e}"),
            )
        })?;
    Ok(())
}

/// Keeps `row` (orders refer to it) with every credential and its data key erased, at
/// `erased_generation`.
async fn erase_credentials(
    db: &DatabaseConnection,
    row: broker_accounts::Model,
    erased_generation: i64,
) -> Result<broker_accounts::Model, ApiError> {
    let mut erased: broker_accounts::ActiveModel = row.into();
    for column in [
        broker_accounts::Column::ApiKeyEnc,
        broker_accounts::Column::ClientCodeEnc,
        broker_accounts::Column::SecretEnc,
        broker_accounts::Column::TotpSeedEnc,
        broker_accounts::Column::AccessTokenEnc,
        broker_accounts::Column::JwtTokenEnc,
        broker_accounts::Column::RefreshTokenEnc,
        broker_accounts::Column::FeedTokenEnc,
        broker_accounts::Column::DataKeyEnc,
    ] {
        erased.set(column, Option::<String>::None.into());
    }
    erased.master_key_id = Set(None);
    erased.session_expires_at = Set(None);
    erased.generation = Set(erased_generation);
    let now = Utc::now();
    erased.updated_at = Set(now);
    erased.erased_at = Set(Some(now));
    erased
        .update(db)
        .instrument(pinnacle_common::db::span(db, "UPDATE", "broker_accounts"))
        .await
        .map_err(|e| ApiError::internal("erasing the credentials", e))
}
