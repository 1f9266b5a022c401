//! Loading a user's broker accounts ([`load_accounts`]: the sealed rows and the default
//! label, which the engine caches) and decrypting an account's credentials.
//!
//! [`open`] records the audit event through the [`AuditSink`] port, waits for its ack,
//! and only then decrypts, through the [`CredentialVault`] port: audit before access,
//! failing closed. Before decrypting it checks the row's generation against the
//! [`Generations`] port (the register, `pinnacle_common::keystore::generations`): a row
//! older than the register (restored from an old copy) is refused like any other failed
//! decrypt, with the reason code `rolled_back` in the audit event only; it is read again
//! first, since a credential write may have superseded it after it was loaded (or after
//! the engine cached it). A register that cannot be read refuses too, but as a passing
//! outage ([`refusal`]).

use pinnacle_common::auth::Principal;
use pinnacle_common::broker::BrokerCredentials;
use pinnacle_common::crypto::DecryptError;
use pinnacle_common::entities::broker_accounts;
use pinnacle_common::entities::users;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::keystore::generations::{CheckError, Standing};
use pinnacle_common::metrics;
use pinnacle_common::model::{AuditEvent, AuditOutcome, DecryptReason};
use pinnacle_common::telemetry;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use tracing::Instrument as _;

use super::audit::AuditSink;
use super::cache::UserAccounts;
use super::core::Engine;
use super::generations::Generations;
use super::vault::CredentialVault;

/// Why no account could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No account matched.
    #[error("{0}")]
    NotFound(String),
    /// Several accounts, none named and no default set.
    #[error("{0}")]
    Ambiguous(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl AccountError {
    /// The reply for this failure.
    pub fn into_error_body(self) -> ErrorBody {
        match self {
            Self::NotFound(message) => ErrorBody::new(ErrorCode::NoBrokerAccount, message),
            Self::Ambiguous(message) => ErrorBody::new(ErrorCode::AmbiguousAccount, message),
            Self::Db(db) => super::errors::internal("loading the broker account", db),
        }
    }
}

/// Every broker account of `user_id` (sealed rows, oldest first; not the erased rows of
/// deleted accounts that orders still refer to) and their default account: two
/// independent reads, run together.
pub async fn load_accounts(db: &DatabaseConnection, user_id: &str) -> Result<UserAccounts, DbErr> {
    let rows = broker_accounts::Entity::of_user(user_id)
        .order_by_asc(broker_accounts::Column::CreatedAt)
        .all(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "broker_accounts"));
    let user = users::Entity::find_by_id(user_id.to_string())
        .one(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "users"));
    let (rows, user) = futures::try_join!(rows, user)?;
    Ok(UserAccounts {
        rows,
        default_account: user.and_then(|user| user.default_account),
    })
}

/// Audits the access (waiting for the ack), then decrypts `account`'s credentials.
///
/// No ack → `AUDIT_UNAVAILABLE` and nothing is decrypted (the message starts with
/// `audit stream unavailable:` when the AUDIT stream itself is missing). A failed decrypt
/// is audited too and answered by [`refusal`]: the one opaque `CREDENTIAL_UNAVAILABLE` for
/// a verdict on the row, the retryable `AUDIT_UNAVAILABLE` when its generation could not
/// be checked.
pub async fn open(
    engine: &Engine,
    principal: &Principal,
    account: &broker_accounts::Model,
    purpose: &str,
    request_id: &str,
) -> Result<BrokerCredentials, ErrorBody> {
    let actor = Actor {
        name: &principal.user_id,
        token_id: Some(&principal.token_id),
    };
    open_as(engine, actor, account, purpose, request_id).await
}

/// Who is using the credentials, for the audit event.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// A user id, or a service name such as `pinnacle-reconciler`.
    pub name: &'a str,
    /// The API token used, if any.
    pub token_id: Option<&'a str>,
}

/// [`open`] on behalf of `actor` (a service acting without a user request).
pub async fn open_as(
    engine: &Engine,
    actor: Actor<'_>,
    account: &broker_accounts::Model,
    purpose: &str,
    request_id: &str,
) -> Result<BrokerCredentials, ErrorBody> {
    open_with(opener(engine), actor, account, purpose, request_id).await
}

/// The engine's parts that open credentials.
pub(super) fn opener(engine: &Engine) -> Opener<'_> {
    Opener {
        db: &engine.db,
        vault: engine.vault.as_ref(),
        audit: engine.audit.as_ref(),
        register: engine.register.as_ref(),
    }
}

/// What opening credentials needs besides the account.
#[derive(Debug, Clone, Copy)]
pub struct Opener<'a> {
    /// To re-read a row that a write superseded while it was being opened.
    pub db: &'a DatabaseConnection,
    /// Decrypts.
    pub vault: &'a dyn CredentialVault,
    /// Records the access first.
    pub audit: &'a dyn AuditSink,
    /// The latest generation of every account, outside the database.
    pub register: &'a dyn Generations,
}

/// [`open_as`] with explicit parts, for code that holds no [`Engine`] (the SmartAPI
/// session store, which records to its own [`AuditSink`]).
pub async fn open_with(
    opener: Opener<'_>,
    actor: Actor<'_>,
    account: &broker_accounts::Model,
    purpose: &str,
    request_id: &str,
) -> Result<BrokerCredentials, ErrorBody> {
    let mut event = AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        ts_ms: chrono::Utc::now().timestamp_millis(),
        actor: actor.name.to_string(),
        token_id: actor.token_id.map(str::to_string),
        user_id: account.user_id.clone(),
        broker_account_id: account.id.clone(),
        fields: account.fields_set().into_iter().map(String::from).collect(),
        purpose: purpose.to_string(),
        request_id: request_id.to_string(),
        trace_id: telemetry::current_trace_id(),
        outcome: AuditOutcome::Authorized,
        generation: Some(account.generation),
        reason: None,
    };
    // From here the request runs to its end, whatever its deadline says.
    super::deadline::cross();
    let audit = opener.audit;
    audit.record(&event).await.map_err(|e| {
        if e.is_stream_unavailable() {
            // The stream itself is gone: every order is refused until an operator restores
            // it, so say so plainly (the message names no secret).
            tracing::error!(error = %e, "audit stream unavailable; refusing credential access");
            ErrorBody::new(
                ErrorCode::AuditUnavailable,
                format!("{e}; credentials were not accessed"),
            )
        } else {
            tracing::warn!(error = %e, "audit unavailable; refusing");
            ErrorBody::new(
                ErrorCode::AuditUnavailable,
                "the audit log is unavailable, so credentials were not accessed",
            )
        }
    })?;
    let decrypted = check_and_decrypt(opener, account).await;
    metrics::metrics().credential_decrypt(decrypted.is_ok());
    match decrypted {
        Ok(credentials) => Ok(credentials),
        Err(reason) => {
            event.event_id = uuid::Uuid::now_v7().to_string();
            event.outcome = AuditOutcome::DecryptFailed;
            event.reason = Some(reason);
            if let Err(audit_error) = audit.record(&event).await {
                tracing::warn!(error = %audit_error, "could not audit the failed decrypt");
            }
            Err(refusal(reason))
        }
    }
}

/// What the caller is told when credentials were not opened for `reason`.
///
/// A register that cannot be reached says nothing about the row: it is a passing outage of
/// JetStream, like an audit log that cannot store, so it gets the same retryable
/// `AUDIT_UNAVAILABLE` and a retry of the same client order id is attempted again. Every
/// verdict on the row itself gets one opaque answer, whatever it was: the reason is only
/// in the audit event.
fn refusal(reason: DecryptReason) -> ErrorBody {
    match reason {
        DecryptReason::RegisterUnavailable => ErrorBody::new(
            ErrorCode::AuditUnavailable,
            "the credential generation register is unavailable, so credentials were not \
             decrypted; retry later",
        ),
        DecryptReason::RolledBack | DecryptReason::Undecryptable => {
            ErrorBody::new(ErrorCode::CredentialUnavailable, DecryptError.to_string())
        }
    }
}

/// Checks `account`'s generation against the register, decrypts, and advances the register
/// when the row is newer than it (a writer committed but had not advanced it yet).
///
/// A row older than the register is read again before it is refused: a credential write
/// may simply have landed between loading the row and this check (a stale read, not a
/// rollback). Only a row that is still older is refused as `rolled_back`; a newer one is
/// checked and opened instead.
async fn check_and_decrypt(
    opener: Opener<'_>,
    account: &broker_accounts::Model,
) -> Result<BrokerCredentials, DecryptReason> {
    let mut row = std::borrow::Cow::Borrowed(account);
    for _ in 0..STALE_REREADS {
        match opener.register.check(&row.id, row.generation).await {
            Ok(standing) => {
                let credentials = opener
                    .vault
                    .open(&row)
                    .map_err(|_| DecryptReason::Undecryptable)?;
                if let Standing::Ahead { .. } = standing {
                    // Only a row that decrypted may advance the register: a forged
                    // generation cannot.
                    opener
                        .register
                        .advance_after_commit(&row.id, row.generation)
                        .await;
                }
                return Ok(credentials);
            }
            Err(CheckError::RolledBack { .. }) => match reread(opener.db, &row).await {
                Ok(Some(fresh)) if fresh.generation > row.generation => {
                    row = std::borrow::Cow::Owned(fresh);
                }
                Ok(_) => break,
                // Whether the row is stale or rolled back cannot be told now: refuse as an
                // outage (retryable), never as the rolled-back verdict.
                Err(error) => {
                    tracing::warn!(account_id = %row.id, %error, "could not re-read the broker account; generation unchecked");
                    return Err(DecryptReason::RegisterUnavailable);
                }
            },
            Err(error) => {
                tracing::warn!(account_id = %row.id, %error, "credential generation unchecked");
                return Err(error.reason());
            }
        }
    }
    tracing::warn!(
        account_id = %row.id,
        generation = row.generation,
        "broker account row is older than the generation register: rolled back; refused"
    );
    Err(DecryptReason::RolledBack)
}

/// How often a row found older than the register is read again before it is refused.
const STALE_REREADS: usize = 3;

/// `row` as the database holds it now (`None` if it is gone).
async fn reread(
    db: &DatabaseConnection,
    row: &broker_accounts::Model,
) -> Result<Option<broker_accounts::Model>, DbErr> {
    broker_accounts::Entity::find_by_id(row.id.clone())
        .filter(broker_accounts::Column::UserId.eq(row.user_id.as_str()))
        .one(db)
        .await
}

/// The account an existing order was placed through.
pub async fn account_of(
    db: &impl ConnectionTrait,
    order: &pinnacle_common::entities::orders::Model,
) -> Result<broker_accounts::Model, AccountError> {
    broker_accounts::Entity::find_by_id(order.broker_account_id.clone())
        .filter(broker_accounts::Column::UserId.eq(order.user_id.as_str()))
        .one(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "broker_accounts"))
        .await?
        .ok_or_else(|| AccountError::NotFound("the order's broker account no longer exists".into()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use pinnacle_common::audit::AuditError;
    use pinnacle_common::keystore::generations::RegisterError;

    use super::*;
    use crate::engine::fixtures::account_row;

    #[test]
    fn only_a_register_outage_is_retryable_and_verdicts_stay_opaque() {
        let outage = refusal(DecryptReason::RegisterUnavailable);
        assert_eq!(outage.code, ErrorCode::AuditUnavailable);
        for verdict in [DecryptReason::RolledBack, DecryptReason::Undecryptable] {
            let refused = refusal(verdict);
            assert_eq!(refused.code, ErrorCode::CredentialUnavailable);
            assert_eq!(refused.message, "credential could not be decrypted");
        }
    }

    /// An audit sink that acknowledges or refuses everything, keeping what it stored.
    #[derive(Debug)]
    struct Sink {
        acknowledges: bool,
        stored: Mutex<Vec<AuditEvent>>,
    }

    impl Sink {
        fn new(acknowledges: bool) -> Self {
            Self {
                acknowledges,
                stored: Mutex::default(),
            }
        }
    }

    #[async_trait]
    impl AuditSink for Sink {
        async fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
            if !self.acknowledges {
                return Err(AuditError::Timeout(Duration::from_millis(1)));
            }
            self.stored.lock().expect("lock").push(event.clone());
            Ok(())
        }
    }

    /// A vault that counts the rows it was asked to open and opens none.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl CredentialVault for Counting {
        fn open(&self, _: &broker_accounts::Model) -> Result<BrokerCredentials, DecryptError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(DecryptError)
        }
    }

    /// A register that cannot be read.
    #[derive(Debug)]
    struct Unreachable;

    #[async_trait]
    impl Generations for Unreachable {
        async fn latest(&self, _: &str) -> Result<Option<i64>, RegisterError> {
            Err(RegisterError::Unavailable("no server".into()))
        }

        async fn check(&self, _: &str, _: i64) -> Result<Standing, CheckError> {
            Err(CheckError::Register(RegisterError::Unavailable(
                "no server".into(),
            )))
        }

        async fn advance_after_commit(&self, _: &str, _: i64) {}
    }

    /// A register one generation ahead of every row.
    #[derive(Debug)]
    struct Ahead;

    #[async_trait]
    impl Generations for Ahead {
        async fn latest(&self, _: &str) -> Result<Option<i64>, RegisterError> {
            Ok(Some(2))
        }

        async fn check(&self, _: &str, generation: i64) -> Result<Standing, CheckError> {
            Err(CheckError::RolledBack {
                row: generation,
                register: 2,
            })
        }

        async fn advance_after_commit(&self, _: &str, _: i64) {}
    }

    /// Opens an account with `audit`, `vault` and `register`, over a database every read of
    /// fails (it has no tables).
    async fn open_against(
        audit: &Sink,
        vault: &Counting,
        register: &dyn Generations,
    ) -> Result<BrokerCredentials, ErrorBody> {
        let failing = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("an empty database");
        let opener = Opener {
            db: &failing,
            vault,
            audit,
            register,
        };
        let actor = Actor {
            name: "u1",
            token_id: None,
        };
        open_with(opener, actor, &account_row("paper"), "order.place", "req-1").await
    }

    #[tokio::test]
    async fn nothing_is_opened_without_an_acknowledged_audit_event() {
        let audit = Sink::new(false);
        let vault = Counting::default();
        let refused = open_against(&audit, &vault, &Unreachable)
            .await
            .expect_err("refused");
        assert_eq!(refused.code, ErrorCode::AuditUnavailable);
        assert_eq!(
            vault.0.load(Ordering::SeqCst),
            0,
            "the vault was never asked"
        );
    }

    #[tokio::test]
    async fn nothing_is_opened_while_the_register_cannot_be_read() {
        let audit = Sink::new(true);
        let vault = Counting::default();
        let refused = open_against(&audit, &vault, &Unreachable)
            .await
            .expect_err("refused");
        assert_eq!(refused.code, ErrorCode::AuditUnavailable, "{refused:?}");
        assert_eq!(
            vault.0.load(Ordering::SeqCst),
            0,
            "the vault was never asked"
        );
        let stored = audit.stored.lock().expect("lock");
        let outcomes: Vec<_> = stored.iter().map(|e| (e.outcome, e.reason)).collect();
        assert_eq!(
            outcomes,
            [
                (AuditOutcome::Authorized, None),
                (
                    AuditOutcome::DecryptFailed,
                    Some(DecryptReason::RegisterUnavailable)
                )
            ]
        );
    }

    #[tokio::test]
    async fn a_row_that_looks_rolled_back_but_cannot_be_read_again_is_an_outage() {
        let audit = Sink::new(true);
        let vault = Counting::default();
        let refused = open_against(&audit, &vault, &Ahead)
            .await
            .expect_err("refused");
        assert_eq!(refused.code, ErrorCode::AuditUnavailable, "{refused:?}");
        assert_eq!(vault.0.load(Ordering::SeqCst), 0);
        let stored = audit.stored.lock().expect("lock");
        assert_eq!(
            stored.last().map(|e| e.reason),
            Some(Some(DecryptReason::RegisterUnavailable))
        );
    }
}
