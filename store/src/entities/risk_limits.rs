//! `risk_limits`: pre-trade limits and kill switches, for the platform (`global`) or a user,
//! and [`limits_for`], which combines the two rows into the limits in force (the stricter
//! of the two wins; either kill switch stops new orders).

use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QueryFilter};

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

/// Angel One's published limit: 9 place/modify/cancel requests per second per client.
pub const DEFAULT_MAX_ORDERS_PER_SECOND: i32 = 9;

/// The limits in force for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Either kill switch is on.
    pub kill_switch: bool,
    /// Largest quantity.
    pub max_quantity: Option<i64>,
    /// Largest value, paise.
    pub max_order_value: Option<i64>,
    /// Allowed exchanges (`None`: any).
    pub allowed_exchanges: Option<Vec<String>>,
    /// Allowed `EXCHANGE:SYMBOL` (`None`: any).
    pub allowed_symbols: Option<Vec<String>>,
    /// Orders per second.
    pub max_orders_per_second: i32,
}

fn list(text: &Option<String>) -> Option<Vec<String>> {
    text.as_ref().map(|t| {
        t.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn stricter<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn intersect(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.into_iter().filter(|v| y.contains(v)).collect()),
        (x, y) => x.or(y),
    }
}

/// Loads the global and the user's rows and combines them.
pub async fn limits_for(db: &impl ConnectionTrait, user_id: &str) -> Result<Limits, DbErr> {
    let rows = rows_for(db, user_id).await?;
    Ok(combine(rows.iter()))
}

/// The global row and `user_id`'s row, those that exist (one statement).
pub async fn rows_for(db: &impl ConnectionTrait, user_id: &str) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::Scope.is_in([GLOBAL, user_id]))
        .all(db)
        .await
}

/// The limits in force under `rows` (the global row and a user's, either may be absent):
/// the stricter of each limit wins, either kill switch stops new orders, and without a
/// rate in any row the rate is [`DEFAULT_MAX_ORDERS_PER_SECOND`].
pub fn combine<'a>(rows: impl IntoIterator<Item = &'a Model>) -> Limits {
    let mut limits = Limits {
        max_orders_per_second: DEFAULT_MAX_ORDERS_PER_SECOND,
        ..Limits::default()
    };
    let mut rate: Option<i32> = None;
    for row in rows {
        limits.kill_switch |= row.kill_switch;
        limits.max_quantity = stricter(limits.max_quantity, row.max_quantity);
        limits.max_order_value = stricter(limits.max_order_value, row.max_order_value);
        limits.allowed_exchanges =
            intersect(limits.allowed_exchanges, list(&row.allowed_exchanges));
        limits.allowed_symbols = intersect(limits.allowed_symbols, list(&row.allowed_symbols));
        rate = stricter(rate, row.max_orders_per_second);
    }
    if let Some(rate) = rate {
        limits.max_orders_per_second = rate;
    }
    limits
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stricter_limit_wins() {
        assert_eq!(stricter(Some(5), Some(3)), Some(3));
        assert_eq!(stricter(None, Some(3)), Some(3));
        assert_eq!(
            intersect(
                Some(vec!["NSE".into(), "BSE".into()]),
                Some(vec!["NSE".into()])
            ),
            Some(vec!["NSE".to_string()])
        );
    }

    #[test]
    fn rows_combine_into_the_limits_in_force() {
        let none = combine([]);
        assert_eq!(none.max_orders_per_second, DEFAULT_MAX_ORDERS_PER_SECOND);
        assert!(!none.kill_switch);
        let global = Model {
            max_quantity: Some(100),
            kill_switch: true,
            ..Model::unlimited(GLOBAL)
        };
        let user = Model {
            max_quantity: Some(500),
            max_orders_per_second: Some(2),
            allowed_exchanges: Some("NSE, BSE".into()),
            ..Model::unlimited("u1")
        };
        let limits = combine([&global, &user]);
        assert!(limits.kill_switch);
        assert_eq!(limits.max_quantity, Some(100));
        assert_eq!(limits.max_orders_per_second, 2);
        assert_eq!(
            limits.allowed_exchanges,
            Some(vec!["NSE".to_string(), "BSE".to_string()])
        );
    }
}
