//! `GET /v1/keys` (admin only): the master keys and how far rotation has come, as
//! `pinnacle keys status` prints it: per key its public fingerprint, how many broker
//! accounts' data keys it wraps, how many encryptions it made and whether it is retired,
//! plus the current key id. Key material never leaves the vault.

use axum::extract::State;
use axum::Json;
use pinnacle_common::keystore::{self, KeyStatus};
use serde::Serialize;

use crate::caller::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The reply.
#[derive(Debug, Serialize)]
pub struct KeysView {
    /// The key new data keys are wrapped under.
    pub current_key_id: u32,
    /// How many encryptions one key may make before it must be rotated.
    pub max_encryptions_per_key: i64,
    /// Every key the database knows, oldest first.
    pub keys: Vec<KeyStatus>,
}

/// `GET /v1/keys`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<KeysView>, ApiError> {
    caller.require_admin()?;
    let keys = keystore::status(&state.db)
        .await
        .map_err(|e| ApiError::internal("reading the key status", e))?;
    Ok(Json(KeysView {
        current_key_id: state.vault.current_key_id(),
        max_encryptions_per_key: state.vault.max_encryptions(),
        keys,
    }))
}
