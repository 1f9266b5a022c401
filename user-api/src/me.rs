//! `GET /v1/me`: who the bearer token belongs to, so a client holding only a token (the
//! console after a token login) learns its user id, name and scopes. It answers about the
//! caller alone and never echoes the token.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::caller::Caller;
use crate::error::ApiError;
use crate::lookup::find_user;
use crate::state::AppState;

/// The caller, as `GET /v1/me` shows it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Me {
    /// The admin token.
    Admin,
    /// A user's API token.
    User {
        /// The user's id (the `<USER_ID>` of their NATS subjects).
        user_id: String,
        /// The user's name.
        name: String,
        /// The id of the token used (not secret).
        token_id: String,
        /// What the token may do.
        scopes: Vec<String>,
        /// When the token stops working, if ever.
        expires_at: Option<DateTime<Utc>>,
    },
}

/// `GET /v1/me`.
pub async fn get(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    Ok(Json(match caller {
        Caller::Admin => Me::Admin,
        Caller::User(principal) => {
            let user = find_user(&state.db, &principal.user_id).await?;
            Me::User {
                user_id: principal.user_id,
                name: user.name,
                token_id: principal.token_id,
                scopes: principal.scopes,
                expires_at: principal.expires_at,
            }
        }
    }))
}
