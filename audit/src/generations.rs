//! Rolled-back broker accounts: rows whose credential generation is older than the
//! generation register (or, where the register has no entry, the audit trail) says was
//! written. `pinnacle audit verify` reports each as a problem.
//!
//! The audit trail's witness is every `written` event that carries a generation
//! (`credentials.write`, `session.write`, `credentials.delete`): the highest one per
//! account. Those events are recorded *before* the row is written, so a write that failed
//! after its event (a database error) leaves the trail one generation ahead of the row
//! until the account's next write; the register, advanced only after a commit, has no such
//! gap. So the register decides wherever it has an entry, and the trail stands in only for
//! accounts the register does not know (an entry lost with its bucket).

use std::collections::HashMap;

use async_nats::jetstream;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde::Serialize;

use crate::register::{self, RegisterError};
use pinnacle_protocol::model::{AuditEvent, AuditOutcome};
use pinnacle_protocol::subjects;
use pinnacle_store::entities::broker_accounts;

/// The highest generation each account's audit trail records as written.
#[derive(Debug, Default, Clone)]
pub struct WrittenGenerations {
    /// Generation by broker account id.
    by_account: HashMap<String, i64>,
}

impl WrittenGenerations {
    /// Takes note of one audit event (only `written` events with a generation count).
    pub fn note(&mut self, event: &AuditEvent) {
        let (AuditOutcome::Written, Some(generation)) = (event.outcome, event.generation) else {
            return;
        };
        let slot = self
            .by_account
            .entry(event.broker_account_id.clone())
            .or_insert(generation);
        *slot = (*slot).max(generation);
    }

    /// The highest generation written for `account_id`, if the trail records one.
    pub fn get(&self, account_id: &str) -> Option<i64> {
        self.by_account.get(account_id).copied()
    }
}

/// Which record says the row is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Witness {
    /// The generation register (the KV bucket).
    Register,
    /// The audit trail's `written` events (the register had no entry).
    AuditTrail,
}

/// One broker account row older than what was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolledBackRow {
    /// Broker account id.
    pub account_id: String,
    /// Owner.
    pub user_id: String,
    /// The row's generation.
    pub row_generation: i64,
    /// The generation that was written.
    pub written_generation: i64,
    /// Who says so.
    pub witness: Witness,
}

impl std::fmt::Display for RolledBackRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "broker account {} (user {}): row at generation {} but generation {} was written ({:?}): rolled back",
            self.account_id, self.user_id, self.row_generation, self.written_generation, self.witness
        )
    }
}

/// The rows of `rows` (account id, user id, generation) that are older than `register`
/// says, or than `audited` says where the register has no entry.
pub fn rolled_back(
    rows: &[(String, String, i64)],
    register: &HashMap<String, i64>,
    audited: &WrittenGenerations,
) -> Vec<RolledBackRow> {
    rows.iter()
        .filter_map(|(account_id, user_id, generation)| {
            let (written, witness) = match register.get(account_id) {
                Some(g) => (*g, Witness::Register),
                None => (audited.get(account_id)?, Witness::AuditTrail),
            };
            (*generation < written).then(|| RolledBackRow {
                account_id: account_id.clone(),
                user_id: user_id.clone(),
                row_generation: *generation,
                written_generation: written,
                witness,
            })
        })
        .collect()
}

/// Why the accounts could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AccountCheckError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
    /// The register could not be read.
    #[error(transparent)]
    Register(#[from] RegisterError),
}

/// What [`check_accounts`] found.
#[derive(Debug, Clone, Default)]
pub struct AccountCheck {
    /// Broker account rows checked.
    pub checked: usize,
    /// Those older than what was written.
    pub rolled_back: Vec<RolledBackRow>,
    /// The register's bucket does not exist on this server (e.g. verifying a copy of the
    /// stream elsewhere): rows were compared with the audit trail only.
    pub register_missing: bool,
}

/// Reads every broker account row (only `user`'s, when given) and its register entry, and
/// reports which rows are rolled back.
pub async fn check_accounts(
    db: &impl ConnectionTrait,
    js: &jetstream::Context,
    user: Option<&str>,
    audited: &WrittenGenerations,
) -> Result<AccountCheck, AccountCheckError> {
    let mut query = broker_accounts::Entity::find();
    if let Some(user) = user {
        query = query.filter(broker_accounts::Column::UserId.eq(user));
    }
    let rows: Vec<(String, String, i64)> = query
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.id, r.user_id, r.generation))
        .collect();
    if rows.is_empty() {
        return Ok(AccountCheck::default());
    }
    let mut register = HashMap::new();
    // Read only: a verifier never creates the bucket.
    let register_missing = match open_read_only(js).await? {
        Some(store) => {
            for (account_id, _, _) in &rows {
                if let Some(generation) = register::read(&store, account_id).await? {
                    register.insert(account_id.clone(), generation);
                }
            }
            false
        }
        None => true,
    };
    Ok(AccountCheck {
        checked: rows.len(),
        rolled_back: rolled_back(&rows, &register, audited),
        register_missing,
    })
}

/// The register's bucket, or `None` when the server has no such bucket; any other failure
/// (no permission, no server) is an error.
async fn open_read_only(
    js: &jetstream::Context,
) -> Result<Option<async_nats::jetstream::kv::Store>, RegisterError> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    if let Err(error) = js.get_stream(subjects::CREDENTIAL_GENERATIONS_STREAM).await {
        return match error.kind() {
            GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            _ => Err(RegisterError::Unavailable(error.to_string())),
        };
    }
    js.get_key_value(subjects::CREDENTIAL_GENERATIONS_BUCKET)
        .await
        .map(Some)
        .map_err(|e| RegisterError::Unavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(account: &str, generation: Option<i64>, outcome: AuditOutcome) -> AuditEvent {
        AuditEvent {
            event_id: "e".into(),
            ts_ms: 0,
            actor: "a".into(),
            token_id: None,
            user_id: "u".into(),
            broker_account_id: account.into(),
            fields: vec![],
            purpose: "credentials.write".into(),
            request_id: "r".into(),
            trace_id: None,
            outcome,
            generation,
            reason: None,
        }
    }

    fn row(account: &str, generation: i64) -> (String, String, i64) {
        (account.into(), "u".into(), generation)
    }

    #[test]
    fn the_register_decides_and_the_trail_stands_in_where_it_has_no_entry() {
        let mut audited = WrittenGenerations::default();
        for (account, generation) in [("a", 1), ("a", 3), ("a", 2), ("b", 5), ("c", 2)] {
            audited.note(&written(account, Some(generation), AuditOutcome::Written));
        }
        // Reads and events without a generation say nothing about what was written.
        audited.note(&written("c", Some(9), AuditOutcome::Authorized));
        audited.note(&written("c", None, AuditOutcome::Written));
        assert_eq!(
            (audited.get("a"), audited.get("c"), audited.get("z")),
            (Some(3), Some(2), None)
        );
        let register = HashMap::from([("a".to_string(), 3), ("b".to_string(), 4)]);
        let rows = [row("a", 2), row("b", 4), row("c", 1), row("d", 1)];
        let found = rolled_back(&rows, &register, &audited);
        assert_eq!(
            found,
            [
                RolledBackRow {
                    account_id: "a".into(),
                    user_id: "u".into(),
                    row_generation: 2,
                    written_generation: 3,
                    witness: Witness::Register,
                },
                RolledBackRow {
                    account_id: "c".into(),
                    user_id: "u".into(),
                    row_generation: 1,
                    written_generation: 2,
                    witness: Witness::AuditTrail,
                },
            ],
            "b: the register (4) outranks a write that failed after its event (5)"
        );
        assert!(rolled_back(&[row("a", 3), row("a", 4)], &register, &audited).is_empty());
    }
}
