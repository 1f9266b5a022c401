//! Rows a route looks up before it acts, with the 404 it answers when they are missing.
//! A leaf: it imports no route module, so any route may use it.

use pinnacle_common::entities::{risk_limits, users};
use sea_orm::{DatabaseConnection, EntityTrait};
use tracing::Instrument as _;

use crate::error::ApiError;

/// The user `user_id`, or 404 `NOT_FOUND` ("no such user").
pub(crate) async fn find_user(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<users::Model, ApiError> {
    users::Entity::find_by_id(user_id.to_string())
        .one(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "users"))
        .await
        .map_err(|e| ApiError::internal("loading the user", e))?
        .ok_or_else(|| ApiError::not_found("no such user"))
}

/// The owner of the audit chain `user_id`: an existing user, or the platform's own chain
/// (`global`, where changes to the global risk limits are recorded); 404 `NOT_FOUND`
/// otherwise, so a mistyped id is not answered with an empty, clean trail.
pub(crate) async fn find_chain_owner(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<(), ApiError> {
    if user_id == risk_limits::GLOBAL {
        return Ok(());
    }
    find_user(db, user_id).await.map(drop)
}
