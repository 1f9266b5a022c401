//! Loading a user's broker account and decrypting its credentials.
//!
//! [`open`] records the audit event, waits for JetStream's ack, and only then decrypts:
//! audit before access, failing closed.

use pinnacle_common::audit::AuditLog;
use pinnacle_common::auth::Principal;
use pinnacle_common::broker::BrokerCredentials;
use pinnacle_common::crypto::{DecryptError, Vault};
use pinnacle_common::entities::broker_accounts::{self, fields};
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::keystore;
use pinnacle_common::metrics;
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::telemetry;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use tracing::Instrument as _;

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

impl AccountError {
    /// The reply for this failure.
    pub fn into_error_body(self) -> ErrorBody {
        match self {
            Self::NotFound(message) => ErrorBody::new(ErrorCode::NoBrokerAccount, message),
            Self::Db(db) => crate::handler::internal("loading the broker account", db),
        }
    }
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
    let mut accounts = query
        .all(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "broker_accounts"))
        .await?;
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
        account_id: account.id.clone(),
        api_key: open.remove(fields::API_KEY),
        client_code: open.remove(fields::CLIENT_CODE),
        secret: open.remove(fields::SECRET),
        totp_seed: open.remove(fields::TOTP_SEED),
        access_token: open.remove(fields::ACCESS_TOKEN),
        jwt_token: open.remove(fields::JWT_TOKEN),
        refresh_token: open.remove(fields::REFRESH_TOKEN),
        feed_token: open.remove(fields::FEED_TOKEN),
        session_expires_at: account.session_expires_at,
        static_ip: account.static_ip.clone(),
        egress_proxy: account.egress_proxy.clone(),
        algo_id: account.algo_id.clone(),
    })
}

/// Audits the access (waiting for the ack), then decrypts `account`'s credentials.
///
/// No ack → `AUDIT_UNAVAILABLE` and nothing is decrypted (the message starts with
/// `audit stream unavailable:` when the AUDIT stream itself is missing). A failed decrypt is audited too
/// and answered with the one opaque `CREDENTIAL_UNAVAILABLE`.
pub async fn open(
    worker: &crate::Worker,
    principal: &Principal,
    account: &broker_accounts::Model,
    purpose: &str,
    request_id: &str,
) -> Result<BrokerCredentials, ErrorBody> {
    let actor = Actor {
        name: &principal.user_id,
        token_id: Some(&principal.token_id),
    };
    open_as(worker, actor, account, purpose, request_id).await
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
    worker: &crate::Worker,
    actor: Actor<'_>,
    account: &broker_accounts::Model,
    purpose: &str,
    request_id: &str,
) -> Result<BrokerCredentials, ErrorBody> {
    open_with(
        &worker.vault,
        &worker.audit,
        actor,
        account,
        purpose,
        request_id,
    )
    .await
}

/// [`open_as`] with an explicit vault and audit log, for code that holds no [`Worker`]
/// (the SmartAPI session store).
///
/// [`Worker`]: crate::Worker
pub async fn open_with(
    vault: &Vault,
    audit: &AuditLog,
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
    };
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
    let decrypted = decrypt(vault, account);
    metrics::metrics().credential_decrypt(decrypted.is_ok());
    match decrypted {
        Ok(credentials) => Ok(credentials),
        Err(error) => {
            event.event_id = uuid::Uuid::now_v7().to_string();
            event.outcome = AuditOutcome::DecryptFailed;
            if let Err(audit_error) = audit.record(&event).await {
                tracing::warn!(error = %audit_error, "could not audit the failed decrypt");
            }
            Err(ErrorBody::new(
                ErrorCode::CredentialUnavailable,
                error.to_string(),
            ))
        }
    }
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
