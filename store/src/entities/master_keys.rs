//! `master_keys`: what the database knows about each master key id (never the key).
//!
//! The row pins the key's public fingerprint, so a ring that brings different material
//! under a known id is refused at startup. `encryptions` counts the data keys wrapped
//! under it; at the vault's limit further wraps are refused until the key is rotated.

use sea_orm::entity::prelude::*;

/// A master key row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "master_keys")]
pub struct Model {
    /// The key id carried by every ciphertext it wrapped.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    /// 16 hex characters derived from the key (HKDF), safe to show.
    pub fingerprint: String,
    /// Data keys wrapped under this key so far (random-nonce budget).
    pub encryptions: i64,
    /// When the ring first presented it.
    pub created_at: DateTimeUtc,
    /// When it was retired (it no longer unwraps anything), if it was.
    pub retired_at: Option<DateTimeUtc>,
}

/// Relations: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
