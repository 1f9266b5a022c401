//! `pinnacle risk show|set|clear` and `pinnacle kill-switch on|off`: pre-trade limits and
//! kill switches through the user API (`/v1/risk-limits/global`,
//! `/v1/users/{id}/risk-limits`), so every change is audited and checked in one place.
//!
//! A scope is `--global` (everyone) or `--user ID`. `set` changes only the limits it is
//! given (`none` lifts one); the user API announces every change to the workers' caches,
//! so it applies to the next order (within a second if the announcement is lost).

use clap::{Args, Subcommand, ValueEnum};
use pinnacle_user_api::risk::{Change, LimitsChange};
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{segment, Api};
use crate::trader::{print_value, Common, Shape};

/// `--global` or `--user ID`.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ScopeArgs {
    /// The platform-wide row (applies to everyone).
    #[arg(long)]
    pub global: bool,
    /// One user's row (their id from the user API).
    #[arg(long, value_name = "USER_ID")]
    pub user: Option<String>,
}

impl ScopeArgs {
    fn path(&self) -> String {
        match &self.user {
            Some(id) => format!("/v1/users/{}/risk-limits", segment(id)),
            None => "/v1/risk-limits/global".into(),
        }
    }
}

fn change<T: Clone + Send + Sync + 'static>(
    parse: fn(&str) -> Option<T>,
) -> impl Fn(&str) -> Result<Change<T>, String> + Clone {
    move |text| parse_change(text, parse)
}

/// `pinnacle risk …`.
#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// Print the global row, a user's row and the limits in force for them.
    Show {
        /// The user (default: the global row and what a user without a row of their own gets).
        #[arg(long, value_name = "USER_ID")]
        user: Option<String>,
    },
    /// Change limits; each option takes a value or `none` (no limit from this row);
    /// options not given keep their value. Without a row, a user has the global row's
    /// limits and 9 orders per second (Angel One's limit per client code).
    Set {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Largest quantity per order.
        #[arg(long, value_name = "N|none", value_parser = change(positive))]
        max_quantity: Option<Change<i64>>,
        /// Largest order value (price × quantity) in rupees, e.g. 500000 or 2500.50.
        #[arg(long, value_name = "RUPEES|none", value_parser = change(rupees))]
        max_order_value: Option<Change<i64>>,
        /// Allowed exchanges, comma separated (NSE,BSE).
        #[arg(long, value_name = "LIST|none", value_parser = change(list))]
        exchanges: Option<Change<Vec<String>>>,
        /// Allowed symbols, comma separated (NSE:SBIN-EQ,NSE:INFY-EQ).
        #[arg(long, value_name = "LIST|none", value_parser = change(list))]
        symbols: Option<Change<Vec<String>>>,
        /// Orders (place, modify and cancel together) per second per user; the default is
        /// 9, Angel One's limit per client code.
        #[arg(long, value_name = "N|none", value_parser = change(positive))]
        max_orders_per_second: Option<Change<i64>>,
    },
    /// Delete a user's row: they fall back to the global row and the defaults.
    Clear {
        /// The user.
        #[arg(long, value_name = "USER_ID")]
        user: String,
    },
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Switch {
    /// Refuse every new order in the scope (cancels still work).
    On,
    /// Accept orders again.
    Off,
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
    pinnacle_publisher::sim::parse_rupees(text).filter(|p| *p > 0)
}

/// A comma-separated list of upper-case tokens (`NSE,BSE`, `NSE:SBIN-EQ`).
pub fn list(text: &str) -> Option<Vec<String>> {
    let items: Vec<String> = text.split(',').map(|i| i.trim().to_string()).collect();
    let ok = items.iter().all(|i| {
        !i.is_empty()
            && i.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_:&.".contains(&b))
    });
    ok.then_some(items)
}

/// `pinnacle risk …`.
pub async fn risk(common: &Common, command: RiskCommand) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let view = match command {
        RiskCommand::Show { user } => match user {
            Some(id) => {
                api.get(&format!("/v1/users/{}/risk-limits", segment(&id)))
                    .await?
            }
            None => api.get("/v1/risk-limits/global").await?,
        },
        RiskCommand::Set {
            scope,
            max_quantity,
            max_order_value,
            exchanges,
            symbols,
            max_orders_per_second,
        } => {
            let change = LimitsChange {
                max_quantity: max_quantity.unwrap_or_default(),
                max_order_value_paise: max_order_value.unwrap_or_default(),
                allowed_exchanges: exchanges.unwrap_or_default(),
                allowed_symbols: symbols.unwrap_or_default(),
                max_orders_per_second: max_orders_per_second.unwrap_or_default(),
                kill_switch: None,
            };
            anyhow::ensure!(
                !change.fields().is_empty(),
                "nothing to change: give at least one limit (see pinnacle risk set --help)"
            );
            let body = serde_json::to_value(&change)?;
            api.call(Method::PUT, &scope.path(), Some(&body)).await?
        }
        RiskCommand::Clear { user } => {
            let path = format!("/v1/users/{}/risk-limits", segment(&user));
            api.call(Method::DELETE, &path, None).await?
        }
    };
    show(common, &view);
    Ok(())
}

/// `pinnacle kill-switch on|off --global|--user ID`.
pub async fn kill_switch(common: &Common, switch: Switch, scope: ScopeArgs) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let body = json!({ "kill_switch": matches!(switch, Switch::On) });
    let view = api.call(Method::PUT, &scope.path(), Some(&body)).await?;
    show(common, &view);
    Ok(())
}

/// The rows and the limits in force as a table (`--json`: as the API sent them).
fn show(common: &Common, view: &Value) {
    const COLUMNS: &[&str] = &[
        "row",
        "kill_switch",
        "max_quantity",
        "max_order_value_paise",
        "max_orders_per_second",
        "allowed_exchanges",
        "allowed_symbols",
    ];
    if common.json {
        print_value(common, view, Shape::Fields);
        return;
    }
    let mut rows = Vec::new();
    for (name, key) in [
        ("global", "global"),
        ("user", "user"),
        ("in force", "in_force"),
    ] {
        let mut row = view[key].clone();
        if let Some(fields) = row.as_object_mut() {
            fields.insert("row".into(), name.into());
            for list in ["allowed_exchanges", "allowed_symbols"] {
                if let Some(items) = fields.get(list).and_then(Value::as_array) {
                    let joined: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                    fields.insert(list.into(), joined.join(",").into());
                }
            }
            rows.push(row);
        }
    }
    print_value(
        common,
        &json!({ "limits": rows }),
        Shape::List("limits", COLUMNS),
    );
    if view["in_force"]["default_rate"] == true {
        crate::output::line(
            "(9 orders per second is the default: Angel One's limit per client code)",
        );
    }
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
        assert_eq!(list("NSE, BSE"), Some(vec!["NSE".into(), "BSE".into()]));
        assert_eq!(
            list("NSE:SBIN-EQ,NSE:M&M"),
            Some(vec!["NSE:SBIN-EQ".into(), "NSE:M&M".into()])
        );
        for junk in ["nse", "NSE,,BSE", "NSE;DROP", ""] {
            assert_eq!(list(junk), None, "{junk}");
        }
    }
}
