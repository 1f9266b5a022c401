//! `POST /v1/users`: create a user (admin only), optionally with a password for login.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use pinnacle_common::entities::users;
use pinnacle_common::error::ErrorCode;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, Set, SqlErr};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::body::JsonObject;
use crate::caller::Caller;
use crate::error::{check_name, ApiError};

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
}

impl From<users::Model> for UserView {
    fn from(m: users::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            is_admin: m.is_admin,
            created_at: m.created_at,
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
    };
    row.insert(db).await.map_err(|e| {
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
            .await
            .map_err(|e| ApiError::internal("storing the password", e))?;
    }
    tracing::info!(user_id = %user.id, "user created");
    Ok((StatusCode::CREATED, Json(user.into())))
}
