//! Who is calling: the `Authorization: Bearer <token>` extractor.
//!
//! The admin token (`PINNACLE_API_ADMIN_TOKEN`) is compared in constant time; anything
//! else must be a user API token (`pinnacle_common::auth`). Failed checks count against
//! the source address and the presented token id (`crate::limits`). A source over its
//! limit gets 429 before any token is checked; the per-id counter only slows further
//! failures, so knowing a token's (public) id cannot lock its owner out.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use pinnacle_common::auth::{self, AuthError, Principal};
use pinnacle_common::error::ErrorCode;
use pinnacle_common::tokens;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::limits::{Source, TooMany};
use crate::state::AppState;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Holder of the admin token.
    Admin,
    /// A user, through one of their API tokens.
    User(Principal),
}

impl Caller {
    /// The name written to audit events as the actor.
    pub fn actor(&self) -> String {
        match self {
            Self::Admin => "admin".into(),
            Self::User(p) => p.user_id.clone(),
        }
    }

    /// The token id, for audit events.
    pub fn token_id(&self) -> Option<String> {
        match self {
            Self::Admin => None,
            Self::User(p) => Some(p.token_id.clone()),
        }
    }

    /// Allows the admin, or the user themselves through a token that carries `scope`:
    /// `read` for reading, `trade` for anything that changes credentials or tokens, so a
    /// read-only token can never mint itself more power.
    pub fn require_self_or_admin(&self, user_id: &str, scope: &str) -> Result<(), ApiError> {
        match self {
            Self::Admin => Ok(()),
            Self::User(p) if p.user_id == user_id && p.has_scope(scope) => Ok(()),
            Self::User(p) if p.user_id == user_id => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!("this token lacks the {scope} scope"),
            )),
            Self::User(_) => Err(ApiError::forbidden()),
        }
    }

    /// Allows only the admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Self::Admin => Ok(()),
            Self::User(_) => Err(ApiError::forbidden()),
        }
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
        message,
    )
}

/// The token of the request's one `Authorization: Bearer <token>` header. No header, two
/// of them, a comma-joined (folded) value, odd whitespace or another scheme is 401
/// `UNAUTHENTICATED`, like any other bad token.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or_else(|| unauthenticated("missing Authorization: Bearer <token>"))?;
    if values.next().is_some() {
        return Err(unauthenticated("send exactly one Authorization header"));
    }
    value
        .to_str()
        .ok()
        .and_then(tokens::from_bearer)
        .ok_or_else(|| unauthenticated("expected Authorization: Bearer <token>"))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Source(source) = Source::of(parts);
        let limits = &state.limits;
        if let Some(retry_after) = limits.auth_failures_per_source.blocked(&source) {
            return Err(TooMany { retry_after }.into());
        }
        let token = bearer_token(&parts.headers)?;
        if let Some(admin) = &state.admin_token {
            // Compare digests, so neither the content nor the length leaks through timing.
            let presented = Sha256::digest(token.as_bytes());
            let expected = Sha256::digest(admin.expose_secret().as_bytes());
            if bool::from(presented.ct_eq(&expected)) {
                return Ok(Self::Admin);
            }
        }
        let token_id = tokens::parse(token).map(|t| t.id.to_string());
        // The token is verified before the per-id counter is consulted: token ids are not
        // secret, so counting failures against an id must never lock out its valid token.
        match auth::authenticate(&state.db, state.vault.token_pepper(), Some(token)).await {
            Ok(principal) => Ok(Self::User(principal)),
            Err(AuthError::Store(e)) => Err(ApiError::internal("checking the token", e)),
            Err(other) => {
                let by_source = limits.auth_failures_per_source.hit(&source);
                let by_token = token_id
                    .as_deref()
                    .and_then(|id| limits.auth_failures_per_token.hit(id));
                match by_source.or(by_token) {
                    Some(retry_after) => {
                        tracing::warn!(%source, "token-guessing rate limit");
                        Err(TooMany { retry_after }.into())
                    }
                    None => Err(unauthenticated(&other.to_string())),
                }
            }
        }
    }
}
