//! Broker accounts and their write-only credentials.
//!
//! `PUT /v1/users/{user_id}/broker-accounts/{label}` replaces an account's credentials
//! (fields left out become unset); `GET /v1/users/{user_id}/broker-accounts` lists
//! accounts with the names of the fields that are set, never their values. Every write
//! bumps the row's generation, seals the fields under a fresh data key wrapped by the
//! current master key (`pinnacle_common::keystore`), and is audited first. The row update
//! is a compare-and-set on the generation, so two racing writes cannot interleave. Once
//! the row committed, the write advances the generation register
//! (`pinnacle_common::keystore::generations`), so a later restore of the old row is refused,
//! and announces the change on `pinnacle.cache.invalidate`, so order workers stop using
//! their cached copy of the user's accounts at once.
//!
//! # Layout
//! - [`request`]: the `PUT` body and its checks.
//! - [`write`](mod@write): [`put_account`], the audited compare-and-set write (the `pinnacle` CLI
//!   calls it too, to bootstrap the demo user).
//! - this file: the routes and [`AccountView`], what they answer.

pub mod request;
pub mod write;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use pinnacle_common::auth::{SCOPE_READ, SCOPE_TRADE};
use pinnacle_common::entities::broker_accounts;
use pinnacle_common::error::ErrorCode;
use sea_orm::QueryOrder;
use serde::{Deserialize, Serialize};

pub use request::{PutAccount, BROKERS, MAX_ALGO_ID_LEN, MAX_PROXY_LEN, MAX_SECRET_LEN};
pub use write::{put_account, write_account, CredentialStore, PutAccountError, Writer};

use crate::body::JsonObject;
use crate::caller::Caller;
use crate::error::{check_name, check_user_id, ApiError};
use crate::state::AppState;

/// An account as the API shows it: which fields are set, never what they hold.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountView {
    /// UUID.
    pub id: String,
    /// The owner's label.
    pub label: String,
    /// `paper` or `angel_one`.
    pub broker: String,
    /// Names of the credential fields that hold a value.
    pub fields_set: Vec<String>,
    /// Bumped on every credential write.
    pub generation: i64,
    /// When the credentials were last written.
    pub updated_at: DateTime<Utc>,
    /// When the session tokens expire, if known.
    pub session_expires_at: Option<DateTime<Utc>>,
    /// The master key that wraps this account's data key (not secret).
    pub master_key_id: Option<i64>,
    /// The static IP registered with Angel One.
    pub static_ip: Option<String>,
    /// The egress proxy, if any.
    pub egress_proxy: Option<String>,
    /// The algo id orders are tagged with.
    pub algo_id: Option<String>,
}

impl From<&broker_accounts::Model> for AccountView {
    fn from(m: &broker_accounts::Model) -> Self {
        Self {
            id: m.id.clone(),
            label: m.label.clone(),
            broker: m.broker.clone(),
            fields_set: m.fields_set().into_iter().map(String::from).collect(),
            generation: m.generation,
            updated_at: m.updated_at,
            session_expires_at: m.session_expires_at,
            master_key_id: m.master_key_id,
            static_ip: m.static_ip.clone(),
            egress_proxy: m.egress_proxy.clone(),
            algo_id: m.algo_id.clone(),
        }
    }
}

impl From<PutAccountError> for ApiError {
    fn from(e: PutAccountError) -> Self {
        match e {
            PutAccountError::Audit(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::AuditUnavailable,
                e.to_string(),
            ),
            PutAccountError::Db(db) => ApiError::internal("storing the credentials", db),
            PutAccountError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string())
            }
            PutAccountError::Vault(vault) => {
                tracing::error!(error = %vault, "the vault refused a credential write");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::CredentialUnavailable,
                    "the credential vault cannot store credentials right now",
                )
            }
        }
    }
}

/// `PUT /v1/users/{user_id}/broker-accounts/{label}`.
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonObject<PutAccount>, ApiError>,
) -> Result<Json<AccountView>, ApiError> {
    let Path((user_id, label)) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_TRADE)?;
    check_user_id(&user_id)?;
    check_name("label", &label)?;
    let JsonObject(body) = body?;
    request::validate(&body)?;
    crate::lookup::find_user(&state.db, &user_id).await?;
    let writer = Writer {
        actor: caller.actor(),
        token_id: caller.token_id(),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    let store = CredentialStore {
        db: &state.db,
        vault: &state.vault,
        audit: &state.audit,
        register: &state.register,
    };
    let row = put_account(store, &writer, &user_id, &label, &body)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(%user_id, account_id = %row.id, generation = row.generation, "credentials stored");
    Ok(Json(AccountView::from(&row)))
}

/// `GET /v1/users/{user_id}/broker-accounts`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let Path(user_id) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_READ)?;
    check_user_id(&user_id)?;
    crate::lookup::find_user(&state.db, &user_id).await?;
    let rows = broker_accounts::Entity::of_user(&user_id)
        .order_by_asc(broker_accounts::Column::Label)
        .all(&state.db)
        .await
        .map_err(|e| ApiError::internal("listing accounts", e))?;
    Ok(Json(rows.iter().map(AccountView::from).collect()))
}
