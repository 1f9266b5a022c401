//! `broker_accounts`: a user's broker accounts with their encrypted credentials.
//!
//! Each `*_enc` column holds a `pinnacle_vault` ciphertext sealed under this write's data
//! key and bound to this row's user id, account id, column name and `generation`. The data
//! key itself is in `data_key_enc`, wrapped under master key `master_key_id`.

use sea_orm::entity::prelude::*;

/// A broker account row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "broker_accounts")]
pub struct Model {
    /// UUID.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// The owner's name for it, unique per user, e.g. `main`.
    pub label: String,
    /// `paper` or `angel_one`.
    pub broker: String,
    /// Encrypted SmartAPI key.
    pub api_key_enc: Option<String>,
    /// Encrypted client code.
    pub client_code_enc: Option<String>,
    /// Encrypted PIN or secret.
    pub secret_enc: Option<String>,
    /// Encrypted TOTP seed.
    pub totp_seed_enc: Option<String>,
    /// Encrypted session token.
    pub access_token_enc: Option<String>,
    /// Encrypted SmartAPI session JWT.
    pub jwt_token_enc: Option<String>,
    /// Encrypted SmartAPI refresh token.
    pub refresh_token_enc: Option<String>,
    /// Encrypted SmartAPI feed token.
    pub feed_token_enc: Option<String>,
    /// When the session tokens expire (not secret).
    pub session_expires_at: Option<DateTimeUtc>,
    /// This write's data key, wrapped under `master_key_id`; `None` with no credentials.
    pub data_key_enc: Option<String>,
    /// The master key that wrapped `data_key_enc`.
    pub master_key_id: Option<i64>,
    /// Bumped on every credential write; part of every ciphertext's associated data.
    pub generation: i64,
    /// When it was created.
    pub created_at: DateTimeUtc,
    /// When its credentials were last written.
    pub updated_at: DateTimeUtc,
    /// The static IP registered with Angel One for this account's API key: live orders
    /// must come from it (not secret).
    pub static_ip: Option<String>,
    /// An HTTP(S) or SOCKS5 proxy whose egress is `static_ip`, when the host cannot bind
    /// that address itself (no credentials in the URL).
    pub egress_proxy: Option<String>,
    /// The exchange-issued algo id the account's orders are tagged with (the exchange's
    /// generic id below 10 orders per second, a registered one above).
    pub algo_id: Option<String>,
    /// Until when a worker holds the SmartAPI login lease.
    pub login_lease_until: Option<DateTimeUtc>,
    /// Which worker holds it.
    pub login_lease_owner: Option<String>,
    /// When the account was deleted while orders still referred to it: the row is kept for
    /// them with every credential erased, and is no longer one of the user's accounts
    /// (writing its label again revives it).
    pub erased_at: Option<DateTimeUtc>,
}

/// The names of the encrypted fields, as they appear in associated data and audit events.
pub mod fields {
    /// SmartAPI key.
    pub const API_KEY: &str = "api_key";
    /// Client code.
    pub const CLIENT_CODE: &str = "client_code";
    /// PIN or secret.
    pub const SECRET: &str = "secret";
    /// TOTP seed.
    pub const TOTP_SEED: &str = "totp_seed";
    /// Session token.
    pub const ACCESS_TOKEN: &str = "access_token";
    /// SmartAPI session JWT.
    pub const JWT_TOKEN: &str = "jwt_token";
    /// SmartAPI refresh token.
    pub const REFRESH_TOKEN: &str = "refresh_token";
    /// SmartAPI feed token.
    pub const FEED_TOKEN: &str = "feed_token";
    /// All of them, in column order.
    pub const ALL: [&str; 8] = [
        API_KEY,
        CLIENT_CODE,
        SECRET,
        TOTP_SEED,
        ACCESS_TOKEN,
        JWT_TOKEN,
        REFRESH_TOKEN,
        FEED_TOKEN,
    ];
}

impl Model {
    /// The stored ciphertext of a field, by its name in [`fields`].
    pub fn ciphertext(&self, field: &str) -> Option<&str> {
        match field {
            fields::API_KEY => self.api_key_enc.as_deref(),
            fields::CLIENT_CODE => self.client_code_enc.as_deref(),
            fields::SECRET => self.secret_enc.as_deref(),
            fields::TOTP_SEED => self.totp_seed_enc.as_deref(),
            fields::ACCESS_TOKEN => self.access_token_enc.as_deref(),
            fields::JWT_TOKEN => self.jwt_token_enc.as_deref(),
            fields::REFRESH_TOKEN => self.refresh_token_enc.as_deref(),
            fields::FEED_TOKEN => self.feed_token_enc.as_deref(),
            _ => None,
        }
    }

    /// The names of the fields that hold a value.
    pub fn fields_set(&self) -> Vec<&'static str> {
        fields::ALL
            .into_iter()
            .filter(|f| self.ciphertext(f).is_some())
            .collect()
    }
}

impl Entity {
    /// `user_id`'s accounts: every row of theirs but the erased ones ([`Model::erased_at`]),
    /// which only old orders still refer to.
    pub fn of_user(user_id: &str) -> Select<Entity> {
        Self::find()
            .filter(Column::UserId.eq(user_id))
            .filter(Column::ErasedAt.is_null())
    }
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
