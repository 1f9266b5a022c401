//! [`AppState`]: what every request handler shares. Its own module so that the route
//! modules depend on it, and the router (`app.rs`) on them, with no circle.

use std::sync::Arc;

use pinnacle_common::audit::AuditLog;
use pinnacle_common::crypto::Vault;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::limits::Limits;

/// Shared by every request.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Users, tokens and accounts.
    pub db: DatabaseConnection,
    /// Encrypts credentials; holds the token pepper.
    pub vault: Arc<Vault>,
    /// Credential writes are audited here.
    pub audit: AuditLog,
    /// The generation register each credential write advances after it committed.
    pub register: pinnacle_common::keystore::Register,
    /// The admin bearer token, if admin routes are enabled.
    pub admin_token: Option<SecretString>,
    /// Login and token-guessing limits.
    pub limits: Arc<Limits>,
    /// The process's NATS connections, for `/healthz` and `/readyz`.
    pub health: pinnacle_common::health::Health,
}
