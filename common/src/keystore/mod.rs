//! The vault's database side: master-key bookkeeping and sealing/opening account rows.
//!
//! - [`sync_ring`]: at startup, records every ring key's fingerprint in `master_keys`
//!   (refusing different material under a known id) and loads which keys are retired.
//! - [`seal_account`] / [`open_account`]: one credential write under a fresh data key,
//!   and reading it back. Every wrap is first counted against its master key
//!   ([`reserve_encryption`]); at the limit the wrap is refused until a rotation.
//! - [`reseal_account`]: rewriting an account with new values (SmartAPI session tokens) at
//!   the next generation, compare-and-set.
//! - [`status`], [`retire`] and [`rotate()`] (in `rotate`): online key rotation.
//! - [`generations`]: the generation register outside the database, which refuses a row
//!   rolled back to an older generation (`pinnacle_audit::register`, under its old path).

mod error;
mod rotate;
mod row_key;

use std::collections::BTreeMap;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, Set,
};
use secrecy::{ExposeSecret, SecretString};

pub use error::KeyStoreError;
pub use pinnacle_audit::register as generations;
pub use pinnacle_audit::register::Register;
pub use rotate::{rotate, rotate_reporting, RotateReport};
pub use row_key::{account_data_key, reserve_encryption};

use crate::crypto::{CredentialAad, DataKey, DecryptError, RowIdentity, Vault};
use crate::entities::{broker_accounts, master_keys};

/// Records the ring's keys in `master_keys` and loads which of them are retired.
pub async fn sync_ring(db: &impl ConnectionTrait, vault: &Vault) -> Result<(), KeyStoreError> {
    for (id, fingerprint) in vault.key_fingerprints() {
        match master_keys::Entity::find_by_id(i64::from(id))
            .one(db)
            .await?
        {
            Some(row) if row.fingerprint != fingerprint => {
                return Err(KeyStoreError::FingerprintMismatch(id));
            }
            Some(row) => {
                if row.retired_at.is_some() {
                    vault.retire(id);
                }
            }
            None => {
                let inserted = master_keys::ActiveModel {
                    id: Set(i64::from(id)),
                    fingerprint: Set(fingerprint.clone()),
                    encryptions: Set(0),
                    created_at: Set(Utc::now()),
                    retired_at: Set(None),
                }
                .insert(db)
                .await;
                // Another service may have inserted it concurrently; re-check it.
                if let Err(e) = inserted {
                    let again = master_keys::Entity::find_by_id(i64::from(id))
                        .one(db)
                        .await?;
                    match again {
                        Some(row) if row.fingerprint == fingerprint => {}
                        Some(_) => return Err(KeyStoreError::FingerprintMismatch(id)),
                        None => return Err(e.into()),
                    }
                }
            }
        }
    }
    let current = vault.current_key_id();
    let retired = master_keys::Entity::find_by_id(i64::from(current))
        .one(db)
        .await?
        .is_some_and(|row| row.retired_at.is_some());
    if retired {
        return Err(KeyStoreError::CurrentRetired(current));
    }
    Ok(())
}

/// One write's sealed credentials: the wrapped data key and each field's ciphertext.
#[derive(Debug)]
pub struct SealedAccount {
    /// The master key that wrapped the data key.
    pub master_key_id: u32,
    /// The wrapped data key; `None` when no field is set.
    pub data_key_enc: Option<String>,
    /// Ciphertext by field name.
    pub fields: BTreeMap<&'static str, String>,
}

impl SealedAccount {
    /// The row's credential columns from this write: every sealed field, the wrapped data
    /// key and its master key; fields not sealed become NULL. Other columns are left unset.
    pub fn into_columns(mut self) -> broker_accounts::ActiveModel {
        use broker_accounts::fields;
        let mut take = |field: &str| Set(self.fields.remove(field));
        broker_accounts::ActiveModel {
            api_key_enc: take(fields::API_KEY),
            client_code_enc: take(fields::CLIENT_CODE),
            secret_enc: take(fields::SECRET),
            totp_seed_enc: take(fields::TOTP_SEED),
            access_token_enc: take(fields::ACCESS_TOKEN),
            jwt_token_enc: take(fields::JWT_TOKEN),
            refresh_token_enc: take(fields::REFRESH_TOKEN),
            feed_token_enc: take(fields::FEED_TOKEN),
            master_key_id: Set(self
                .data_key_enc
                .as_ref()
                .map(|_| i64::from(self.master_key_id))),
            data_key_enc: Set(self.data_key_enc.take()),
            ..Default::default()
        }
    }
}

/// Seals `values` for `row` under a fresh data key wrapped by the current master key.
pub async fn seal_account(
    db: &impl ConnectionTrait,
    vault: &Vault,
    row: RowIdentity<'_>,
    values: &[(&'static str, &SecretString)],
) -> Result<SealedAccount, KeyStoreError> {
    let key_id = vault.current_key_id();
    if values.is_empty() {
        return Ok(SealedAccount {
            master_key_id: key_id,
            data_key_enc: None,
            fields: BTreeMap::new(),
        });
    }
    reserve_encryption(db, vault, key_id).await?;
    let data_key = DataKey::generate();
    let wrapped = vault.wrap(key_id, row, &data_key)?;
    let fields = values
        .iter()
        .map(|(field, value)| {
            let aad = CredentialAad {
                user_id: row.user_id,
                account_id: row.account_id,
                field,
                generation: row.generation,
            };
            (*field, data_key.seal(aad, value.expose_secret().as_bytes()))
        })
        .collect();
    Ok(SealedAccount {
        master_key_id: key_id,
        data_key_enc: Some(wrapped),
        fields,
    })
}

/// Replaces `account`'s credentials with `values` (every field it should hold afterwards)
/// at the next generation, under a fresh data key, with `session_expires_at`. The write is a
/// compare-and-set on the generation: `None` means another write came first (re-read and
/// retry). The caller audits the write first.
pub async fn reseal_account(
    db: &impl ConnectionTrait,
    vault: &Vault,
    account: &broker_accounts::Model,
    values: &[(&'static str, &SecretString)],
    session_expires_at: Option<chrono::DateTime<Utc>>,
) -> Result<Option<broker_accounts::Model>, KeyStoreError> {
    let generation = account.generation + 1;
    let row = RowIdentity {
        user_id: &account.user_id,
        account_id: &account.id,
        generation,
    };
    let sealed = seal_account(db, vault, row, values).await?;
    let update = broker_accounts::ActiveModel {
        session_expires_at: Set(session_expires_at),
        generation: Set(generation),
        updated_at: Set(Utc::now()),
        ..sealed.into_columns()
    };
    let updated = broker_accounts::Entity::update_many()
        .set(update)
        .filter(broker_accounts::Column::Id.eq(account.id.as_str()))
        .filter(broker_accounts::Column::Generation.eq(account.generation))
        .exec(db)
        .await?;
    if updated.rows_affected != 1 {
        return Ok(None);
    }
    Ok(broker_accounts::Entity::find_by_id(account.id.clone())
        .one(db)
        .await?)
}

/// Decrypts every set field of `account`; any failure is the one opaque [`DecryptError`].
pub fn open_account(
    vault: &Vault,
    account: &broker_accounts::Model,
) -> Result<BTreeMap<&'static str, SecretString>, DecryptError> {
    let set = account.fields_set();
    if set.is_empty() {
        return Ok(BTreeMap::new());
    }
    let data_key = account_data_key(vault, account)?;
    set.into_iter()
        .map(|field| {
            let blob = account.ciphertext(field).ok_or(DecryptError)?;
            let aad = CredentialAad {
                user_id: &account.user_id,
                account_id: &account.id,
                field,
                generation: account.generation,
            };
            Ok((field, data_key.open(aad, blob)?))
        })
        .collect()
}

/// One master key as `pinnacle keys status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyStatus {
    /// Key id.
    pub key_id: i64,
    /// Public fingerprint.
    pub fingerprint: String,
    /// Broker accounts whose data key it wraps.
    pub rows: u64,
    /// Encryptions made so far.
    pub encryptions: i64,
    /// Whether it is retired.
    pub retired: bool,
}

/// The master keys and how far rotation has come: what `pinnacle keys status` and
/// `GET /v1/keys` show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeysView {
    /// The key new data keys are wrapped under.
    pub current_key_id: u32,
    /// How many encryptions one key may make before it must be rotated.
    pub max_encryptions_per_key: i64,
    /// Every key the database knows, oldest first.
    pub keys: Vec<KeyStatus>,
}

/// The [`KeysView`] of `vault`'s ring and the keys `db` knows.
pub async fn overview(db: &impl ConnectionTrait, vault: &Vault) -> Result<KeysView, KeyStoreError> {
    Ok(KeysView {
        current_key_id: vault.current_key_id(),
        max_encryptions_per_key: vault.max_encryptions(),
        keys: status(db).await?,
    })
}

/// Every known master key with its row and encryption counts.
pub async fn status(db: &impl ConnectionTrait) -> Result<Vec<KeyStatus>, KeyStoreError> {
    let mut out = Vec::new();
    for key in master_keys::Entity::find()
        .order_by_asc(master_keys::Column::Id)
        .all(db)
        .await?
    {
        out.push(KeyStatus {
            rows: rows_on(db, key.id).await?,
            key_id: key.id,
            fingerprint: key.fingerprint,
            encryptions: key.encryptions,
            retired: key.retired_at.is_some(),
        });
    }
    Ok(out)
}

async fn rows_on(db: &impl ConnectionTrait, key_id: i64) -> Result<u64, DbErr> {
    broker_accounts::Entity::find()
        .filter(broker_accounts::Column::MasterKeyId.eq(key_id))
        .count(db)
        .await
}

/// Retires `key_id`: refused while it is current or any row still uses it.
pub async fn retire(
    db: &impl ConnectionTrait,
    vault: &Vault,
    key_id: u32,
) -> Result<(), KeyStoreError> {
    if vault.current_key_id() == key_id {
        return Err(KeyStoreError::IsCurrent(key_id));
    }
    let rows = rows_on(db, i64::from(key_id)).await?;
    if rows > 0 {
        return Err(KeyStoreError::InUse { key_id, rows });
    }
    let updated = master_keys::Entity::update_many()
        .col_expr(master_keys::Column::RetiredAt, Expr::value(Utc::now()))
        .filter(master_keys::Column::Id.eq(i64::from(key_id)))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(KeyStoreError::Unusable(key_id));
    }
    // A write that raced the count may have wrapped under it; undo the retirement if so.
    let rows = rows_on(db, i64::from(key_id)).await?;
    if rows > 0 {
        master_keys::Entity::update_many()
            .col_expr(
                master_keys::Column::RetiredAt,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .filter(master_keys::Column::Id.eq(i64::from(key_id)))
            .exec(db)
            .await?;
        return Err(KeyStoreError::InUse { key_id, rows });
    }
    vault.retire(key_id);
    tracing::info!(key_id, "master key retired");
    Ok(())
}
