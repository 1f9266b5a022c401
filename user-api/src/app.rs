//! The router (the table of every route) and `serve` with graceful shutdown; the state
//! the routes share is [`crate::state::AppState`]. [`app`] stays one function a little over
//! 60 lines on purpose: it is the table of routes, read as one.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::Router;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::shutdown::Shutdown;

use crate::account_ops;
use crate::accounts;
use crate::api_tokens;
use crate::audit_trail;
use crate::audit_verify;
use crate::console;
use crate::error::ApiError;
use crate::key_status;
use crate::login;
use crate::me;
use crate::openapi;
use crate::risk;
use crate::state::AppState;
use crate::users;

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The whole API as a router, for `serve` and for tests.
pub fn app(state: AppState) -> Router {
    let health = state.health.routes();
    Router::new()
        .route("/", get(console::index))
        .route("/docs", get(console::docs))
        .route("/console/config.json", get(console::config))
        .route("/console/{file}", get(console::asset))
        .route("/v1/login", post(login::login))
        .route("/v1/me", get(me::get))
        .route("/v1/keys", get(key_status::get))
        .route("/v1/users", post(users::create).get(users::list))
        .route("/v1/users/{user_id}", get(users::get))
        .route(
            "/v1/users/{user_id}/default-account",
            put(users::put_default_account),
        )
        .route(
            "/v1/users/{user_id}/risk-limits",
            get(risk::get_user)
                .put(risk::put_user)
                .delete(risk::delete_user),
        )
        .route(
            "/v1/risk-limits/global",
            get(risk::get_global).put(risk::put_global),
        )
        .route(
            "/v1/users/{user_id}/tokens",
            post(api_tokens::create).get(api_tokens::list),
        )
        .route(
            "/v1/users/{user_id}/tokens/{token_id}",
            delete(api_tokens::revoke),
        )
        .route("/v1/users/{user_id}/broker-accounts", get(accounts::list))
        .route("/v1/users/{user_id}/audit", get(audit_trail::get))
        .route("/v1/users/{user_id}/audit/verify", get(audit_verify::get))
        .route("/openapi.json", get(openapi::document))
        .route(
            "/v1/users/{user_id}/broker-accounts/{label}",
            put(accounts::put)
                .get(account_ops::get)
                .delete(account_ops::delete),
        )
        .route_layer(axum::middleware::from_fn(crate::trace::route))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
        })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(reject_control_characters))
        // Outermost: every request but the probes gets its server span, refusals included.
        .layer(axum::middleware::from_fn(crate::trace::server_span))
        // Liveness and readiness probes (every few seconds) are not traced.
        .merge(health)
        // Again for the probes merged above (the layered routes keep theirs).
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The answer to a method a route does not take: a JSON error, like every other refusal.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "method not allowed on this route",
    )
}

/// Whether a URI path or query holds a control character once percent-decoded (databases
/// refuse NUL in text, and no id or label may hold one).
fn has_control_character(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                i += 2;
                u8::from_str_radix(hex, 16).unwrap_or(b'%')
            }
            other => other,
        };
        if byte < 0x20 || byte == 0x7f {
            return true;
        }
        i += 1;
    }
    false
}

/// Answers 400 for a path or query with a control character, before any route runs.
async fn reject_control_characters(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let uri = request.uri();
    if has_control_character(uri.path()) || uri.query().is_some_and(has_control_character) {
        return ApiError::invalid("the path or query holds a control character").into_response();
    }
    next.run(request).await
}

/// Serves the API on `listener` until `shutdown` fires, finishing requests in flight, then
/// checkpoints the audit chains it appended to.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "user API listening");
    }
    let audit = state.audit.clone();
    let served = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await;
    // Seal what this writer appended since its last checkpoint, so a graceful stop leaves
    // no link for `pinnacle audit verify` to report as unsealed.
    if let Err(error) = audit.checkpoint_now().await {
        tracing::warn!(%error, "audit checkpoint on shutdown failed");
    }
    served
}

#[cfg(test)]
mod tests {
    use super::has_control_character;

    #[test]
    fn control_characters_are_found_raw_or_percent_encoded() {
        for bad in ["/a%00b", "/a%1Fb", "/a%7f", "a\tb"] {
            assert!(has_control_character(bad), "{bad}");
        }
        for good in [
            "/v1/users/abc-123",
            "/x%20y",
            "/%F0%9F%92%A5",
            "/trailing%",
            "/%zz",
        ] {
            assert!(!has_control_character(good), "{good}");
        }
    }
}
