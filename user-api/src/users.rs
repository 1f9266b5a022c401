//! Users: `POST /v1/users` creates one (admin only), optionally with a password for login;
//! `GET /v1/users` lists them (admin); `GET /v1/users/{user_id}` shows one (the user or the
//! admin); `PUT /v1/users/{user_id}/default-account` names the broker account a request
//! uses when it names none and the user has several (audited as `account.default`). The
//! label need not exist yet: until it does, such a request is refused with
//! `NO_BROKER_ACCOUNT`, which says so.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use pinnacle_common::auth::{SCOPE_READ, SCOPE_TRADE};
use pinnacle_common::entities::{broker_accounts, users};
use pinnacle_common::error::ErrorCode;
use pinnacle_common::invalidate::{self, Invalidation};
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::telemetry;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, Set, SqlErr,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::body::JsonObject;
use crate::caller::Caller;
use crate::error::{check_name, check_user_id, ApiError};
use crate::lookup::find_user;
use crate::state::AppState;

/// Request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Unique name.
    pub name: String,
    /// Optional password for `POST /v1/login` (12 to 256 characters; redacted in `Debug`).
    #[serde(default)]
    pub password: Option<secrecy::SecretString>,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserView {
    /// UUID; also the `<user_id>` in order subjects.
    pub id: String,
    /// Name.
    pub name: String,
    /// Whether the user is an administrator.
    pub is_admin: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// The label of the default broker account, if one is set.
    pub default_account: Option<String>,
}

impl From<users::Model> for UserView {
    fn from(m: users::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            is_admin: m.is_admin,
            created_at: m.created_at,
            default_account: m.default_account,
        }
    }
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// The name is taken.
    #[error("a user with that name already exists")]
    NameTaken,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Inserts a user.
pub async fn create_user(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<users::Model, CreateUserError> {
    let row = users::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        name: Set(name.to_string()),
        is_admin: Set(false),
        password_hash: Set(None),
        created_at: Set(Utc::now()),
        default_account: Set(None),
    };
    row.insert(db)
        .instrument(pinnacle_common::db::span(db, "INSERT", "users"))
        .await
        .map_err(|e| {
            if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                CreateUserError::NameTaken
            } else {
                CreateUserError::Db(e)
            }
        })
}

/// `POST /v1/users`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonObject<CreateUser>, ApiError>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require_admin()?;
    let JsonObject(body) = body?;
    check_name("name", &body.name)?;
    let password_hash = match body.password {
        Some(password) => {
            crate::login::check_password(&password)?;
            Some(
                crate::login::hash_password(password)
                    .await
                    .map_err(|e| ApiError::internal("hashing the password", e))?,
            )
        }
        None => None,
    };
    let mut user = create_user(&state.db, &body.name)
        .await
        .map_err(|e| match e {
            CreateUserError::NameTaken => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string())
            }
            CreateUserError::Db(db) => ApiError::internal("creating the user", db),
        })?;
    if let Some(hash) = password_hash {
        let mut active: users::ActiveModel = user.into();
        active.password_hash = Set(Some(hash));
        user = active
            .update(&state.db)
            .instrument(pinnacle_common::db::span(&state.db, "UPDATE", "users"))
            .await
            .map_err(|e| ApiError::internal("storing the password", e))?;
    }
    tracing::info!(user_id = %user.id, "user created");
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// `GET /v1/users` (admin): every user, by name.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require_admin()?;
    let rows = users::Entity::find()
        .order_by_asc(users::Column::Name)
        .all(&state.db)
        .instrument(pinnacle_common::db::span(&state.db, "SELECT", "users"))
        .await
        .map_err(|e| ApiError::internal("listing users", e))?;
    Ok(Json(rows.into_iter().map(UserView::from).collect()))
}

/// `GET /v1/users/{user_id}` (the user, `read` scope, or the admin).
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserView>, ApiError> {
    let Path(user_id) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_READ)?;
    check_user_id(&user_id)?;
    Ok(Json(find_user(&state.db, &user_id).await?.into()))
}

/// Body of `PUT /v1/users/{user_id}/default-account`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultAccount {
    /// The label of one of the user's broker accounts, or `null` to have none (required:
    /// a body without it is refused, not read as `null`).
    #[serde(deserialize_with = "Option::deserialize")]
    pub label: Option<String>,
}

/// `PUT /v1/users/{user_id}/default-account` (the user, `trade` scope, or the admin):
/// audited (`account.default`) before it changes.
pub async fn put_default_account(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<JsonObject<DefaultAccount>, ApiError>,
) -> Result<Json<UserView>, ApiError> {
    let Path(user_id) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_TRADE)?;
    check_user_id(&user_id)?;
    let JsonObject(body) = body?;
    let user = find_user(&state.db, &user_id).await?;
    // A label with no account yet is kept (the account may be stored next); the event
    // names the account when there is one.
    let account_id = match &body.label {
        Some(label) => {
            check_name("label", label)?;
            account_id_of(&state.db, &user_id, label).await?
        }
        None => String::new(),
    };
    state
        .audit
        .record(&AuditEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            ts_ms: Utc::now().timestamp_millis(),
            actor: caller.actor(),
            token_id: caller.token_id(),
            user_id: user_id.clone(),
            broker_account_id: account_id,
            fields: vec!["default_account".into()],
            purpose: "account.default".into(),
            request_id: uuid::Uuid::now_v7().to_string(),
            trace_id: telemetry::current_trace_id(),
            outcome: AuditOutcome::Changed,
            generation: None,
            reason: None,
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::AuditUnavailable,
                e.to_string(),
            )
        })?;
    let mut active: users::ActiveModel = user.into();
    active.default_account = Set(body.label);
    let user = active
        .update(&state.db)
        .instrument(pinnacle_common::db::span(&state.db, "UPDATE", "users"))
        .await
        .map_err(|e| ApiError::internal("storing the default account", e))?;
    let change = Invalidation::Accounts {
        user_id: user_id.clone(),
    };
    invalidate::announce(&state.audit.client(), &change).await;
    Ok(Json(user.into()))
}

/// The id of `user_id`'s account labelled `label`, or `""` when there is none.
async fn account_id_of(
    db: &DatabaseConnection,
    user_id: &str,
    label: &str,
) -> Result<String, ApiError> {
    let account = broker_accounts::Entity::find()
        .filter(broker_accounts::Column::UserId.eq(user_id))
        .filter(broker_accounts::Column::Label.eq(label))
        .one(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "broker_accounts"))
        .await
        .map_err(|e| ApiError::internal("loading the account", e))?;
    Ok(account.map(|account| account.id).unwrap_or_default())
}
