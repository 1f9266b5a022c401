//! Loading a user's broker account and decrypting its credentials.
//!
//! [`decrypt`] is only ever called after the audit event for the access has been stored;
//! `handler` enforces that order.

use pinnacle_common::broker::BrokerCredentials;
use pinnacle_common::crypto::{DecryptError, Vault};
use pinnacle_common::entities::broker_accounts::{self, fields};
use pinnacle_common::keystore;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

/// Why no account could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No account matched.
    #[error("{0}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// The user's account named `label`, or their only account when no label is given.
pub async fn load_account(
    db: &impl ConnectionTrait,
    user_id: &str,
    label: Option<&str>,
) -> Result<broker_accounts::Model, AccountError> {
    let mut query = broker_accounts::Entity::find()
        .filter(broker_accounts::Column::UserId.eq(user_id))
        .order_by_asc(broker_accounts::Column::CreatedAt);
    if let Some(label) = label {
        query = query.filter(broker_accounts::Column::Label.eq(label));
    }
    let mut accounts = query.all(db).await?;
    match (accounts.len(), label) {
        (0, Some(label)) => Err(AccountError::NotFound(format!(
            "no broker account labelled {label:?}"
        ))),
        (0, None) => Err(AccountError::NotFound(
            "no broker account configured".into(),
        )),
        (1, _) => Ok(accounts.remove(0)),
        (_, _) => Err(AccountError::NotFound(
            "several broker accounts: name one with \"account\"".into(),
        )),
    }
}

/// Decrypts every set field of `account` (its data key first, then each field).
pub fn decrypt(
    vault: &Vault,
    account: &broker_accounts::Model,
) -> Result<BrokerCredentials, DecryptError> {
    let mut open = keystore::open_account(vault, account)?;
    Ok(BrokerCredentials {
        api_key: open.remove(fields::API_KEY),
        client_code: open.remove(fields::CLIENT_CODE),
        secret: open.remove(fields::SECRET),
        totp_seed: open.remove(fields::TOTP_SEED),
        access_token: open.remove(fields::ACCESS_TOKEN),
        jwt_token: open.remove(fields::JWT_TOKEN),
        refresh_token: open.remove(fields::REFRESH_TOKEN),
        feed_token: open.remove(fields::FEED_TOKEN),
    })
}
