//! `risk_limits`: pre-trade limits and kill switches, for the platform (`global`) or a user.

use sea_orm::entity::prelude::*;

/// The scope of the platform-wide row.
pub const GLOBAL: &str = "global";

/// A row of limits. `None` means "no limit from this row".
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "risk_limits")]
pub struct Model {
    /// [`GLOBAL`] or a user id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    /// Largest quantity per order.
    pub max_quantity: Option<i64>,
    /// Largest order value (price × quantity), in paise.
    pub max_order_value: Option<i64>,
    /// Comma-separated exchanges allowed, e.g. `NSE,BSE`.
    pub allowed_exchanges: Option<String>,
    /// Comma-separated `EXCHANGE:SYMBOL` allowed.
    pub allowed_symbols: Option<String>,
    /// Orders (place, modify, cancel) per second per user.
    pub max_orders_per_second: Option<i32>,
    /// Refuse every new order in this scope.
    pub kill_switch: bool,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

impl Model {
    /// A row for `scope` that limits nothing (what a scope without a row means).
    pub fn unlimited(scope: &str) -> Self {
        Self {
            scope: scope.to_string(),
            max_quantity: None,
            max_order_value: None,
            allowed_exchanges: None,
            allowed_symbols: None,
            max_orders_per_second: None,
            kill_switch: false,
            updated_at: chrono::Utc::now(),
        }
    }
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
