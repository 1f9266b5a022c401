//! A row's keys: counting a wrap against its master key's encryption budget, and unwrapping
//! a broker account row's data key with the identity it is bound to. Shared by sealing
//! (`keystore`) and rotation (`keystore::rotate`), and imports neither.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::error::KeyStoreError;
use crate::crypto::{DataKey, DecryptError, RowIdentity, Vault};
use crate::entities::{broker_accounts, master_keys};

/// Counts one encryption against `key_id`, refusing once the vault's limit is reached.
pub async fn reserve_encryption(
    db: &impl ConnectionTrait,
    vault: &Vault,
    key_id: u32,
) -> Result<(), KeyStoreError> {
    let limit = vault.max_encryptions();
    let updated = master_keys::Entity::update_many()
        .col_expr(
            master_keys::Column::Encryptions,
            Expr::col(master_keys::Column::Encryptions).add(1),
        )
        .filter(master_keys::Column::Id.eq(i64::from(key_id)))
        .filter(master_keys::Column::Encryptions.lt(limit))
        .filter(master_keys::Column::RetiredAt.is_null())
        .exec(db)
        .await?;
    if updated.rows_affected == 1 {
        // Wraps are rare (one per credential write or rewrap), so checking is cheap.
        if let Some(row) = master_keys::Entity::find_by_id(i64::from(key_id))
            .one(db)
            .await?
        {
            if row.encryptions >= limit / 2 {
                tracing::warn!(
                    key_id,
                    encryptions = row.encryptions,
                    limit,
                    "master key past half its encryption budget; rotate soon"
                );
            }
        }
        return Ok(());
    }
    match master_keys::Entity::find_by_id(i64::from(key_id))
        .one(db)
        .await?
    {
        Some(row) if row.retired_at.is_none() && row.encryptions >= limit => {
            tracing::error!(key_id, limit, "master key exhausted; rotation required");
            Err(KeyStoreError::Exhausted(key_id))
        }
        _ => Err(KeyStoreError::Unusable(key_id)),
    }
}

pub(super) fn identity(account: &broker_accounts::Model) -> RowIdentity<'_> {
    RowIdentity {
        user_id: &account.user_id,
        account_id: &account.id,
        generation: account.generation,
    }
}

/// Unwraps `account`'s data key, with the key id and identity taken from the row.
pub fn account_data_key(
    vault: &Vault,
    account: &broker_accounts::Model,
) -> Result<DataKey, DecryptError> {
    let (Some(wrapped), Some(key_id)) = (&account.data_key_enc, account.master_key_id) else {
        return Err(DecryptError);
    };
    let key_id = u32::try_from(key_id).map_err(|_| DecryptError)?;
    vault.unwrap(key_id, identity(account), wrapped)
}
