//! The order path's reads of slowly changing rows, through the [`Cache`](super::cache::Cache):
//! the account an order or portfolio request uses, and the risk limits in force. A fresh
//! entry costs no statement; a missing or expired one is read from the database (on
//! PostgreSQL, independent reads run together) and stored.
//!
//! A cached account row is checked against the credential generation register before
//! it is used: a row that a credential write superseded (its announcement missed, or
//! not yet arrived) is dropped and read again, so the audit event names the generation
//! that is then decrypted. [`super::credentials`] checks the register once more after
//! the audit ack and re-reads a superseded row itself, as before the cache.

use std::sync::Arc;

use pinnacle_common::entities::broker_accounts;
use pinnacle_common::entities::risk_limits::{self, combine, Limits};
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::invalidate::Invalidation;
use sea_orm::{ConnectionTrait as _, DbBackend, DbErr};
use tracing::Instrument as _;

use super::cache::UserAccounts;
use super::core::Engine;
use super::credentials::{self, AccountError};

impl Engine {
    /// Whether independent reads of one request should run together: on PostgreSQL (a
    /// pool of connections). SQLite has one connection, where they would only queue.
    pub(super) fn concurrent_reads(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    /// `user_id`'s accounts and whether they came from the cache.
    async fn user_accounts(&self, user_id: &str) -> Result<(Arc<UserAccounts>, bool), DbErr> {
        if let Some(cached) = self.cache.accounts(user_id) {
            return Ok((cached, true));
        }
        let ticket = self.cache.ticket();
        let loaded = Arc::new(credentials::load_accounts(&self.db, user_id).await?);
        self.cache.put_accounts(ticket, user_id, loaded.clone());
        Ok((loaded, false))
    }

    /// The account `user_id`'s request uses: the one labelled `label`, else their only
    /// or default account (see [`choose`]).
    pub(super) async fn account_for(
        &self,
        user_id: &str,
        label: Option<&str>,
    ) -> Result<broker_accounts::Model, ErrorBody> {
        let failed = |e: AccountError| e.into_error_body();
        let (accounts, cached) = self
            .user_accounts(user_id)
            .await
            .map_err(|e| failed(e.into()))?;
        let account = choose(&accounts, label).map_err(failed)?;
        if !cached || !self.superseded(&account).await {
            return Ok(account);
        }
        tracing::debug!(account_id = %account.id, "cached account row superseded; reading it again");
        self.cache.invalidate(&Invalidation::Accounts {
            user_id: user_id.to_string(),
        });
        let (accounts, _) = self
            .user_accounts(user_id)
            .await
            .map_err(|e| failed(e.into()))?;
        choose(&accounts, label).map_err(failed)
    }

    /// Whether the register knows a newer generation of `account` than this row. An
    /// unreadable register is not judged here: opening the credentials fails closed on it.
    async fn superseded(&self, account: &broker_accounts::Model) -> bool {
        matches!(
            self.register.latest(&account.id).await,
            Ok(Some(latest)) if latest > account.generation
        )
    }

    /// The limits in force for `user_id`: the global row and theirs, combined.
    pub(super) async fn limits(&self, user_id: &str) -> Result<Limits, ErrorBody> {
        if let Some(rows) = self.cache.limit_rows(user_id) {
            return Ok(combine(rows.iter().flatten()));
        }
        let ticket = self.cache.ticket();
        let rows = risk_limits::rows_for(&self.db, user_id)
            .instrument(pinnacle_common::db::span(&self.db, "SELECT", "risk_limits"))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading risk limits failed");
                ErrorBody::new(
                    ErrorCode::Internal,
                    "internal error while loading risk limits",
                )
            })?;
        self.cache.put_limit_rows(ticket, user_id, &rows);
        Ok(combine(&rows))
    }

    /// Fills what `user_id`'s next order will read and the cache lacks (the limits, and the
    /// accounts when `accounts`), all at once; meant to run beside another read. Errors
    /// are left for the real read to meet and report.
    pub(super) async fn warm(&self, user_id: &str, accounts: bool) {
        let accounts = async {
            if accounts && self.cache.accounts(user_id).is_none() {
                let _ = self.user_accounts(user_id).await;
            }
        };
        let limits = async {
            if self.cache.limit_rows(user_id).is_none() {
                let _ = self.limits(user_id).await;
            }
        };
        futures::join!(accounts, limits);
    }

    /// Whether [`Self::warm`] would read anything for `user_id`.
    pub(super) fn is_warm(&self, user_id: &str, accounts: bool) -> bool {
        self.cache.limit_rows(user_id).is_some()
            && (!accounts || self.cache.accounts(user_id).is_some())
    }
}

/// The account of `accounts` named `label`; with no label, the only account, or the
/// default account (`users.default_account`) when there are several.
pub fn choose(
    accounts: &UserAccounts,
    label: Option<&str>,
) -> Result<broker_accounts::Model, AccountError> {
    let rows = &accounts.rows;
    if let Some(label) = label {
        return rows
            .iter()
            .find(|account| account.label == label)
            .cloned()
            .ok_or_else(|| {
                AccountError::NotFound(format!("no broker account labelled {label:?}"))
            });
    }
    match rows.as_slice() {
        [] => Err(AccountError::NotFound(
            "no broker account configured".into(),
        )),
        [only] => Ok(only.clone()),
        _ => {
            let Some(default) = &accounts.default_account else {
                return Err(AccountError::Ambiguous(
                    "several broker accounts and no default: name one with \"account\", or set \
                     a default (pinnacle accounts default)"
                        .into(),
                ));
            };
            rows.iter()
                .find(|account| &account.label == default)
                .cloned()
                .ok_or_else(|| {
                    AccountError::NotFound(format!(
                        "the default broker account {default:?} does not exist: name one with \
                         \"account\", or set another default"
                    ))
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fixtures::account_row as row;

    fn chosen(rows: &[&str], default: Option<&str>, label: Option<&str>) -> Result<String, String> {
        let accounts = UserAccounts {
            rows: rows.iter().map(|l| row(l)).collect(),
            default_account: default.map(str::to_string),
        };
        choose(&accounts, label)
            .map(|account| account.label)
            .map_err(|e| match e {
                AccountError::NotFound(_) => "not found".into(),
                AccountError::Ambiguous(_) => "ambiguous".into(),
                AccountError::Db(db) => db.to_string(),
            })
    }

    #[test]
    fn a_label_the_only_account_or_the_default_is_chosen() {
        let ok = |s: &str| Ok(s.to_string());
        assert_eq!(chosen(&["a"], None, None), ok("a"));
        assert_eq!(chosen(&["a", "b"], None, Some("b")), ok("b"));
        assert_eq!(chosen(&["a", "b"], Some("b"), None), ok("b"));
        assert_eq!(
            chosen(&["a"], Some("gone"), None),
            ok("a"),
            "one account needs no default"
        );
        assert_eq!(chosen(&[], None, None), Err("not found".into()));
        assert_eq!(chosen(&["a"], None, Some("b")), Err("not found".into()));
        assert_eq!(chosen(&["a", "b"], None, None), Err("ambiguous".into()));
        assert_eq!(
            chosen(&["a", "b"], Some("gone"), None),
            Err("not found".into())
        );
    }
}
