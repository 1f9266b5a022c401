//! The web console and the API reference page, served from assets compiled into the
//! binary (`user-api/console/`): `GET /` (the console), `GET /docs` (the OpenAPI document
//! rendered offline), `GET /console/{file}` (its scripts and stylesheet) and
//! `GET /console/config.json` (where the browser finds the NATS WebSocket listener).
//!
//! Nothing here is authenticated or holds a secret: the console logs in from the browser
//! with the same bearer token or password as any API client, and then speaks NATS over
//! WebSocket with the trader's own NATS permissions (docs/CONSOLE.md). Every response
//! carries a Content-Security-Policy that allows scripts, styles and fetches from this
//! origin only, plus WebSocket connections (the NATS listener is on another port).

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::ApiError;

/// The environment variable naming the NATS WebSocket URL the console connects to
/// (`pinnacle dev` sets it to its loopback listener; in production e.g.
/// `wss://nats.example.com:8443`).
pub const NATS_WS_URL_VAR: &str = "PINNACLE_CONSOLE_NATS_WS_URL";

/// The console's files: (name, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/app.js"),
    ),
    (
        "nats.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/nats.js"),
    ),
    (
        "msgpack.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/msgpack.js"),
    ),
    (
        "docs.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/docs.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../console/style.css"),
    ),
];

const INDEX: &str = include_str!("../console/index.html");
const DOCS: &str = include_str!("../console/docs.html");

/// Same-origin scripts, styles, images and fetches; WebSocket anywhere (the NATS listener
/// has its own port); no framing, no plugins, forms post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `GET /`: the console.
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /docs`: the API reference, rendered in the browser from `/openapi.json`.
pub async fn docs() -> Response {
    page("text/html; charset=utf-8", DOCS)
}

/// `GET /console/{file}`: one of the console's scripts or its stylesheet.
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, body)| page(content_type, body))
        .ok_or_else(|| ApiError::not_found("no such console file"))
}

/// What the browser needs before it logs in.
#[derive(Debug, Serialize)]
pub struct ConsoleConfig {
    /// The NATS WebSocket URL (`PINNACLE_CONSOLE_NATS_WS_URL`), if the operator set one;
    /// otherwise the trader enters it on the login page.
    pub nats_ws_url: Option<String>,
}

/// `GET /console/config.json`.
pub async fn config() -> Response {
    let nats_ws_url = std::env::var(NATS_WS_URL_VAR)
        .ok()
        .map(|url| url.trim().to_string())
        .filter(|url| url.starts_with("ws://") || url.starts_with("wss://"));
    let mut response = Json(ConsoleConfig { nats_ws_url }).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_pages_load_is_served() {
        for page in [INDEX, DOCS] {
            for part in page.split("/console/").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == name),
                    "{name} is referenced but not served"
                );
            }
        }
        // Every module the scripts import is served too.
        for (_, _, body) in ASSETS {
            for part in body.split("from \"./").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name}");
            }
        }
    }

    #[test]
    fn no_asset_reaches_for_the_network() {
        for (name, _, body) in ASSETS
            .iter()
            .chain(&[("index", "", INDEX), ("docs", "", DOCS)])
        {
            assert!(!body.contains("http://"), "{name} names an http:// URL");
            assert!(!body.contains("https://"), "{name} names an https:// URL");
            assert!(!body.contains("//cdn"), "{name} loads from a CDN");
        }
    }
}
