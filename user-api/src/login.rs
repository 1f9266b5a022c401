//! Password login: `POST /v1/login` trades a user name and password for an API token.
//!
//! Passwords are hashed with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes,
//! 1 lane) into a PHC string, on a blocking thread. An unknown user and a wrong password
//! get the same 401 after the same work (a dummy hash is verified). Attempts are counted
//! per user name and per source address before any hashing; over the limit is a 429.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pinnacle_common::entities::users;
use pinnacle_common::error::ErrorCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::Instrument as _;

use crate::api_tokens::{issue_token, CreateToken, IssuedToken, TokenSpec};
use crate::body::JsonObject;
use crate::error::ApiError;
use crate::limits::{Source, TooMany};
use crate::state::AppState;

/// The shortest and longest accepted password, in characters.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 12..=256;
/// Lifetime of a token issued by login when the body names none: one day.
pub const LOGIN_TOKEN_SECS: i64 = 24 * 3600;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

/// At most this many Argon2id computations run at once (each takes 19 MiB and a core for
/// tens of milliseconds), so a flood of logins queues instead of exhausting memory.
const MAX_CONCURRENT_HASHES: usize = 4;

static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// Hashes `password` with Argon2id and a random salt, into a PHC string.
pub async fn hash_password(password: SecretString) -> Result<String, HashError> {
    let _permit = HASHING.acquire().await.map_err(|_| HashError)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| HashError)
    })
    .await
    .map_err(|_| HashError)?
}

/// A valid Argon2id hash of a random string, verified for unknown users.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0VQ3tV1Bj7hRmvUvPa6bHoMZkqO9aQkY2Xg8E0gSDhQ";

async fn verify(password: SecretString, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false);
    known && ok
}

/// Checks a new password's length.
pub fn check_password(password: &SecretString) -> Result<(), ApiError> {
    if PASSWORD_LEN.contains(&crate::error::char_len(password.expose_secret())) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "password must be {} to {} characters",
            PASSWORD_LEN.start(),
            PASSWORD_LEN.end()
        )))
    }
}

/// Request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// User name.
    pub name: String,
    /// Password (redacted in `Debug`).
    pub password: SecretString,
    /// Scopes for the issued token (default both).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Token lifetime in seconds (default one day).
    #[serde(default, deserialize_with = "crate::body::json_integer")]
    pub expires_in_secs: Option<i64>,
}

/// `POST /v1/login`.
pub async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    body: Result<JsonObject<Login>, ApiError>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    if let Some(retry_after) = state.limits.login_per_source.hit(&source) {
        tracing::warn!(%source, "login rate limit (source)");
        return Err(TooMany { retry_after }.into());
    }
    let JsonObject(body) = body?;
    crate::error::check_name("name", &body.name)?;
    let name_key = body
        .name
        .chars()
        .take(64)
        .collect::<String>()
        .to_lowercase();
    if let Some(retry_after) = state.limits.login_per_user.hit(&name_key) {
        tracing::warn!("login rate limit (user)");
        return Err(TooMany { retry_after }.into());
    }
    let spec = TokenSpec::try_from(CreateToken {
        scopes: body.scopes,
        expires_in_secs: Some(body.expires_in_secs.unwrap_or(LOGIN_TOKEN_SECS)),
    })?;
    let user = users::Entity::find()
        .filter(users::Column::Name.eq(body.name.as_str()))
        .one(&state.db)
        .instrument(pinnacle_common::db::span(&state.db, "SELECT", "users"))
        .await
        .map_err(|e| ApiError::internal("loading the user", e))?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let verified = verify(body.password, hash).await;
    let Some(user) = user.filter(|_| verified) else {
        return Err(bad_login());
    };
    let (row, token) = issue_token(&state.db, &state.vault, &user.id, &spec)
        .await
        .map_err(|e| ApiError::internal("issuing the token", e))?;
    tracing::info!(user_id = %user.id, token_id = %row.id, "password login");
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            id: row.id,
            token: token.expose_secret().to_string(),
            scopes: spec.scopes,
            expires_at: row.expires_at,
        }),
    ))
}

fn bad_login() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
        "wrong user name or password",
    )
}
