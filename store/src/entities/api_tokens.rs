//! `api_tokens`: keyed hashes of bearer tokens (see `pinnacle_common::tokens`).

use sea_orm::entity::prelude::*;

/// An API token row. The token itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    /// The id embedded in the token, for O(1) lookup.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// HMAC-SHA256(pepper, secret), hex.
    pub secret_hash: String,
    /// Comma-separated scopes, e.g. `trade,read`.
    pub scopes: String,
    /// When it was issued.
    pub created_at: DateTimeUtc,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTimeUtc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTimeUtc>,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner.
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id"
    )]
    User,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// Whether the token may be used at `now`.
    pub fn is_active(&self, now: DateTimeUtc) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|exp| exp > now)
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.split(',').any(|s| s.trim() == scope)
    }
}
