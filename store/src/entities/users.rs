//! `users`: the people who trade.

use sea_orm::entity::prelude::*;

/// A user row. `Debug` hides the password hash.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// UUID.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Unique display and login name.
    #[sea_orm(unique)]
    pub name: String,
    /// Whether this user may administer others.
    pub is_admin: bool,
    /// Argon2id PHC string for password login; `None` means token-only.
    pub password_hash: Option<String>,
    /// When the user was created.
    pub created_at: DateTimeUtc,
    /// The label of the broker account used when a request names none and the user has
    /// several; `None`: such a request is refused with `AMBIGUOUS_ACCOUNT`.
    pub default_account: Option<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("users::Model")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("is_admin", &self.is_admin)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[REDACTED]"),
            )
            .field("created_at", &self.created_at)
            .field("default_account", &self.default_account)
            .finish()
    }
}

/// Relations: none from this side. `api_tokens` and `broker_accounts` each declare theirs
/// to `users` (`belongs_to`), so the entity files import one way only.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
