//! Reading and writing the `risk_limits` rows: [`set`] and [`clear`], each audited before
//! the row changes, and [`show`], the stored rows with the limits in force.

use axum::http::StatusCode;
use chrono::Utc;
use pinnacle_common::audit::{AuditError, AuditLog};
use pinnacle_common::entities::risk_limits::{self, limits_for, DEFAULT_MAX_ORDERS_PER_SECOND};
use pinnacle_common::entities::users;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::invalidate::{self, Invalidation};
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::telemetry;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, SqlErr,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use super::change::{Change, LimitsChange, Scope, MAX_RATE};
use crate::accounts::Writer;
use crate::error::ApiError;

/// Why a change failed.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// No user with that id.
    #[error("no such user")]
    NoUser,
    /// A value is out of range or malformed.
    #[error("{0}")]
    Invalid(String),
    /// The audit event could not be stored, so nothing changed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<RiskError> for ApiError {
    fn from(error: RiskError) -> Self {
        match error {
            RiskError::NoUser => ApiError::not_found("no such user"),
            RiskError::Invalid(message) => ApiError::invalid(message),
            RiskError::Audit(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::AuditUnavailable,
                error.to_string(),
            ),
            RiskError::Db(db) => ApiError::internal("changing the risk limits", db),
        }
    }
}

async fn check_scope(db: &DatabaseConnection, scope: &Scope) -> Result<(), RiskError> {
    if let Scope::User(id) = scope {
        users::Entity::find_by_id(id.clone())
            .one(db)
            .instrument(pinnacle_common::db::span(db, "SELECT", "users"))
            .await?
            .ok_or(RiskError::NoUser)?;
    }
    Ok(())
}

async fn record(
    audit: &AuditLog,
    writer: &Writer,
    scope: &Scope,
    purpose: &str,
    fields: Vec<String>,
) -> Result<(), AuditError> {
    audit
        .record(&AuditEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            ts_ms: Utc::now().timestamp_millis(),
            actor: writer.actor.clone(),
            token_id: writer.token_id.clone(),
            user_id: scope.key().to_string(),
            broker_account_id: String::new(),
            fields,
            purpose: purpose.into(),
            request_id: writer.request_id.clone(),
            trace_id: telemetry::current_trace_id(),
            outcome: AuditOutcome::Changed,
            generation: None,
            reason: None,
        })
        .await
        .map(|_| ())
}

/// Tells the order workers' caches that `scope`'s row changed: they apply it to the next
/// order (within a second if the announcement is lost).
async fn announce(audit: &AuditLog, scope: &Scope) {
    let change = match scope {
        Scope::Global => Invalidation::GlobalLimits,
        Scope::User(user_id) => Invalidation::Limits {
            user_id: user_id.clone(),
        },
    };
    invalidate::announce(&audit.client(), &change).await;
}

/// Applies `change` to `scope`'s row (creating it), audited first, and returns the row.
pub async fn set(
    db: &DatabaseConnection,
    audit: &AuditLog,
    writer: &Writer,
    scope: &Scope,
    change: LimitsChange,
) -> Result<risk_limits::Model, RiskError> {
    change.validate().map_err(RiskError::Invalid)?;
    check_scope(db, scope).await?;
    record(audit, writer, scope, change.purpose(), change.fields()).await?;
    // One UPDATE that sets only the changed columns, so two concurrent changes (an admin
    // tripping the kill switch while another edits a limit) never revert each other. A
    // scope without a row gets one first; a racing first insert is harmless.
    let key = scope.key().to_string();
    ensure_row(db, &key).await?;
    let mut update = risk_limits::Entity::update_many()
        .col_expr(risk_limits::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(risk_limits::Column::Scope.eq(key.as_str()));
    for (column, value) in changed_columns(&change) {
        update = update.col_expr(column, Expr::value(value));
    }
    update
        .exec(db)
        .instrument(pinnacle_common::db::span(db, "UPDATE", "risk_limits"))
        .await?;
    let row = risk_limits::Entity::find_by_id(key)
        .one(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "risk_limits"))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the risk limits row was deleted meanwhile".into()))?;
    tracing::info!(scope = %row.scope, actor = %writer.actor, kill_switch = row.kill_switch, "risk limits changed");
    announce(audit, scope).await;
    Ok(row)
}

/// Inserts an unlimited row for `key` unless one exists (a racing insert of the same row
/// is fine).
async fn ensure_row(db: &DatabaseConnection, key: &str) -> Result<(), DbErr> {
    if risk_limits::Entity::find_by_id(key.to_string())
        .one(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "risk_limits"))
        .await?
        .is_some()
    {
        return Ok(());
    }
    let fresh = risk_limits::Model::unlimited(key)
        .into_active_model()
        .reset_all();
    let inserted = fresh
        .insert(db)
        .instrument(pinnacle_common::db::span(db, "INSERT", "risk_limits"))
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The columns `change` sets, each with its new value (`NULL` to lift a limit).
fn changed_columns(change: &LimitsChange) -> Vec<(risk_limits::Column, sea_orm::Value)> {
    let list = |change: &Change<Vec<String>>| match change {
        Change::Set(items) => Some(items.join(",")),
        _ => None,
    };
    let columns: [(risk_limits::Column, bool, sea_orm::Value); 6] = [
        (
            risk_limits::Column::MaxQuantity,
            change.max_quantity.is_keep(),
            change.max_quantity.as_set().copied().into(),
        ),
        (
            risk_limits::Column::MaxOrderValue,
            change.max_order_value_paise.is_keep(),
            change.max_order_value_paise.as_set().copied().into(),
        ),
        (
            risk_limits::Column::AllowedExchanges,
            change.allowed_exchanges.is_keep(),
            list(&change.allowed_exchanges).into(),
        ),
        (
            risk_limits::Column::AllowedSymbols,
            change.allowed_symbols.is_keep(),
            list(&change.allowed_symbols).into(),
        ),
        (
            risk_limits::Column::MaxOrdersPerSecond,
            change.max_orders_per_second.is_keep(),
            change
                .max_orders_per_second
                .as_set()
                .map(|n| i32::try_from(*n).unwrap_or(MAX_RATE))
                .into(),
        ),
        (
            risk_limits::Column::KillSwitch,
            change.kill_switch.is_none(),
            change.kill_switch.unwrap_or_default().into(),
        ),
    ];
    columns
        .into_iter()
        .filter(|(_, keep, _)| !keep)
        .map(|(column, _, value)| (column, value))
        .collect()
}

/// Deletes a user's row, audited first: they fall back to the global row and the
/// defaults. Returns whether there was a row.
pub async fn clear(
    db: &DatabaseConnection,
    audit: &AuditLog,
    writer: &Writer,
    user_id: &str,
) -> Result<bool, RiskError> {
    let scope = Scope::User(user_id.to_string());
    check_scope(db, &scope).await?;
    record(audit, writer, &scope, "risk.clear", vec![]).await?;
    let deleted = risk_limits::Entity::delete_by_id(user_id.to_string())
        .exec(db)
        .instrument(pinnacle_common::db::span(db, "DELETE", "risk_limits"))
        .await?;
    announce(audit, &scope).await;
    Ok(deleted.rows_affected > 0)
}

/// The stored rows and the limits in force.
#[derive(Debug, Serialize, Deserialize)]
pub struct View {
    /// The `global` row, if any.
    pub global: Option<Row>,
    /// The user's row, if a user was asked for and has one.
    pub user: Option<Row>,
    /// What applies to the user (or, for the global view, to anyone without a row).
    pub in_force: InForce,
}

/// One stored row.
#[derive(Debug, Serialize, Deserialize)]
pub struct Row {
    /// `global` or the user id.
    pub scope: String,
    /// Largest quantity per order.
    pub max_quantity: Option<i64>,
    /// Largest order value, paise.
    pub max_order_value_paise: Option<i64>,
    /// Exchanges allowed.
    pub allowed_exchanges: Option<Vec<String>>,
    /// `EXCHANGE:SYMBOL`s allowed.
    pub allowed_symbols: Option<Vec<String>>,
    /// Orders per second.
    pub max_orders_per_second: Option<i32>,
    /// The kill switch.
    pub kill_switch: bool,
    /// Last change.
    pub updated_at: chrono::DateTime<Utc>,
}

fn split(text: Option<String>) -> Option<Vec<String>> {
    text.map(|t| t.split(',').map(str::to_string).collect())
}

impl From<risk_limits::Model> for Row {
    fn from(row: risk_limits::Model) -> Self {
        Self {
            scope: row.scope,
            max_quantity: row.max_quantity,
            max_order_value_paise: row.max_order_value,
            allowed_exchanges: split(row.allowed_exchanges),
            allowed_symbols: split(row.allowed_symbols),
            max_orders_per_second: row.max_orders_per_second,
            kill_switch: row.kill_switch,
            updated_at: row.updated_at,
        }
    }
}

/// The two rows combined (the stricter wins; see docs/PROTOCOL.md, "Pre-trade risk").
#[derive(Debug, Serialize, Deserialize)]
pub struct InForce {
    /// Either kill switch is on.
    pub kill_switch: bool,
    /// Largest quantity per order.
    pub max_quantity: Option<i64>,
    /// Largest order value, paise.
    pub max_order_value_paise: Option<i64>,
    /// Exchanges allowed (`null`: any).
    pub allowed_exchanges: Option<Vec<String>>,
    /// `EXCHANGE:SYMBOL`s allowed (`null`: any).
    pub allowed_symbols: Option<Vec<String>>,
    /// Orders per second.
    pub max_orders_per_second: i32,
    /// Whether that rate is the built-in default (9, Angel One's limit per client code).
    pub default_rate: bool,
}

/// Reads the rows and combines them for `user_id` (or for a user with no row).
pub async fn show(db: &DatabaseConnection, user_id: Option<&str>) -> Result<View, RiskError> {
    if let Some(id) = user_id {
        check_scope(db, &Scope::User(id.to_string())).await?;
    }
    let global = risk_limits::Entity::find_by_id(risk_limits::GLOBAL.to_string())
        .one(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "risk_limits"))
        .await?;
    let user = match user_id {
        Some(id) => {
            risk_limits::Entity::find_by_id(id.to_string())
                .one(db)
                .instrument(pinnacle_common::db::span(db, "SELECT", "risk_limits"))
                .await?
        }
        None => None,
    };
    let limits = limits_for(db, user_id.unwrap_or(risk_limits::GLOBAL)).await?;
    let default_rate = [&global, &user]
        .iter()
        .all(|row| row.as_ref().and_then(|r| r.max_orders_per_second).is_none());
    Ok(View {
        global: global.map(Row::from),
        user: user.map(Row::from),
        in_force: InForce {
            kill_switch: limits.kill_switch,
            max_quantity: limits.max_quantity,
            max_order_value_paise: limits.max_order_value,
            allowed_exchanges: limits.allowed_exchanges,
            allowed_symbols: limits.allowed_symbols,
            max_orders_per_second: limits.max_orders_per_second,
            default_rate: default_rate
                && limits.max_orders_per_second == DEFAULT_MAX_ORDERS_PER_SECOND,
        },
    })
}
