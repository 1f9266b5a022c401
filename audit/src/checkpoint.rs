//! Signed checkpoints of the audit chains, published to `audit.checkpoint.<user>` (in the
//! AUDIT stream) and stored in the `audit_checkpoints` table, outside NATS.
//!
//! A checkpoint says "chain `subject` had link `position`, hash `hash`, at stream sequence
//! `seq`". It is signed with HMAC-SHA256 under the checkpoint subkey (not the chain key):
//!
//! ```text
//! signature = HMAC-SHA256(K_checkpoint[key_id], "pinnacle/audit-checkpoint/v1"
//!               ‖ len(subject) ‖ subject ‖ seq ‖ position ‖ hash ‖ key_id ‖ ts_ms)
//! ```
//!
//! The verifier compares each one with the chain it read: a checkpoint beyond the chain's
//! last link means the tail was truncated; a different hash or sequence at that position
//! means the chain was rewritten.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};

use super::chain::{constant_eq, Tip};
use pinnacle_store::entities::audit_checkpoints;
use pinnacle_vault::{AuditKey, Vault};

const DOMAIN: &[u8] = b"pinnacle/audit-checkpoint/v1";

/// When a writer checkpoints a chain it appends to (defined with its settings,
/// `PINNACLE_AUDIT_*`, in `pinnacle_runtime::config::audit`).
pub use pinnacle_runtime::config::CheckpointPolicy;

/// One signed checkpoint, as published (MessagePack map) and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The chain subject, `audit.credential.<user_id>`.
    pub subject: String,
    /// Stream sequence of the checkpointed link.
    pub seq: u64,
    /// Its position in the chain.
    pub position: u64,
    /// Its hash, hex.
    pub hash: String,
    /// Master key id of the checkpoint key.
    pub key_id: u32,
    /// When it was made, ms since the epoch.
    pub ts_ms: i64,
    /// The signature, hex.
    pub signature: String,
}

fn signature(vault: &Vault, key_id: u32, fields: &Checkpoint) -> Option<[u8; 32]> {
    use hmac::Mac as _;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&fields.hash, &mut hash).ok()?;
    let mut mac = vault.audit_mac(key_id, AuditKey::Checkpoint)?;
    mac.update(DOMAIN);
    mac.update(&(fields.subject.len() as u64).to_be_bytes());
    mac.update(fields.subject.as_bytes());
    mac.update(&fields.seq.to_be_bytes());
    mac.update(&fields.position.to_be_bytes());
    mac.update(&hash);
    mac.update(&key_id.to_be_bytes());
    mac.update(&fields.ts_ms.to_be_bytes());
    Some(mac.finalize().into_bytes().into())
}

impl Checkpoint {
    /// Signs a checkpoint of `tip` on `subject` with the vault's current audit key id.
    pub fn sign(vault: &Vault, subject: &str, tip: &Tip, ts_ms: i64) -> Option<Self> {
        let mut cp = Self {
            subject: subject.to_string(),
            seq: tip.seq,
            position: tip.position,
            hash: hex::encode(tip.hash),
            key_id: vault.audit_key_id(),
            ts_ms,
            signature: String::new(),
        };
        cp.signature = hex::encode(signature(vault, cp.key_id, &cp)?);
        Some(cp)
    }

    /// Whether the signature is right (false for an unknown key id or malformed fields).
    pub fn verify(&self, vault: &Vault) -> bool {
        let mut claimed = [0u8; 32];
        if hex::decode_to_slice(&self.signature, &mut claimed).is_err() {
            return false;
        }
        signature(vault, self.key_id, self).is_some_and(|want| constant_eq(&want, &claimed))
    }

    /// The checkpointed hash as bytes (zeros if malformed; a malformed one never verifies).
    pub fn hash_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        if hex::decode_to_slice(&self.hash, &mut out).is_err() {
            return [0; 32];
        }
        out
    }
}

/// Stores `cp` in `audit_checkpoints`; a checkpoint of the same link already there is kept.
pub async fn store(db: &impl ConnectionTrait, cp: &Checkpoint) -> Result<(), DbErr> {
    use sea_orm::sea_query::OnConflict;
    use sea_orm::Set;
    let row = audit_checkpoints::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        subject: Set(cp.subject.clone()),
        stream_seq: Set(i64::try_from(cp.seq).unwrap_or(i64::MAX)),
        position: Set(i64::try_from(cp.position).unwrap_or(i64::MAX)),
        hash: Set(cp.hash.clone()),
        key_id: Set(i64::from(cp.key_id)),
        ts_ms: Set(cp.ts_ms),
        signature: Set(cp.signature.clone()),
    };
    let result = audit_checkpoints::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                audit_checkpoints::Column::Subject,
                audit_checkpoints::Column::StreamSeq,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec(db)
        .await;
    match result {
        Ok(_) | Err(DbErr::RecordNotInserted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every stored checkpoint (of `subject` only, when given), oldest first.
pub async fn load(
    db: &DatabaseConnection,
    subject: Option<&str>,
) -> Result<Vec<Checkpoint>, DbErr> {
    let mut query =
        audit_checkpoints::Entity::find().order_by_asc(audit_checkpoints::Column::StreamSeq);
    if let Some(subject) = subject {
        query = query.filter(audit_checkpoints::Column::Subject.eq(subject));
    }
    Ok(query
        .all(db)
        .await?
        .into_iter()
        .map(|row| Checkpoint {
            subject: row.subject,
            seq: u64::try_from(row.stream_seq).unwrap_or(0),
            position: u64::try_from(row.position).unwrap_or(0),
            hash: row.hash,
            key_id: u32::try_from(row.key_id).unwrap_or(0),
            ts_ms: row.ts_ms,
            signature: row.signature,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_and_any_change_breaks_it() {
        let vault = Vault::new(1, &[5u8; 32]);
        let tip = Tip {
            seq: 42,
            position: 7,
            hash: [9u8; 32],
        };
        let cp = Checkpoint::sign(&vault, "audit.credential.u1", &tip, 1_000).expect("signs");
        assert!(cp.verify(&vault));
        for forged in [
            Checkpoint {
                seq: 41,
                ..cp.clone()
            },
            Checkpoint {
                position: 8,
                ..cp.clone()
            },
            Checkpoint {
                hash: hex::encode([8u8; 32]),
                ..cp.clone()
            },
            Checkpoint {
                subject: "audit.credential.u2".into(),
                ..cp.clone()
            },
            Checkpoint {
                ts_ms: 1,
                ..cp.clone()
            },
            Checkpoint {
                key_id: 2,
                ..cp.clone()
            },
        ] {
            assert!(!forged.verify(&vault), "{forged:?}");
        }
        assert!(!cp.verify(&Vault::new(1, &[6u8; 32])));
    }
}
