//! The router, its shared state, and `serve` with graceful shutdown.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use pinnacle_common::audit::AuditLog;
use pinnacle_common::crypto::Vault;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::shutdown::Shutdown;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::error::ApiError;
use crate::limits::Limits;
use crate::{account_ops, accounts, api_tokens, login, users};

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Shared by every request.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Users, tokens and accounts.
    pub db: DatabaseConnection,
    /// Encrypts credentials; holds the token pepper.
    pub vault: Arc<Vault>,
    /// Credential writes are audited here.
    pub audit: AuditLog,
    /// The admin bearer token, if admin routes are enabled.
    pub admin_token: Option<SecretString>,
    /// Login and token-guessing limits.
    pub limits: Arc<Limits>,
}

/// The whole API as a router, for `serve` and for tests.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v1/login", post(login::login))
        .route("/v1/users", post(users::create))
        .route(
            "/v1/users/{user_id}/tokens",
            post(api_tokens::create).get(api_tokens::list),
        )
        .route(
            "/v1/users/{user_id}/tokens/{token_id}",
            delete(api_tokens::revoke),
        )
        .route("/v1/users/{user_id}/broker-accounts", get(accounts::list))
        .route(
            "/v1/users/{user_id}/broker-accounts/{label}",
            put(accounts::put)
                .get(account_ops::get)
                .delete(account_ops::delete),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::InvalidRequest,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` fires, finishing requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "user API listening");
    }
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
