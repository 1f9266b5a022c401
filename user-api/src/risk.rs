//! Pre-trade limits and kill switches: `GET|PUT /v1/risk-limits/global` and
//! `GET|PUT|DELETE /v1/users/{user_id}/risk-limits`.
//!
//! A change names only what it changes: a field left out keeps its value, `null` lifts the
//! limit (no limit from this row), a value sets it; `kill_switch: true|false` trips or
//! resets the scope's kill switch. Every change is an audit event (`outcome: changed`,
//! purpose `risk.set`, `risk.clear`, `kill_switch.on` or `kill_switch.off`) on the
//! affected user's chain, or on `audit.credential.global` for the platform row, stored
//! before the row changes: with no audit stream nothing changes. Workers read the limits
//! for every order, so a change applies to the next one. Reading is open to the user
//! themselves; changing is for the admin.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use pinnacle_common::audit::{AuditError, AuditLog};
use pinnacle_common::auth::SCOPE_READ;
use pinnacle_common::entities::risk_limits::{self, limits_for, DEFAULT_MAX_ORDERS_PER_SECOND};
use pinnacle_common::entities::users;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::model::{AuditEvent, AuditOutcome};
use pinnacle_common::telemetry;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, SqlErr,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tracing::Instrument as _;

use crate::accounts::Writer;
use crate::body::JsonObject;
use crate::caller::Caller;
use crate::error::{check_user_id, ApiError};
use crate::state::AppState;

/// The most orders per second a row may allow.
pub const MAX_RATE: i32 = 100_000;
/// The largest quantity limit a row may set.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// The largest order-value limit a row may set, paise (₹10 lakh crore).
pub const MAX_VALUE_PAISE: i64 = 1_000_000_000_000_000;
/// The most entries in an allow-list.
pub const MAX_LIST: usize = 500;
/// An allow-list entry: an exchange (`NSE`) or `EXCHANGE:SYMBOL` (`NSE:M&M-EQ`).
pub const LIST_ENTRY_PATTERN: &str = "^[A-Z0-9&._:-]{1,64}$";

/// Which row a change applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The platform-wide row.
    Global,
    /// One user's row.
    User(String),
}

impl Scope {
    /// The row's key, and the user whose audit chain records its changes.
    pub fn key(&self) -> &str {
        match self {
            Scope::Global => risk_limits::GLOBAL,
            Scope::User(id) => id,
        }
    }
}

/// A new value for one limit: absent keeps it, `null` lifts it, a value sets it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Change<T> {
    /// Not given: keep what is stored.
    #[default]
    Keep,
    /// `null`: no limit from this row.
    Lift,
    /// A value.
    Set(T),
}

impl<T> Change<T> {
    /// Whether the field was left out.
    pub fn is_keep(&self) -> bool {
        matches!(self, Change::Keep)
    }

    /// The new value, when the change sets one.
    pub fn as_set(&self) -> Option<&T> {
        match self {
            Change::Set(value) => Some(value),
            _ => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Change<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => Change::Lift,
            Some(value) => Change::Set(value),
        })
    }
}

impl<T: Serialize> Serialize for Change<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Change::Keep | Change::Lift => serializer.serialize_none(),
            Change::Set(value) => value.serialize(serializer),
        }
    }
}

/// The body of a `PUT`: only the fields to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsChange {
    /// Largest quantity per order.
    #[serde(
        default,
        skip_serializing_if = "Change::is_keep",
        deserialize_with = "integer_change"
    )]
    pub max_quantity: Change<i64>,
    /// Largest order value (price × quantity), paise.
    #[serde(
        default,
        skip_serializing_if = "Change::is_keep",
        deserialize_with = "integer_change"
    )]
    pub max_order_value_paise: Change<i64>,
    /// Exchanges allowed.
    #[serde(default, skip_serializing_if = "Change::is_keep")]
    pub allowed_exchanges: Change<Vec<String>>,
    /// `EXCHANGE:SYMBOL`s allowed.
    #[serde(default, skip_serializing_if = "Change::is_keep")]
    pub allowed_symbols: Change<Vec<String>>,
    /// Orders (place, modify and cancel together) per second per user.
    #[serde(
        default,
        skip_serializing_if = "Change::is_keep",
        deserialize_with = "integer_change"
    )]
    pub max_orders_per_second: Change<i64>,
    /// The kill switch: `true` refuses every new order in the scope (`null` is refused:
    /// a switch has no "lifted" state).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_bool"
    )]
    pub kill_switch: Option<bool>,
}

/// An integer [`Change`], as JSON Schema reads an integer (`5.0` is `5`).
fn integer_change<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Change<i64>, D::Error> {
    Ok(match crate::body::json_integer(deserializer)? {
        None => Change::Lift,
        Some(value) => Change::Set(value),
    })
}

/// A boolean that, when present, must be `true` or `false`.
fn present_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    bool::deserialize(deserializer).map(Some)
}

impl LimitsChange {
    /// The names of the fields this change touches, for the audit event.
    pub fn fields(&self) -> Vec<String> {
        [
            ("max_quantity", self.max_quantity.is_keep()),
            (
                "max_order_value_paise",
                self.max_order_value_paise.is_keep(),
            ),
            ("allowed_exchanges", self.allowed_exchanges.is_keep()),
            ("allowed_symbols", self.allowed_symbols.is_keep()),
            (
                "max_orders_per_second",
                self.max_orders_per_second.is_keep(),
            ),
            ("kill_switch", self.kill_switch.is_none()),
        ]
        .into_iter()
        .filter(|(_, keep)| !keep)
        .map(|(name, _)| name.to_string())
        .collect()
    }

    /// The audit purpose: `kill_switch.on|off` for a change of the kill switch alone, else
    /// `risk.set`.
    pub fn purpose(&self) -> &'static str {
        match (self.kill_switch, self.fields().len()) {
            (Some(true), 1) => "kill_switch.on",
            (Some(false), 1) => "kill_switch.off",
            _ => "risk.set",
        }
    }

    /// Checks every value; the first bad one is the error.
    pub fn validate(&self) -> Result<(), String> {
        if self.fields().is_empty() {
            return Err("the body changes nothing: give at least one field".into());
        }
        for (name, value, max) in [
            ("max_quantity", self.max_quantity.as_set(), MAX_QUANTITY),
            (
                "max_order_value_paise",
                self.max_order_value_paise.as_set(),
                MAX_VALUE_PAISE,
            ),
        ] {
            if value.is_some_and(|v| !(1..=max).contains(v)) {
                return Err(format!("{name} must be 1 to {max} (or null to lift it)"));
            }
        }
        if let Some(rate) = self.max_orders_per_second.as_set() {
            if !(1..=i64::from(MAX_RATE)).contains(rate) {
                return Err(format!(
                    "max_orders_per_second must be 1 to {MAX_RATE} (or null for the default)"
                ));
            }
        }
        for (name, list) in [
            ("allowed_exchanges", self.allowed_exchanges.as_set()),
            ("allowed_symbols", self.allowed_symbols.as_set()),
        ] {
            if let Some(list) = list {
                check_list(name, list)?;
            }
        }
        Ok(())
    }
}

fn check_list(name: &str, list: &[String]) -> Result<(), String> {
    if list.is_empty() || list.len() > MAX_LIST {
        return Err(format!(
            "{name} must list 1 to {MAX_LIST} entries (null allows any; the kill switch \
             allows none)"
        ));
    }
    let entry_ok = |entry: &str| {
        (1..=64).contains(&entry.len())
            && entry
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"&._:-".contains(&b))
    };
    match list.iter().find(|entry| !entry_ok(entry)) {
        Some(bad) => Err(format!(
            "{name}: {bad:?} is not an upper-case exchange or EXCHANGE:SYMBOL"
        )),
        None => Ok(()),
    }
}

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
    if risk_limits::Entity::find_by_id(key.clone())
        .one(db)
        .instrument(pinnacle_common::db::span(db, "SELECT", "risk_limits"))
        .await?
        .is_none()
    {
        let fresh = risk_limits::Model::unlimited(&key)
            .into_active_model()
            .reset_all();
        let inserted = fresh
            .insert(db)
            .instrument(pinnacle_common::db::span(db, "INSERT", "risk_limits"))
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let list = |change: &Change<Vec<String>>| match change {
        Change::Set(items) => Some(items.join(",")),
        _ => None,
    };
    let mut update = risk_limits::Entity::update_many()
        .col_expr(risk_limits::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(risk_limits::Column::Scope.eq(key.as_str()));
    let columns: [(risk_limits::Column, bool, sea_orm::Value); 5] = [
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
    ];
    for (column, keep, value) in columns {
        if !keep {
            update = update.col_expr(column, Expr::value(value));
        }
    }
    if let Some(on) = change.kill_switch {
        update = update.col_expr(risk_limits::Column::KillSwitch, Expr::value(on));
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
    Ok(row)
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

fn writer(caller: &Caller) -> Writer {
    Writer {
        actor: caller.actor(),
        token_id: caller.token_id(),
        request_id: uuid::Uuid::now_v7().to_string(),
    }
}

/// `GET /v1/risk-limits/global` (admin).
pub async fn get_global(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<View>, ApiError> {
    caller.require_admin()?;
    Ok(Json(show(&state.db, None).await?))
}

/// `PUT /v1/risk-limits/global` (admin).
pub async fn put_global(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonObject<LimitsChange>, ApiError>,
) -> Result<Json<View>, ApiError> {
    caller.require_admin()?;
    let JsonObject(change) = body?;
    set(
        &state.db,
        &state.audit,
        &writer(&caller),
        &Scope::Global,
        change,
    )
    .await?;
    Ok(Json(show(&state.db, None).await?))
}

/// `GET /v1/users/{user_id}/risk-limits` (the user, `read` scope, or the admin).
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<View>, ApiError> {
    let Path(user_id) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_READ)?;
    check_user_id(&user_id)?;
    Ok(Json(show(&state.db, Some(&user_id)).await?))
}

/// `PUT /v1/users/{user_id}/risk-limits` (admin).
pub async fn put_user(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<JsonObject<LimitsChange>, ApiError>,
) -> Result<Json<View>, ApiError> {
    let Path(user_id) = path?;
    caller.require_admin()?;
    check_user_id(&user_id)?;
    let JsonObject(change) = body?;
    let scope = Scope::User(user_id.clone());
    set(&state.db, &state.audit, &writer(&caller), &scope, change).await?;
    Ok(Json(show(&state.db, Some(&user_id)).await?))
}

/// `DELETE /v1/users/{user_id}/risk-limits` (admin): the user falls back to the global row.
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<View>, ApiError> {
    let Path(user_id) = path?;
    caller.require_admin()?;
    check_user_id(&user_id)?;
    clear(&state.db, &state.audit, &writer(&caller), &user_id).await?;
    Ok(Json(show(&state.db, Some(&user_id)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<LimitsChange, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn absent_keeps_null_lifts_value_sets() {
        let change = parse(r#"{"max_quantity": 10, "max_order_value_paise": null}"#).expect("ok");
        assert_eq!(change.max_quantity, Change::Set(10));
        assert_eq!(change.max_order_value_paise, Change::Lift);
        assert_eq!(change.allowed_exchanges, Change::Keep);
        assert_eq!(change.fields(), ["max_quantity", "max_order_value_paise"]);
        assert_eq!(change.purpose(), "risk.set");
        assert_eq!(
            serde_json::to_string(&change).expect("ok"),
            r#"{"max_quantity":10,"max_order_value_paise":null}"#
        );
    }

    #[test]
    fn the_kill_switch_alone_has_its_own_purpose() {
        assert_eq!(
            parse(r#"{"kill_switch": true}"#).expect("ok").purpose(),
            "kill_switch.on"
        );
        assert_eq!(
            parse(r#"{"kill_switch": false}"#).expect("ok").purpose(),
            "kill_switch.off"
        );
        assert_eq!(
            parse(r#"{"kill_switch": true, "max_quantity": 1}"#)
                .expect("ok")
                .purpose(),
            "risk.set"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            r#"{}"#,
            r#"{"max_quantity": 0}"#,
            r#"{"max_quantity": 1000000001}"#,
            r#"{"max_order_value_paise": -5}"#,
            r#"{"max_orders_per_second": 0}"#,
            r#"{"max_orders_per_second": 100001}"#,
            r#"{"allowed_exchanges": []}"#,
            r#"{"allowed_exchanges": ["nse"]}"#,
            r#"{"allowed_symbols": ["NSE:SBIN EQ"]}"#,
            r#"{"allowed_symbols": ["NSE,BSE"]}"#,
        ] {
            assert!(parse(bad).expect("ok").validate().is_err(), "{bad}");
        }
        assert!(parse(r#"{"unknown": 1}"#).is_err());
        assert!(parse(r#"{"kill_switch": null}"#).is_err());
        assert_eq!(
            parse(r#"{"max_quantity": 5.0}"#).expect("ok").max_quantity,
            Change::Set(5)
        );
        assert!(
            parse(r#"{"allowed_symbols": ["NSE:M&M-EQ"], "max_orders_per_second": 20}"#)
                .expect("ok")
                .validate()
                .is_ok()
        );
    }
}
