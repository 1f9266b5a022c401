//! The demo user `pinnacle dev` makes sure of: the user, its paper account (stored through
//! the user API's own audited write) and an API token kept across restarts.

use std::path::Path;

use anyhow::Context as _;
use pinnacle_common::audit::AuditLog;
use pinnacle_common::crypto::Vault;
use pinnacle_common::entities::{broker_accounts, users};
use pinnacle_user_api::accounts::{put_account, CredentialStore, PutAccount, Writer};
use pinnacle_user_api::api_tokens::{issue_token, TokenSpec};
use pinnacle_user_api::users::create_user;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use secrecy::{ExposeSecret, SecretString};

use super::settings::write_private;

/// The demo user's name.
pub const DEMO_USER: &str = "demo";

/// The demo user and its API token.
#[derive(Debug)]
pub struct DemoUser {
    /// User id.
    pub user_id: String,
    /// An API token with the trade and read scopes.
    pub token: SecretString,
}

/// Makes sure the demo user and its paper account exist, and gives it a token (the one in
/// `token_file` while it stays valid).
pub async fn ensure_demo_user(
    db: &DatabaseConnection,
    vault: &Vault,
    audit: &AuditLog,
    token_file: &Path,
) -> anyhow::Result<DemoUser> {
    let existing = users::Entity::find()
        .filter(users::Column::Name.eq(DEMO_USER))
        .one(db)
        .await?;
    let user = match existing {
        Some(user) => user,
        None => create_user(db, DEMO_USER).await?,
    };
    // (Re)store the paper account when it is missing or predates envelope encryption
    // (a data dir from an older build has no wrapped data key).
    let account = broker_accounts::Entity::find()
        .filter(broker_accounts::Column::UserId.eq(user.id.as_str()))
        .filter(broker_accounts::Column::Label.eq("paper"))
        .one(db)
        .await?;
    if account.is_none_or(|a| a.data_key_enc.is_none()) {
        let paper = PutAccount::basic(
            "paper",
            SecretString::from("paper-demo-api-key"),
            SecretString::from("PAPERDEMO"),
            SecretString::from("0000"),
        );
        put_demo_account(db, vault, audit, &user.id, "paper", &paper).await?;
    }
    // With a second (simulator) account, requests that name none still go to paper.
    if user.default_account.is_none() {
        let mut active: users::ActiveModel = user.clone().into();
        active.default_account = Set(Some("paper".into()));
        active.update(db).await?;
        let change = pinnacle_common::invalidate::Invalidation::Accounts {
            user_id: user.id.clone(),
        };
        pinnacle_common::invalidate::announce(&audit.client(), &change).await;
    }
    let token = demo_token(db, vault, &user.id, token_file).await?;
    Ok(DemoUser {
        user_id: user.id,
        token,
    })
}

/// Stores (or replaces) one of the demo user's broker accounts through the user API's own
/// audited write, as `pinnacle-dev`.
pub async fn put_demo_account(
    db: &DatabaseConnection,
    vault: &Vault,
    audit: &AuditLog,
    user_id: &str,
    label: &str,
    account: &PutAccount,
) -> anyhow::Result<()> {
    let register =
        pinnacle_common::keystore::Register::new(audit.client(), std::time::Duration::from_secs(5));
    let writer = Writer {
        actor: "pinnacle-dev".into(),
        token_id: None,
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    let store = CredentialStore {
        db,
        vault,
        audit,
        register: &register,
    };
    put_account(store, &writer, user_id, label, account)
        .await
        .with_context(|| format!("storing the demo user's {label} account"))?;
    Ok(())
}

/// The demo user's token: the one in `token_file` while it is still valid for this user
/// (so restarts do not pile up never-expiring tokens), else a fresh one, saved there.
async fn demo_token(
    db: &DatabaseConnection,
    vault: &Vault,
    user_id: &str,
    token_file: &Path,
) -> anyhow::Result<SecretString> {
    if let Ok(saved) = std::fs::read_to_string(token_file) {
        let saved = saved.trim();
        let owner =
            pinnacle_common::auth::authenticate(db, vault.token_pepper(), Some(saved)).await;
        if owner.is_ok_and(|p| p.user_id == user_id) {
            return Ok(SecretString::from(saved.to_string()));
        }
    }
    let (_, token) = issue_token(db, vault, user_id, &TokenSpec::full()).await?;
    write_private(token_file, token.expose_secret())?;
    Ok(token)
}
