//! [`KeyStoreError`]: what every key-store operation returns (a leaf module: the
//! operations use it, it uses none of them).

use sea_orm::DbErr;

use crate::crypto::DecryptError;

/// A key-management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
    /// The key has made as many encryptions as it safely may.
    #[error("master key {0} has reached its encryption limit; run `pinnacle keys rotate`")]
    Exhausted(u32),
    /// The key id is not in `master_keys` (the ring was not synced) or is retired.
    #[error("master key {0} is unknown to the database or retired")]
    Unusable(u32),
    /// The ring holds different key material under an id the database already knows.
    #[error(
        "master key {0} in the ring does not match the key the database recorded under that id"
    )]
    FingerprintMismatch(u32),
    /// A retired key cannot be current.
    #[error("master key {0} is retired and cannot be the current key")]
    CurrentRetired(u32),
    /// Retiring a key still in use (or current) is refused.
    #[error("master key {key_id} still wraps {rows} broker account(s); rotate first")]
    InUse {
        /// The key.
        key_id: u32,
        /// Rows still on it.
        rows: u64,
    },
    /// The key is the current one.
    #[error("master key {0} is the current key; make another key current first")]
    IsCurrent(u32),
    /// A stored data key failed to decrypt.
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    /// The audit event could not be stored, so nothing was touched.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}
