//! The user API: users, API tokens, write-only broker credentials, and pre-trade risk
//! limits and kill switches, over HTTP (axum).
//!
//! # Layout
//! - [`app`](mod@app): the router and [`serve`]; [`state`]: [`AppState`], what every route shares.
//! - [`error`]: [`ApiError`], the one JSON error shape every route returns.
//! - [`body`]: the JSON-object request body every route with a body reads.
//! - [`caller`]: the `Authorization: Bearer` extractor (admin token or user API token).
//! - [`login`]: password login (Argon2id); [`limits`]: per-user and per-source limits.
//! - [`audit_trail`]: a user's own audit events; [`audit_verify`]: `audit verify` for one
//!   user's chain; [`openapi`]: the OpenAPI document.
//! - [`console`]: the web console (`/`) and the API reference (`/docs`), compiled in;
//!   [`me`]: who a token belongs to; [`key_status`]: master keys and rotation (admin).
//! - [`trace`]: the HTTP server span of every request, child of the caller's `traceparent`.
//! - [`risk`]: risk limits and kill switches, platform-wide and per user, audited.
//! - [`users`], [`api_tokens`], [`accounts`], [`account_ops`]: the routes, each over functions that the
//!   `pinnacle` CLI also calls to bootstrap the demo user.
//!
//! Credentials go in and never come out: responses say only which fields are set.

pub mod account_ops;
pub mod accounts;
pub mod api_tokens;
pub mod app;
pub mod audit_trail;
pub mod audit_verify;
pub mod body;
pub mod caller;
pub mod console;
pub mod error;
pub mod key_status;
pub mod limits;
pub mod login;
mod lookup;
pub mod me;
pub mod openapi;
pub mod risk;
pub mod state;
pub mod trace;
pub mod users;

pub use app::{app, serve};
pub use error::ApiError;
pub use state::AppState;
