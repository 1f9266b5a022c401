//! API tokens: issue (`POST /v1/users/{user_id}/tokens`), list (`GET …/tokens`) and
//! revoke (`DELETE …/tokens/{token_id}`), by the admin or the user themselves. Listings
//! never show a token or its hash; a revoked token fails its next check.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use pinnacle_common::auth::{SCOPE_READ, SCOPE_TRADE};
use pinnacle_common::crypto::Vault;
use pinnacle_common::entities::api_tokens;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::invalidate::publish_confirmed;
use pinnacle_common::subjects;
use pinnacle_common::tokens;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::caller::Caller;
use crate::error::{check_token_id, check_user_id, require_json, ApiError};
use crate::state::AppState;

/// The longest lifetime a token may be given: one year.
pub const MAX_EXPIRES_IN_SECS: i64 = 366 * 24 * 3600;

/// Request body; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Scopes: any of `trade`, `read`. Default: both.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Lifetime in seconds, 60 to one year. Default: no expiry.
    #[serde(default, deserialize_with = "crate::body::json_integer")]
    pub expires_in_secs: Option<i64>,
}

/// The issued token. `token` is shown here once and never again (and `Debug` hides it).
#[derive(Serialize, Deserialize)]
pub struct IssuedToken {
    /// The token id (its lookup prefix).
    pub id: String,
    /// The bearer token.
    pub token: String,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("token", &"[REDACTED]")
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Validated issue parameters.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

impl TokenSpec {
    /// Both scopes, no expiry.
    pub fn full() -> Self {
        Self {
            scopes: vec![SCOPE_TRADE.into(), SCOPE_READ.into()],
            expires_at: None,
        }
    }
}

impl TryFrom<CreateToken> for TokenSpec {
    type Error = ApiError;

    fn try_from(body: CreateToken) -> Result<Self, ApiError> {
        let scopes = body
            .scopes
            .unwrap_or_else(|| vec![SCOPE_TRADE.into(), SCOPE_READ.into()]);
        if scopes.is_empty() || scopes.iter().any(|s| s != SCOPE_TRADE && s != SCOPE_READ) {
            return Err(ApiError::invalid(
                "scopes must be a non-empty list of \"trade\", \"read\"",
            ));
        }
        let expires_at = match body.expires_in_secs {
            None => None,
            Some(secs) if (60..=MAX_EXPIRES_IN_SECS).contains(&secs) => {
                Some(Utc::now() + Duration::seconds(secs))
            }
            Some(_) => {
                return Err(ApiError::invalid(format!(
                    "expires_in_secs must be between 60 and {MAX_EXPIRES_IN_SECS}"
                )))
            }
        };
        let mut scopes = scopes;
        scopes.sort();
        scopes.dedup();
        Ok(Self { scopes, expires_at })
    }
}

/// Mints and stores a token for `user_id`; returns the row and the one-time bearer token.
pub async fn issue_token(
    db: &impl ConnectionTrait,
    vault: &Vault,
    user_id: &str,
    spec: &TokenSpec,
) -> Result<(api_tokens::Model, SecretString), DbErr> {
    let minted = tokens::mint(vault.token_pepper());
    let row = api_tokens::ActiveModel {
        id: Set(minted.id.clone()),
        user_id: Set(user_id.to_string()),
        secret_hash: Set(minted.hash.clone()),
        scopes: Set(spec.scopes.join(",")),
        created_at: Set(Utc::now()),
        expires_at: Set(spec.expires_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .instrument(pinnacle_common::db::span(db, "INSERT", "api_tokens"))
    .await?;
    Ok((row, minted.token))
}

/// A user can mint only what they hold: scopes within their own token's, and an expiry no
/// later than their own token's. (The admin is not bound.) With no scopes asked for, the
/// new token gets the caller's.
fn bounded_by_caller(
    caller: &Caller,
    mut spec: TokenSpec,
    scopes_given: bool,
) -> Result<TokenSpec, ApiError> {
    let Caller::User(principal) = caller else {
        return Ok(spec);
    };
    if !scopes_given {
        spec.scopes = principal.scopes.clone();
        spec.scopes.sort();
    }
    if spec.scopes.iter().any(|s| !principal.has_scope(s)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "a token cannot grant a scope that the token creating it lacks",
        ));
    }
    spec.expires_at = match (spec.expires_at, principal.expires_at) {
        (Some(asked), Some(own)) => Some(asked.min(own)),
        (asked, own) => asked.or(own),
    };
    Ok(spec)
}

/// `POST /v1/users/{user_id}/tokens`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let Path(user_id) = path?;
    let body = body?;
    caller.require_self_or_admin(&user_id, SCOPE_TRADE)?;
    check_user_id(&user_id)?;
    // An empty body means "all defaults"; any other must be JSON, like every other body.
    let body: CreateToken = if body.iter().all(u8::is_ascii_whitespace) {
        CreateToken::default()
    } else {
        require_json(&headers)?;
        crate::body::parse_object(&body)?
    };
    let scopes_given = body.scopes.is_some();
    let spec = bounded_by_caller(&caller, TokenSpec::try_from(body)?, scopes_given)?;
    crate::lookup::find_user(&state.db, &user_id).await?;
    let (row, token) = issue_token(&state.db, &state.vault, &user_id, &spec)
        .await
        .map_err(|e| ApiError::internal("issuing the token", e))?;
    tracing::info!(%user_id, token_id = %row.id, "API token issued");
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

/// A token as listings show it: never the token or its hash.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenView {
    /// The token id (its lookup prefix).
    pub id: String,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_tokens::Model> for TokenView {
    fn from(m: api_tokens::Model) -> Self {
        Self {
            scopes: m.scopes.split(',').map(|s| s.trim().to_string()).collect(),
            id: m.id,
            created_at: m.created_at,
            expires_at: m.expires_at,
            revoked_at: m.revoked_at,
        }
    }
}

/// `GET /v1/users/{user_id}/tokens`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let Path(user_id) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_READ)?;
    check_user_id(&user_id)?;
    crate::lookup::find_user(&state.db, &user_id).await?;
    let rows = api_tokens::Entity::find()
        .filter(api_tokens::Column::UserId.eq(user_id.as_str()))
        .order_by_asc(api_tokens::Column::CreatedAt)
        .all(&state.db)
        .instrument(pinnacle_common::db::span(&state.db, "SELECT", "api_tokens"))
        .await
        .map_err(|e| ApiError::internal("listing tokens", e))?;
    Ok(Json(rows.into_iter().map(TokenView::from).collect()))
}

/// `DELETE /v1/users/{user_id}/tokens/{token_id}`: revokes the token (the row stays).
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<TokenView>, ApiError> {
    let Path((user_id, token_id)) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_TRADE)?;
    check_user_id(&user_id)?;
    check_token_id(&token_id)?;
    let row = api_tokens::Entity::find_by_id(token_id.clone())
        .filter(api_tokens::Column::UserId.eq(user_id.as_str()))
        .one(&state.db)
        .instrument(pinnacle_common::db::span(&state.db, "SELECT", "api_tokens"))
        .await
        .map_err(|e| ApiError::internal("loading the token", e))?
        .ok_or_else(|| ApiError::not_found("no such token"))?;
    if row.revoked_at.is_some() {
        return Ok(Json(row.into()));
    }
    let mut active: api_tokens::ActiveModel = row.into();
    active.revoked_at = Set(Some(Utc::now()));
    let row = active
        .update(&state.db)
        .instrument(pinnacle_common::db::span(&state.db, "UPDATE", "api_tokens"))
        .await
        .map_err(|e| ApiError::internal("revoking the token", e))?;
    tracing::info!(%user_id, %token_id, "API token revoked");
    // Workers cache token rows for up to a second; this makes the revocation immediate.
    // Announced inside a producer span whose context the message carries, so the
    // announcement is part of the request's trace.
    let client = state.audit.client();
    let span = tracing::info_span!(
        "tokens.revoked.publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = subjects::TOKENS_REVOKED,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    let payload = token_id.clone().into();
    let announced = publish_confirmed(&client, &span, subjects::TOKENS_REVOKED, payload).await;
    if let Err(error) = announced {
        tracing::warn!(%error, "revocation not announced; workers apply it within a second");
    }
    Ok(Json(row.into()))
}
