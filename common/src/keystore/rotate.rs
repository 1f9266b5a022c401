//! Online rotation: rewrap every data key under the current master key.
//!
//! Each row is rewrapped with a compare-and-set: the update applies only if the row still
//! has the generation and wrapped key that were read. A credential write that lands in
//! between wins (it wrapped its own fresh data key under the current key, or the next pass
//! picks it up), so no update is ever lost. Field ciphertexts are never touched, and old
//! keys keep decrypting throughout, so orders keep flowing. Each rewrap is audited before
//! the data key is unwrapped; a failed unwrap is audited too.

use std::collections::BTreeSet;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::error::KeyStoreError;
use super::row_key::{account_data_key, identity, reserve_encryption};
use crate::audit::AuditLog;
use crate::crypto::Vault;
use crate::entities::broker_accounts;
use crate::model::{AuditEvent, AuditOutcome, DecryptReason};
use crate::telemetry;

/// The audit purpose of a rewrap.
pub const PURPOSE_REWRAP: &str = "keys.rewrap";
/// Rows read per batch, so a large table is never held in memory at once.
const BATCH: u64 = 500;
/// Consecutive batches without progress (every row raced a write) before giving up.
const MAX_STALLED_PASSES: usize = 20;

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotateReport {
    /// The key everything is now wrapped under.
    pub current_key_id: u32,
    /// Rows rewrapped.
    pub rewrapped: u64,
    /// Compare-and-set misses (a concurrent write), retried on the next pass.
    pub raced: u64,
    /// Rows whose data key did not decrypt (left as they are, audited).
    pub failed: Vec<String>,
}

fn event(row: &broker_accounts::Model, outcome: AuditOutcome) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        ts_ms: Utc::now().timestamp_millis(),
        actor: "pinnacle-keys".into(),
        token_id: None,
        user_id: row.user_id.clone(),
        broker_account_id: row.id.clone(),
        fields: vec!["data_key".into()],
        purpose: PURPOSE_REWRAP.into(),
        request_id: uuid::Uuid::now_v7().to_string(),
        trace_id: telemetry::current_trace_id(),
        outcome,
        generation: Some(row.generation),
        reason: (outcome == AuditOutcome::DecryptFailed).then_some(DecryptReason::Undecryptable),
    }
}

/// Rewraps every data key not yet under the vault's current key.
pub async fn rotate(
    db: &impl ConnectionTrait,
    vault: &Vault,
    audit: &AuditLog,
) -> Result<RotateReport, KeyStoreError> {
    rotate_reporting(db, vault, audit, |_, _| {}).await
}

/// [`rotate`], calling `progress(done, total)` after each account: `total` is how many
/// needed rewrapping when it started, `done` how many were rewrapped or failed since. At
/// the end every order worker is told to drop its cached account rows
/// ([`crate::invalidate::Invalidation::All`]).
pub async fn rotate_reporting(
    db: &impl ConnectionTrait,
    vault: &Vault,
    audit: &AuditLog,
    mut progress: impl FnMut(u64, u64),
) -> Result<RotateReport, KeyStoreError> {
    let current = vault.current_key_id();
    let total = broker_accounts::Entity::find()
        .filter(broker_accounts::Column::MasterKeyId.is_not_null())
        .filter(broker_accounts::Column::MasterKeyId.ne(i64::from(current)))
        .count(db)
        .await?;
    let mut report = RotateReport {
        current_key_id: current,
        ..RotateReport::default()
    };
    let mut failed = BTreeSet::new();
    let mut stalled = 0;
    while stalled < MAX_STALLED_PASSES {
        let rows = broker_accounts::Entity::find()
            .filter(broker_accounts::Column::MasterKeyId.is_not_null())
            .filter(broker_accounts::Column::MasterKeyId.ne(i64::from(current)))
            .filter(broker_accounts::Column::Id.is_not_in(failed.iter().cloned()))
            .order_by_asc(broker_accounts::Column::Id)
            .limit(BATCH)
            .all(db)
            .await?;
        if rows.is_empty() {
            break;
        }
        let before = report.rewrapped + failed.len() as u64;
        for row in rows {
            match rewrap(db, vault, audit, current, &row).await? {
                Rewrap::Done => report.rewrapped += 1,
                Rewrap::Raced => report.raced += 1,
                Rewrap::Failed => {
                    failed.insert(row.id.clone());
                    continue;
                }
            }
            progress(report.rewrapped + failed.len() as u64, total);
        }
        // A pass in which every row raced a write made no progress; give up after a few.
        if report.rewrapped + failed.len() as u64 == before {
            stalled += 1;
        } else {
            stalled = 0;
        }
    }
    report.failed = failed.into_iter().collect();
    tracing::info!(
        current_key_id = current,
        rewrapped = report.rewrapped,
        raced = report.raced,
        failed = report.failed.len(),
        "key rotation finished"
    );
    // Order workers keep account rows for up to a second: have them read the rewrapped
    // ones now, so none opens a data key under the old master key once it is retired.
    crate::invalidate::announce(&audit.client(), &crate::invalidate::Invalidation::All).await;
    Ok(report)
}

/// What rewrapping one row came to.
enum Rewrap {
    /// The row's data key is wrapped under the current master key now.
    Done,
    /// A write changed the row first; a later pass takes it again.
    Raced,
    /// Its data key did not decrypt (audited as such); it is left as it is.
    Failed,
}

/// Audits the access, then rewraps `row`'s data key under master key `current` with a
/// compare-and-set on the row's generation and wrapped key.
async fn rewrap(
    db: &impl ConnectionTrait,
    vault: &Vault,
    audit: &AuditLog,
    current: u32,
    row: &broker_accounts::Model,
) -> Result<Rewrap, KeyStoreError> {
    audit.record(&event(row, AuditOutcome::Authorized)).await?;
    let Ok(data_key) = account_data_key(vault, row) else {
        audit
            .record(&event(row, AuditOutcome::DecryptFailed))
            .await?;
        tracing::warn!(account_id = %row.id, "data key did not decrypt during rotation");
        return Ok(Rewrap::Failed);
    };
    reserve_encryption(db, vault, current).await?;
    let rewrapped = vault.wrap(current, identity(row), &data_key)?;
    let updated = broker_accounts::Entity::update_many()
        .col_expr(broker_accounts::Column::DataKeyEnc, Expr::value(rewrapped))
        .col_expr(
            broker_accounts::Column::MasterKeyId,
            Expr::value(i64::from(current)),
        )
        .filter(broker_accounts::Column::Id.eq(row.id.as_str()))
        .filter(broker_accounts::Column::Generation.eq(row.generation))
        .filter(broker_accounts::Column::DataKeyEnc.eq(row.data_key_enc.clone()))
        .exec(db)
        .await?;
    Ok(if updated.rows_affected == 1 {
        Rewrap::Done
    } else {
        Rewrap::Raced
    })
}
