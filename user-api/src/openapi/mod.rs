//! The OpenAPI 3.1 document, served at `GET /openapi.json` (no authentication needed).
//!
//! Written by hand next to the routes in `app`, from the same constants the handlers check
//! (patterns, lengths in characters, ranges), and listing every status a route can answer
//! with. Two tests hold it to the server: the `openapi_fuzz` end-to-end test drives every
//! operation with bad input and fails on any 5xx, and the `schemathesis` one runs
//! Schemathesis with all its checks against a real server and fails on any finding.
//!
//! # Layout
//! - `paths`: every operation (the table of routes).
//! - `schemas`: every body shape.

mod paths;
mod schemas;

use axum::Json;
use serde_json::{json, Value};

use paths::paths;
use schemas::schemas;

/// The document.
pub fn spec() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Pinnacle user API", "version": "1",
                 "description": "Lengths are counted in characters (Unicode scalar values). Every error is `{\"error\": {\"code\", \"message\"}}`."},
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "exactly one `Authorization: Bearer <token>` header: the admin token or a user's API token"}},
            "responses": {"RateLimited": {
                "description": "too many attempts from this source or for this name or token (`RATE_LIMITED`)",
                "headers": {"Retry-After": {"required": true, "description": "seconds to wait",
                    "schema": {"type": "integer", "minimum": 1}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }},
            "schemas": schemas()
        }
    })
}

/// `GET /openapi.json`.
pub async fn document() -> Json<Value> {
    Json(spec())
}
