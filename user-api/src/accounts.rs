//! Broker accounts and their write-only credentials.
//!
//! `PUT /v1/users/{user_id}/broker-accounts/{label}` replaces an account's credentials
//! (fields left out become unset); `GET /v1/users/{user_id}/broker-accounts` lists
//! accounts with the names of the fields that are set, never their values. Every write
//! bumps the row's generation, seals the fields under a fresh data key wrapped by the
//! current master key (`pinnacle_common::keystore`), and is audited first. The row update
//! is a compare-and-set on the generation, so two racing writes cannot interleave. Once
//! the row committed, the write advances the generation register
//! (`pinnacle_common::keystore::generations`), so a later restore of the old row is refused.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use pinnacle_common::audit::AuditLog;
use pinnacle_common::crypto::{RowIdentity, Vault};
use pinnacle_common::entities::broker_accounts::{self, fields};
use pinnacle_common::error::ErrorCode;
use pinnacle_common::keystore::{self, KeyStoreError, Register};
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::{db, telemetry};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, SqlErr,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::body::JsonObject;
use crate::caller::Caller;
use crate::error::{char_len, check_name, check_user_id, ApiError};
use crate::state::AppState;
use pinnacle_common::auth::{SCOPE_READ, SCOPE_TRADE};

/// Brokers an account may use.
pub const BROKERS: [&str; 2] = ["paper", "angel_one"];
/// The longest accepted credential value, in characters.
pub const MAX_SECRET_LEN: usize = 1024;
/// The longest accepted `egress_proxy`, in characters.
pub const MAX_PROXY_LEN: usize = 512;
/// The longest accepted `algo_id`, in characters.
pub const MAX_ALGO_ID_LEN: usize = 32;

/// Request body: the broker and the credentials. Secrets are redacted in `Debug`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutAccount {
    /// `paper` or `angel_one`.
    pub broker: String,
    /// SmartAPI key.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Client code.
    #[serde(default)]
    pub client_code: Option<SecretString>,
    /// PIN or secret.
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// TOTP seed.
    #[serde(default)]
    pub totp_seed: Option<SecretString>,
    /// Session token.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// SmartAPI session JWT.
    #[serde(default)]
    pub jwt_token: Option<SecretString>,
    /// SmartAPI refresh token.
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    /// SmartAPI feed token.
    #[serde(default)]
    pub feed_token: Option<SecretString>,
    /// When the session tokens expire (RFC 3339).
    #[serde(default)]
    pub session_expires_at: Option<DateTime<Utc>>,
    /// The static IP registered with Angel One for the API key (not secret).
    #[serde(default)]
    pub static_ip: Option<String>,
    /// A proxy whose egress is `static_ip`: `http://`, `https://`, `socks5://` or
    /// `socks5h://`, with no credentials in it.
    #[serde(default)]
    pub egress_proxy: Option<String>,
    /// The exchange-issued algo id for this account's orders.
    #[serde(default)]
    pub algo_id: Option<String>,
}

impl PutAccount {
    fn field(&self, name: &str) -> Option<&SecretString> {
        match name {
            fields::API_KEY => self.api_key.as_ref(),
            fields::CLIENT_CODE => self.client_code.as_ref(),
            fields::SECRET => self.secret.as_ref(),
            fields::TOTP_SEED => self.totp_seed.as_ref(),
            fields::ACCESS_TOKEN => self.access_token.as_ref(),
            fields::JWT_TOKEN => self.jwt_token.as_ref(),
            fields::REFRESH_TOKEN => self.refresh_token.as_ref(),
            fields::FEED_TOKEN => self.feed_token.as_ref(),
            _ => None,
        }
    }

    /// Paper credentials with only the three basic fields set.
    pub fn basic(
        broker: &str,
        api_key: SecretString,
        client_code: SecretString,
        secret: SecretString,
    ) -> Self {
        Self {
            broker: broker.into(),
            api_key: Some(api_key),
            client_code: Some(client_code),
            secret: Some(secret),
            totp_seed: None,
            access_token: None,
            jwt_token: None,
            refresh_token: None,
            feed_token: None,
            session_expires_at: None,
            static_ip: None,
            egress_proxy: None,
            algo_id: None,
        }
    }
}

/// An account as the API shows it: which fields are set, never what they hold.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountView {
    /// UUID.
    pub id: String,
    /// The owner's label.
    pub label: String,
    /// `paper` or `angel_one`.
    pub broker: String,
    /// Names of the credential fields that hold a value.
    pub fields_set: Vec<String>,
    /// Bumped on every credential write.
    pub generation: i64,
    /// When the credentials were last written.
    pub updated_at: DateTime<Utc>,
    /// When the session tokens expire, if known.
    pub session_expires_at: Option<DateTime<Utc>>,
    /// The master key that wraps this account's data key (not secret).
    pub master_key_id: Option<i64>,
    /// The static IP registered with Angel One.
    pub static_ip: Option<String>,
    /// The egress proxy, if any.
    pub egress_proxy: Option<String>,
    /// The algo id orders are tagged with.
    pub algo_id: Option<String>,
}

impl From<&broker_accounts::Model> for AccountView {
    fn from(m: &broker_accounts::Model) -> Self {
        Self {
            id: m.id.clone(),
            label: m.label.clone(),
            broker: m.broker.clone(),
            fields_set: m.fields_set().into_iter().map(String::from).collect(),
            generation: m.generation,
            updated_at: m.updated_at,
            session_expires_at: m.session_expires_at,
            master_key_id: m.master_key_id,
            static_ip: m.static_ip.clone(),
            egress_proxy: m.egress_proxy.clone(),
            algo_id: m.algo_id.clone(),
        }
    }
}

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

/// Creates or replaces `label`'s credentials for `user_id`, audited before the write; the
/// generation register is advanced after it (a failure there is logged: the next decrypt
/// advances it).
#[allow(clippy::too_many_arguments)]
pub async fn put_account(
    db: &DatabaseConnection,
    vault: &Vault,
    audit: &AuditLog,
    register: &Register,
    writer: &Writer,
    user_id: &str,
    label: &str,
    body: &PutAccount,
) -> Result<broker_accounts::Model, PutAccountError> {
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
    let written: Vec<String> = fields::ALL
        .into_iter()
        .filter(|f| body.field(f).is_some())
        .map(String::from)
        .collect();
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
    audit
        .record(&AuditEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            ts_ms: now.timestamp_millis(),
            actor: writer.actor.clone(),
            token_id: writer.token_id.clone(),
            user_id: user_id.to_string(),
            broker_account_id: id.clone(),
            fields: written,
            purpose: "credentials.write".into(),
            request_id: writer.request_id.clone(),
            trace_id: telemetry::current_trace_id(),
            outcome: AuditOutcome::Written,
            generation: Some(generation),
            reason: None,
        })
        .await?;
    let row = broker_accounts::ActiveModel {
        id: Set(id.clone()),
        user_id: Set(user_id.to_string()),
        label: Set(label.to_string()),
        broker: Set(body.broker.clone()),
        session_expires_at: Set(body.session_expires_at),
        generation: Set(generation),
        created_at: Set(created_at),
        updated_at: Set(now),
        static_ip: Set(body.static_ip.clone()),
        egress_proxy: Set(body.egress_proxy.clone()),
        algo_id: Set(body.algo_id.clone()),
        login_lease_until: Set(None),
        login_lease_owner: Set(None),
        ..sealed.into_columns()
    };
    let written = match existing {
        // Two first writes of the same label race on the unique key: the loser conflicts.
        None => match row
            .insert(db)
            .instrument(db::span(db, "INSERT", "broker_accounts"))
            .await
        {
            Ok(model) => Ok(model),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Err(PutAccountError::Conflict)
            }
            Err(e) => Err(e.into()),
        },
        Some(old) => {
            // Compare-and-set on the generation: a concurrent write makes this one a conflict.
            let updated = broker_accounts::Entity::update_many()
                .set(row)
                .filter(broker_accounts::Column::Id.eq(id.as_str()))
                .filter(broker_accounts::Column::Generation.eq(old.generation))
                .exec(db)
                .instrument(db::span(db, "UPDATE", "broker_accounts"))
                .await?;
            if updated.rows_affected != 1 {
                return Err(PutAccountError::Conflict);
            }
            broker_accounts::Entity::find_by_id(id)
                .one(db)
                .instrument(db::span(db, "SELECT", "broker_accounts"))
                .await?
                .ok_or(PutAccountError::Conflict)
        }
    }?;
    register
        .advance_after_commit(&written.id, written.generation)
        .await;
    Ok(written)
}

fn validate(body: &PutAccount) -> Result<(), ApiError> {
    if !BROKERS.contains(&body.broker.as_str()) {
        return Err(ApiError::invalid(format!(
            "broker must be one of {}",
            BROKERS.join(", ")
        )));
    }
    if let Some(ip) = &body.static_ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::invalid(
                "static_ip must be an IPv4 or IPv6 address",
            ));
        }
    }
    if let Some(proxy) = &body.egress_proxy {
        // The rest after the scheme: visible ASCII without `@` (no credentials, no
        // whitespace, no look-alikes; an international host is written in punycode).
        let rest = ["http://", "https://", "socks5://", "socks5h://"]
            .iter()
            .find_map(|scheme| proxy.strip_prefix(scheme));
        let ok = rest.is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic() && b != b'@')
        }) && char_len(proxy) <= MAX_PROXY_LEN;
        if !ok {
            return Err(ApiError::invalid(
                "egress_proxy must be an http, https, socks5 or socks5h URL without credentials",
            ));
        }
    }
    if let Some(algo_id) = &body.algo_id {
        let ok = (1..=MAX_ALGO_ID_LEN).contains(&char_len(algo_id))
            && algo_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(ApiError::invalid(
                "algo_id must be 1 to 32 letters, digits, '-' or '_'",
            ));
        }
    }
    for field in fields::ALL {
        if let Some(value) = body.field(field) {
            let len = char_len(value.expose_secret());
            if len == 0 || len > MAX_SECRET_LEN {
                return Err(ApiError::invalid(format!(
                    "{field} must be 1 to {MAX_SECRET_LEN} characters"
                )));
            }
        }
    }
    Ok(())
}

/// `PUT /v1/users/{user_id}/broker-accounts/{label}`.
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonObject<PutAccount>, ApiError>,
) -> Result<Json<AccountView>, ApiError> {
    let Path((user_id, label)) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_TRADE)?;
    check_user_id(&user_id)?;
    check_name("label", &label)?;
    let JsonObject(body) = body?;
    validate(&body)?;
    crate::users::find_user(&state.db, &user_id).await?;
    let writer = Writer {
        actor: caller.actor(),
        token_id: caller.token_id(),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    let row = put_account(
        &state.db,
        &state.vault,
        &state.audit,
        &state.register,
        &writer,
        &user_id,
        &label,
        &body,
    )
    .await
    .map_err(|e| match e {
        PutAccountError::Audit(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AuditUnavailable,
            e.to_string(),
        ),
        PutAccountError::Db(db) => ApiError::internal("storing the credentials", db),
        PutAccountError::Conflict => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string())
        }
        PutAccountError::Vault(vault) => {
            tracing::error!(error = %vault, "the vault refused a credential write");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::CredentialUnavailable,
                "the credential vault cannot store credentials right now",
            )
        }
    })?;
    tracing::info!(%user_id, account_id = %row.id, generation = row.generation, "credentials stored");
    Ok(Json(AccountView::from(&row)))
}

/// `GET /v1/users/{user_id}/broker-accounts`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let Path(user_id) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_READ)?;
    check_user_id(&user_id)?;
    crate::users::find_user(&state.db, &user_id).await?;
    let rows = broker_accounts::Entity::find()
        .filter(broker_accounts::Column::UserId.eq(user_id.as_str()))
        .order_by_asc(broker_accounts::Column::Label)
        .all(&state.db)
        .await
        .map_err(|e| ApiError::internal("listing accounts", e))?;
    Ok(Json(rows.iter().map(AccountView::from).collect()))
}
