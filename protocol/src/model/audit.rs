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
    /// A control was changed: risk limits, a kill switch or the default account
    /// ([`AuditEvent::purpose`] says which, [`AuditEvent::fields`] what changed). No
    /// credential was touched, so [`AuditEvent::broker_account_id`] is empty, or the
    /// account chosen as the default.
    Changed,
    /// The stored ciphertext failed to decrypt, or the row was refused before decrypting
    /// ([`AuditEvent::reason`] says which).
    DecryptFailed,
}

impl AuditOutcome {
    /// The wire spelling (`authorized`, `written`, `decrypt_failed`, `changed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::Written => "written",
            Self::DecryptFailed => "decrypt_failed",
            Self::Changed => "changed",
        }
    }
}

impl std::fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a credential was not decrypted: the reason code of a `decrypt_failed` event. It
/// names the check that failed, never anything secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecryptReason {
    /// The row's generation is older than the generation register says was written: the
    /// row was rolled back (restored from an older copy).
    RolledBack,
    /// The generation register could not be read, so the row could not be checked (fail
    /// closed).
    RegisterUnavailable,
    /// The ciphertexts did not decrypt for this row (edited, swapped, copied from another
    /// row, or a retired or unknown master key).
    Undecryptable,
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
    /// The credential generation involved: the one written (`written`), or the row's
    /// generation when it was read (`authorized`, `decrypt_failed`). Absent in events
    /// recorded before generations were audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Why a `decrypt_failed` event failed; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DecryptReason>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_print_as_the_wire_spells_them() {
        for outcome in [
            AuditOutcome::Authorized,
            AuditOutcome::Written,
            AuditOutcome::DecryptFailed,
            AuditOutcome::Changed,
        ] {
            let wire = serde_json::to_value(outcome).expect("serializes");
            assert_eq!(wire, outcome.to_string(), "{outcome:?}");
        }
    }
}
