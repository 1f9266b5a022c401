//! Audit events: who touched whose credentials, why, and what came of it.
//!
//! An event never holds a secret: it names the *fields* accessed, not their values.

use serde::{Deserialize, Serialize};

/// What came of the access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Recorded before the access; the access may proceed (audit before access).
    Authorized,
    /// Credentials were written.
    Written,
    /// The stored ciphertext failed to decrypt.
    DecryptFailed,
}

/// One credential access, published to `audit.credential.<user_id>` and stored in JetStream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique id (UUIDv7); also the JetStream `Nats-Msg-Id`, so a retry is stored once.
    pub event_id: String,
    /// When, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Who acted: the user id behind the API token (or `admin`).
    pub actor: String,
    /// The API token id used, if any (never the token itself).
    pub token_id: Option<String>,
    /// Whose credentials: the owning user id.
    pub user_id: String,
    /// Which broker account.
    pub broker_account_id: String,
    /// Which credential fields, e.g. `["api_key", "client_code"]`.
    pub fields: Vec<String>,
    /// Why, e.g. `order.place` or `credentials.write`.
    pub purpose: String,
    /// The request id from the `Pinnacle-Request-Id` header, or one the service made.
    pub request_id: String,
    /// The W3C trace id, when the request was traced.
    pub trace_id: Option<String>,
    /// What came of it.
    pub outcome: AuditOutcome,
}
