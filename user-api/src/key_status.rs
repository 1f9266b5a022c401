//! `GET /v1/keys` (admin only): the master keys and how far rotation has come, as
//! `pinnacle keys status` prints it: per key its public fingerprint, how many broker
//! accounts' data keys it wraps, how many encryptions it made and whether it is retired,
//! plus the current key id. Key material never leaves the vault.

use axum::extract::State;
use axum::Json;
use pinnacle_common::keystore::{self, KeysView};

use crate::caller::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/keys`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<KeysView>, ApiError> {
    caller.require_admin()?;
    keystore::overview(&state.db, &state.vault)
        .await
        .map(Json)
        .map_err(|e| ApiError::internal("reading the key status", e))
}
