//! [`put_account`]: sealing, auditing and storing one account's credentials, in that
//! order (audit before the row changes; a compare-and-set on the generation).

use chrono::{DateTime, Utc};
use pinnacle_common::audit::AuditLog;
use pinnacle_common::crypto::{RowIdentity, Vault};
use pinnacle_common::entities::broker_accounts::{self, fields};
use pinnacle_common::invalidate::{self, Invalidation};
use pinnacle_common::keystore::{self, KeyStoreError, Register};
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::{db, telemetry};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set, SqlErr,
};
use secrecy::SecretString;
use tracing::Instrument as _;

use super::request::PutAccount;

/// Who is writing, for the audit trail.
#[derive(Debug, Clone)]
pub struct Writer {
    /// Actor name (`admin` or a user id).
    pub actor: String,
    /// Token id used, if any.
    pub token_id: Option<String>,
    /// Request id.
    pub request_id: String,
}

/// Why credentials could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutAccountError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
    /// The audit event could not be stored, so nothing was written.
    #[error("the audit log is unavailable, so the credentials were not stored")]
    Audit(#[from] pinnacle_common::audit::AuditError),
    /// The vault refused (e.g. the master key needs rotating).
    #[error(transparent)]
    Vault(#[from] KeyStoreError),
    /// Another write changed the account first; retry.
    #[error("the account changed while it was being written; retry")]
    Conflict,
}

/// What storing credentials goes through: the database, the vault that seals them, the
/// audit log that records the write before it happens, and the generation register.
#[derive(Debug, Clone, Copy)]
pub struct CredentialStore<'a> {
    /// Where the account rows live.
    pub db: &'a DatabaseConnection,
    /// Seals the credentials under a fresh data key.
    pub vault: &'a Vault,
    /// Records the write first.
    pub audit: &'a AuditLog,
    /// Advanced after the commit, so a rolled-back row is noticed.
    pub register: &'a Register,
}

/// Creates or replaces `label`'s credentials for `user_id`, audited before the write; the
/// generation register is advanced after it (a failure there is logged: the next decrypt
/// advances it), and the change is announced to the order workers' caches.
pub async fn put_account(
    store: CredentialStore<'_>,
    writer: &Writer,
    user_id: &str,
    label: &str,
    body: &PutAccount,
) -> Result<broker_accounts::Model, PutAccountError> {
    let written = write_account(store, writer, user_id, label, body).await?;
    let change = Invalidation::Accounts {
        user_id: user_id.to_string(),
    };
    invalidate::announce(&store.audit.client(), &change).await;
    Ok(written)
}

/// [`put_account`] without announcing the change: what a write whose announcement was
/// lost leaves behind (order workers then see it through the generation register, or
/// within their cache's lifetime). Tests use it to check exactly that.
pub async fn write_account(
    store: CredentialStore<'_>,
    writer: &Writer,
    user_id: &str,
    label: &str,
    body: &PutAccount,
) -> Result<broker_accounts::Model, PutAccountError> {
    let CredentialStore {
        db,
        vault,
        audit,
        register,
    } = store;
    let existing = broker_accounts::Entity::find()
        .filter(broker_accounts::Column::UserId.eq(user_id))
        .filter(broker_accounts::Column::Label.eq(label))
        .one(db)
        .instrument(db::span(db, "SELECT", "broker_accounts"))
        .await?;
    let now = Utc::now();
    let (id, generation, created_at) = match &existing {
        Some(row) => (row.id.clone(), row.generation + 1, row.created_at),
        None => (uuid::Uuid::new_v4().to_string(), 1, now),
    };
    let values: Vec<(&'static str, &SecretString)> = fields::ALL
        .into_iter()
        .filter_map(|f| body.field(f).map(|v| (f, v)))
        .collect();
    let row_id = RowIdentity {
        user_id,
        account_id: &id,
        generation,
    };
    let sealed = keystore::seal_account(db, vault, row_id, &values).await?;
    record_write(audit, writer, user_id, &id, generation, body, now).await?;
    let row = broker_accounts::ActiveModel {
        id: Set(id.clone()),
        user_id: Set(user_id.to_string()),
        label: Set(label.to_string()),
        broker: Set(body.broker.clone()),
        session_expires_at: Set(body.session_expiry()),
        generation: Set(generation),
        created_at: Set(created_at),
        updated_at: Set(now),
        static_ip: Set(body.static_ip.clone()),
        egress_proxy: Set(body.egress_proxy.clone()),
        algo_id: Set(body.algo_id.clone()),
        login_lease_until: Set(None),
        login_lease_owner: Set(None),
        // A write revives an account deleted while orders referred to it.
        erased_at: Set(None),
        ..sealed.into_columns()
    };
    let previous = existing.map(|old| old.generation);
    let written = store_row(db, row, &id, previous).await?;
    register
        .advance_after_commit(&written.id, written.generation)
        .await;
    Ok(written)
}

/// Records the `credentials.write` event for generation `generation` of account `id`:
/// which fields the body sets, never their values.
async fn record_write(
    audit: &AuditLog,
    writer: &Writer,
    user_id: &str,
    id: &str,
    generation: i64,
    body: &PutAccount,
    now: DateTime<Utc>,
) -> Result<(), PutAccountError> {
    let written: Vec<String> = fields::ALL
        .into_iter()
        .filter(|f| body.field(f).is_some())
        .map(String::from)
        .collect();
    audit
        .record(&AuditEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            ts_ms: now.timestamp_millis(),
            actor: writer.actor.clone(),
            token_id: writer.token_id.clone(),
            user_id: user_id.to_string(),
            broker_account_id: id.to_string(),
            fields: written,
            purpose: "credentials.write".into(),
            request_id: writer.request_id.clone(),
            trace_id: telemetry::current_trace_id(),
            outcome: AuditOutcome::Written,
            generation: Some(generation),
            reason: None,
        })
        .await?;
    Ok(())
}

/// Inserts the row (`previous` is `None`) or replaces the one still at generation
/// `previous`; a racing write makes this one [`PutAccountError::Conflict`].
async fn store_row(
    db: &DatabaseConnection,
    row: broker_accounts::ActiveModel,
    id: &str,
    previous: Option<i64>,
) -> Result<broker_accounts::Model, PutAccountError> {
    let Some(previous) = previous else {
        // Two first writes of the same label race on the unique key: the loser conflicts.
        return match row
            .insert(db)
            .instrument(db::span(db, "INSERT", "broker_accounts"))
            .await
        {
            Ok(model) => Ok(model),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Err(PutAccountError::Conflict)
            }
            Err(e) => Err(e.into()),
        };
    };
    // Compare-and-set on the generation: a concurrent write makes this one a conflict.
    let updated = broker_accounts::Entity::update_many()
        .set(row)
        .filter(broker_accounts::Column::Id.eq(id))
        .filter(broker_accounts::Column::Generation.eq(previous))
        .exec(db)
        .instrument(db::span(db, "UPDATE", "broker_accounts"))
        .await?;
    if updated.rows_affected != 1 {
        return Err(PutAccountError::Conflict);
    }
    broker_accounts::Entity::find_by_id(id.to_string())
        .one(db)
        .instrument(db::span(db, "SELECT", "broker_accounts"))
        .await?
        .ok_or(PutAccountError::Conflict)
}
