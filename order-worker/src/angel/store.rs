//! Where the order worker keeps SmartAPI sessions: encrypted in the account's row, every
//! read and write audited, and a login lease in the same row so that only one worker in
//! the queue group logs in to an account at a time. Each save writes a new generation
//! and advances the generation register once the row committed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use pinnacle_common::audit::AuditLog;
use pinnacle_common::broker::BrokerCredentials;
use pinnacle_common::crypto::Vault;
use pinnacle_common::entities::broker_accounts::{self, fields};
use pinnacle_common::keystore::{self, Register};
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::telemetry;
use pinnacle_common::writes::Writer;
use pinnacle_smartapi::session::{Session, SessionStore};
use pinnacle_smartapi::{SmartApiError, SmartApiErrorKind};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::SecretString;

use crate::engine::credentials::{self, Actor};

/// The audit actor for session reads and writes.
pub const ACTOR: &str = "pinnacle-smartapi-session";

/// Sessions in `broker_accounts`.
#[derive(Debug, Clone)]
pub struct DbSessionStore {
    /// Reads.
    db: DatabaseConnection,
    /// Writes: sessions and login leases.
    writer: Writer,
    vault: Arc<Vault>,
    audit: AuditLog,
    /// The generation register: checked on every read, advanced after every save.
    register: Register,
    /// This worker's name in `login_lease_owner`.
    owner: String,
    /// What "now" is when deciding whether a stored session has ended.
    clock: pinnacle_common::clock::Clock,
}

impl DbSessionStore {
    /// A store over `db`, auditing to `audit`, with its own handle on the generation
    /// register (on `audit`'s connection).
    pub fn new(db: DatabaseConnection, vault: Arc<Vault>, audit: AuditLog) -> Self {
        let register = Register::new(audit.client(), Duration::from_secs(5));
        Self::with_register(db, vault, audit, register)
    }

    /// A store that shares `register` (the worker's).
    pub fn with_register(
        db: DatabaseConnection,
        vault: Arc<Vault>,
        audit: AuditLog,
        register: Register,
    ) -> Self {
        Self {
            writer: Writer::new(&db),
            db,
            vault,
            audit,
            register,
            owner: uuid::Uuid::new_v4().to_string(),
            clock: pinnacle_common::clock::Clock::real(),
        }
    }

    /// Judges session ends by `clock` (tests shift it; see `PINNACLE_WORKER_SIM_NOW`).
    pub fn with_clock(mut self, clock: pinnacle_common::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    async fn row(&self, account_id: &str) -> Result<broker_accounts::Model, SmartApiError> {
        broker_accounts::Entity::find_by_id(account_id.to_string())
            .one(&self.db)
            .await
            .map_err(store_error)?
            .ok_or_else(|| SmartApiError::invalid("the broker account no longer exists"))
    }

    async fn open(
        &self,
        row: &broker_accounts::Model,
        purpose: &str,
    ) -> Result<pinnacle_common::broker::BrokerCredentials, SmartApiError> {
        let actor = Actor {
            name: ACTOR,
            token_id: None,
        };
        let request_id = uuid::Uuid::now_v7().to_string();
        let opener = credentials::Opener {
            db: &self.db,
            vault: self.vault.as_ref(),
            audit: &self.audit,
            register: &self.register,
        };
        credentials::open_with(opener, actor, row, purpose, &request_id)
            .await
            .map_err(|e| {
                // An audit stream or generation register out of reach passes; a row that
                // does not decrypt is a verdict.
                let kind = if e.code.is_retryable() {
                    SmartApiErrorKind::Transport
                } else {
                    SmartApiErrorKind::Invalid
                };
                SmartApiError::new(kind, None, e.message)
            })
    }
}

fn store_error(error: impl std::fmt::Display) -> SmartApiError {
    SmartApiError::new(
        SmartApiErrorKind::Transport,
        None,
        format!("the session store failed: {error}"),
    )
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn load(&self, account_id: &str) -> Result<Option<Session>, SmartApiError> {
        let row = self.row(account_id).await?;
        let Some(expires_at) = row.session_expires_at else {
            return Ok(None);
        };
        if row.jwt_token_enc.is_none() || expires_at <= self.clock.now() {
            return Ok(None);
        }
        let creds = self.open(&row, "session.load").await?;
        Ok(
            match (creds.jwt_token, creds.refresh_token, creds.feed_token) {
                (Some(jwt), Some(refresh), Some(feed)) => Some(Session {
                    jwt,
                    refresh,
                    feed,
                    expires_at,
                }),
                _ => None,
            },
        )
    }

    async fn save(&self, account_id: &str, session: &Session) -> Result<(), SmartApiError> {
        // A key rotation or a user's write can win the compare-and-set; read again and retry.
        for _ in 0..5 {
            let row = self.row(account_id).await?;
            let creds = self.open(&row, "session.write").await?;
            let values = with_session(creds, session);
            let event = session_written(&row);
            self.audit.record(&event).await.map_err(|e| {
                SmartApiError::new(
                    SmartApiErrorKind::Transport,
                    None,
                    format!("the audit log is unavailable, so the session was not stored: {e}"),
                )
            })?;
            let refs: Vec<(&'static str, &SecretString)> =
                values.iter().map(|(f, v)| (*f, v)).collect();
            match keystore::reseal_account(
                &self.writer,
                &self.vault,
                &row,
                &refs,
                Some(session.expires_at),
            )
            .await
            .map_err(store_error)?
            {
                Some(saved) => {
                    self.register
                        .advance_after_commit(&saved.id, saved.generation)
                        .await;
                    return Ok(());
                }
                None => continue,
            }
        }
        Err(store_error(
            "the account kept changing while the session was stored",
        ))
    }

    async fn try_lease(&self, account_id: &str, ttl: Duration) -> Result<bool, SmartApiError> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(ttl).unwrap_or_default();
        let free = Condition::any()
            .add(broker_accounts::Column::LoginLeaseUntil.is_null())
            .add(broker_accounts::Column::LoginLeaseUntil.lt(now))
            .add(broker_accounts::Column::LoginLeaseOwner.eq(self.owner.as_str()));
        let taken = broker_accounts::Entity::update_many()
            .col_expr(broker_accounts::Column::LoginLeaseUntil, Expr::value(until))
            .col_expr(
                broker_accounts::Column::LoginLeaseOwner,
                Expr::value(self.owner.clone()),
            )
            .filter(broker_accounts::Column::Id.eq(account_id))
            .filter(free)
            .exec(&self.writer)
            .await
            .map_err(store_error)?;
        Ok(taken.rows_affected == 1)
    }

    async fn release(&self, account_id: &str) {
        let released = broker_accounts::Entity::update_many()
            .col_expr(
                broker_accounts::Column::LoginLeaseUntil,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .col_expr(
                broker_accounts::Column::LoginLeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .filter(broker_accounts::Column::Id.eq(account_id))
            .filter(broker_accounts::Column::LoginLeaseOwner.eq(self.owner.as_str()))
            .exec(&self.writer)
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, "could not release the SmartAPI login lease; it expires on its own");
        }
    }
}

/// Every stored field of `creds` with the session's three tokens in place of the old ones.
fn with_session(creds: BrokerCredentials, session: &Session) -> Vec<(&'static str, SecretString)> {
    let mut values: Vec<(&'static str, SecretString)> = [
        (fields::API_KEY, creds.api_key),
        (fields::CLIENT_CODE, creds.client_code),
        (fields::SECRET, creds.secret),
        (fields::TOTP_SEED, creds.totp_seed),
        (fields::ACCESS_TOKEN, creds.access_token),
    ]
    .into_iter()
    .filter_map(|(field, value)| value.map(|v| (field, v)))
    .collect();
    values.push((fields::JWT_TOKEN, session.jwt.clone()));
    values.push((fields::REFRESH_TOKEN, session.refresh.clone()));
    values.push((fields::FEED_TOKEN, session.feed.clone()));
    values
}

/// The audit event of writing a new session into `row` (its next generation).
fn session_written(row: &broker_accounts::Model) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        ts_ms: Utc::now().timestamp_millis(),
        actor: ACTOR.to_string(),
        token_id: None,
        user_id: row.user_id.clone(),
        broker_account_id: row.id.clone(),
        fields: vec![
            fields::JWT_TOKEN.into(),
            fields::REFRESH_TOKEN.into(),
            fields::FEED_TOKEN.into(),
        ],
        purpose: "session.write".into(),
        request_id: uuid::Uuid::now_v7().to_string(),
        trace_id: telemetry::current_trace_id(),
        outcome: AuditOutcome::Written,
        generation: Some(row.generation + 1),
        reason: None,
    }
}
