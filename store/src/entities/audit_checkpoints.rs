//! `audit_checkpoints`: signed audit-chain checkpoints kept outside NATS, so a truncated
//! or rewritten AUDIT stream is still caught by `pinnacle audit verify`.

use sea_orm::entity::prelude::*;

/// One checkpoint: chain `subject` had link `position` with `hash` at stream sequence `seq`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_checkpoints")]
pub struct Model {
    /// UUIDv7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The chain subject, `audit.credential.<user_id>`.
    pub subject: String,
    /// The stream sequence of the checkpointed link.
    pub stream_seq: i64,
    /// Its position in the chain, from 1.
    pub position: i64,
    /// Its hash, 64 hex characters.
    pub hash: String,
    /// The master key id the checkpoint key was derived from.
    pub key_id: i64,
    /// When the checkpoint was made, ms since the epoch.
    pub ts_ms: i64,
    /// HMAC-SHA256 over the fields above with the checkpoint key, hex.
    pub signature: String,
}

/// Relations: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
