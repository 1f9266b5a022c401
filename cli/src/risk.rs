//! `pinnacle risk …`: the operator's view and control of pre-trade limits and kill switches
//! (the `risk_limits` table, over `DATABASE_URL`).
//!
//! A scope is `global` (everyone) or one user id. `show` prints both rows and the limits in
//! force for a user; `set` changes only the limits it is given (`none` lifts one); `kill`
//! and `resume` turn a kill switch on and off; `clear` deletes a user's row. Every change
//! is logged with who ran it (`$USER`) and takes effect on the next order: workers read the
//! limits per order.

use pinnacle_common::entities::{risk_limits, users};
use pinnacle_order_worker::risk::{limits_for, Limits, DEFAULT_MAX_ORDERS_PER_SECOND};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, IntoActiveModel};
use serde::Serialize;

/// Which row a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The platform-wide row.
    Global,
    /// One user's row.
    User(String),
}

impl Scope {
    fn key(&self) -> &str {
        match self {
            Scope::Global => risk_limits::GLOBAL,
            Scope::User(id) => id,
        }
    }
}

/// A new value for one limit: leave it, lift it, or set it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Change<T> {
    /// Not given: keep what is stored.
    #[default]
    Keep,
    /// `none`: no limit from this row.
    Lift,
    /// A value.
    Set(T),
}

impl<T> Change<T> {
    fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Change::Keep => current,
            Change::Lift => None,
            Change::Set(value) => Some(value),
        }
    }
}

/// Parses `none` (lift) or a value with `parse`.
pub fn parse_change<T>(text: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Change<T>, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Change::Lift);
    }
    parse(text).map(Change::Set).ok_or_else(|| {
        format!("`{text}` is not a valid value (give a value, or `none` to lift the limit)")
    })
}

/// A positive integer.
pub fn positive(text: &str) -> Option<i64> {
    text.parse().ok().filter(|n| *n > 0)
}

/// Rupees (`820.50`) as paise.
pub fn rupees(text: &str) -> Option<i64> {
    pinnacle_publisher::sim::parse_rupees(text)
}

/// A comma-separated list of upper-case tokens (`NSE,BSE`, `NSE:SBIN-EQ`).
pub fn list(text: &str) -> Option<String> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    let ok = items.iter().all(|i| {
        !i.is_empty()
            && i.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_:&.".contains(&b))
    });
    ok.then(|| items.join(","))
}

/// What `set` changes.
#[derive(Debug, Clone, Default)]
pub struct LimitsChange {
    /// Largest quantity per order.
    pub max_quantity: Change<i64>,
    /// Largest order value, paise.
    pub max_order_value: Change<i64>,
    /// Allowed exchanges.
    pub allowed_exchanges: Change<String>,
    /// Allowed `EXCHANGE:SYMBOL`s.
    pub allowed_symbols: Change<String>,
    /// Orders per second per user.
    pub max_orders_per_second: Change<i64>,
    /// The kill switch.
    pub kill_switch: Option<bool>,
}

/// A command failed.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// No user with that id.
    #[error("no user {0}")]
    NoUser(String),
    /// A rate does not fit the column.
    #[error("--max-orders-per-second {0} is too large")]
    RateTooLarge(i64),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

async fn check_scope(db: &DatabaseConnection, scope: &Scope) -> Result<(), RiskError> {
    if let Scope::User(id) = scope {
        if users::Entity::find_by_id(id.clone())
            .one(db)
            .await?
            .is_none()
        {
            return Err(RiskError::NoUser(id.clone()));
        }
    }
    Ok(())
}

/// Applies `change` to `scope`'s row (creating it), and returns the row as stored.
pub async fn set(
    db: &DatabaseConnection,
    scope: &Scope,
    change: LimitsChange,
) -> Result<risk_limits::Model, RiskError> {
    check_scope(db, scope).await?;
    let rate = match change.max_orders_per_second {
        Change::Set(n) => Change::Set(i32::try_from(n).map_err(|_| RiskError::RateTooLarge(n))?),
        Change::Lift => Change::Lift,
        Change::Keep => Change::Keep,
    };
    let existing = risk_limits::Entity::find_by_id(scope.key().to_string())
        .one(db)
        .await?;
    let current = existing
        .clone()
        .unwrap_or_else(|| risk_limits::Model::unlimited(scope.key()));
    let row = risk_limits::Model {
        max_quantity: change.max_quantity.apply(current.max_quantity),
        max_order_value: change.max_order_value.apply(current.max_order_value),
        allowed_exchanges: change
            .allowed_exchanges
            .apply(current.allowed_exchanges.clone()),
        allowed_symbols: change
            .allowed_symbols
            .apply(current.allowed_symbols.clone()),
        max_orders_per_second: rate.apply(current.max_orders_per_second),
        kill_switch: change.kill_switch.unwrap_or(current.kill_switch),
        updated_at: chrono::Utc::now(),
        scope: current.scope.clone(),
    };
    let active = row.into_active_model().reset_all();
    let stored = if existing.is_some() {
        active.update(db).await?
    } else {
        active.insert(db).await?
    };
    tracing::info!(
        scope = %stored.scope,
        operator = %std::env::var("USER").unwrap_or_default(),
        kill_switch = stored.kill_switch,
        "risk limits changed"
    );
    Ok(stored)
}

/// Deletes a user's row (their limits fall back to the global row and the defaults).
pub async fn clear(db: &DatabaseConnection, user_id: &str) -> Result<bool, RiskError> {
    let deleted = risk_limits::Entity::delete_by_id(user_id.to_string())
        .exec(db)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// The stored rows and the limits in force, as `show` prints them.
#[derive(Debug, Serialize)]
pub struct View {
    /// The `global` row, if any.
    pub global: Option<Row>,
    /// The user's row, if a user was asked for and has one.
    pub user: Option<Row>,
    /// What applies to the user (or to anyone without a row of their own).
    pub in_force: InForce,
}

/// One stored row.
#[derive(Debug, Serialize)]
pub struct Row {
    /// `global` or the user id.
    pub scope: String,
    /// Largest quantity per order.
    pub max_quantity: Option<i64>,
    /// Largest order value, paise.
    pub max_order_value_paise: Option<i64>,
    /// Allowed exchanges.
    pub allowed_exchanges: Option<String>,
    /// Allowed `EXCHANGE:SYMBOL`s.
    pub allowed_symbols: Option<String>,
    /// Orders per second.
    pub max_orders_per_second: Option<i32>,
    /// The kill switch.
    pub kill_switch: bool,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<risk_limits::Model> for Row {
    fn from(row: risk_limits::Model) -> Self {
        Self {
            scope: row.scope,
            max_quantity: row.max_quantity,
            max_order_value_paise: row.max_order_value,
            allowed_exchanges: row.allowed_exchanges,
            allowed_symbols: row.allowed_symbols,
            max_orders_per_second: row.max_orders_per_second,
            kill_switch: row.kill_switch,
            updated_at: row.updated_at.to_rfc3339(),
        }
    }
}

/// The combined limits (the stricter of the two rows; see docs/PROTOCOL.md).
#[derive(Debug, Serialize)]
pub struct InForce {
    /// Either kill switch is on.
    pub kill_switch: bool,
    /// Largest quantity per order.
    pub max_quantity: Option<i64>,
    /// Largest order value, paise.
    pub max_order_value_paise: Option<i64>,
    /// Allowed exchanges (`None`: any).
    pub allowed_exchanges: Option<Vec<String>>,
    /// Allowed `EXCHANGE:SYMBOL`s (`None`: any).
    pub allowed_symbols: Option<Vec<String>>,
    /// Orders per second (the default is Angel One's 9).
    pub max_orders_per_second: i32,
    /// Whether the rate is the built-in default.
    pub default_rate: bool,
}

/// Reads the rows and combines them for `user_id` (or for a user with no row).
pub async fn show(db: &DatabaseConnection, user_id: Option<&str>) -> Result<View, RiskError> {
    if let Some(id) = user_id {
        check_scope(db, &Scope::User(id.to_string())).await?;
    }
    let global = risk_limits::Entity::find_by_id(risk_limits::GLOBAL.to_string())
        .one(db)
        .await?;
    let user = match user_id {
        Some(id) => {
            risk_limits::Entity::find_by_id(id.to_string())
                .one(db)
                .await?
        }
        None => None,
    };
    // Without a user, the global row alone: what a user without a row of their own gets.
    let limits: Limits = limits_for(db, user_id.unwrap_or(risk_limits::GLOBAL)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_lift_and_junk_is_refused() {
        assert_eq!(parse_change("none", positive), Ok(Change::Lift));
        assert_eq!(parse_change("NONE", positive), Ok(Change::Lift));
        assert_eq!(parse_change("25", positive), Ok(Change::Set(25)));
        for junk in ["0", "-3", "1.5", "", "ten"] {
            assert!(parse_change(junk, positive).is_err(), "{junk}");
        }
        assert_eq!(parse_change("820.50", rupees), Ok(Change::Set(82_050)));
        assert_eq!(list("NSE, BSE"), Some("NSE,BSE".into()));
        assert_eq!(
            list("NSE:SBIN-EQ,NSE:M&M"),
            Some("NSE:SBIN-EQ,NSE:M&M".into())
        );
        for junk in ["nse", "NSE,,BSE", "NSE;DROP", ""] {
            assert_eq!(list(junk), None, "{junk}");
        }
    }
}
