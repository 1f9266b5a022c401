//! What the operator verbs share: the `--user` flag, the enums they send (as the API
//! spells them), printing a list, and reading a secret line from standard input.

use std::io::BufRead as _;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::trader::{print_value, Common, Shape};

/// `--user USER_ID` (default: `PINNACLE_USER_ID` / `DEMO_USER_ID`).
#[derive(Debug, Clone, Args)]
pub struct UserArg {
    /// The user's id (default: PINNACLE_USER_ID, or DEMO_USER_ID from dev.env).
    #[arg(long, value_name = "USER_ID")]
    pub user: Option<String>,
}

/// A token scope.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    /// Place, modify and cancel orders; change credentials and tokens.
    Trade,
    /// Read orders, portfolio and the audit trail.
    Read,
}

/// A broker.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BrokerArg {
    /// The simulated broker.
    Paper,
    /// Angel One SmartAPI.
    #[value(name = "angel_one", alias = "angel-one")]
    AngelOne,
}

pub(super) fn wire<T: ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// A list reply: as the API sent it with `--json`, else a table of `columns`.
pub(super) fn print_list(
    common: &Common,
    key: &'static str,
    list: Value,
    columns: &'static [&'static str],
) {
    if common.json {
        print_value(common, &list, Shape::Fields);
    } else {
        print_value(common, &json!({ key: list }), Shape::List(key, columns));
    }
}

/// One line from standard input (trailing newline removed), which must not be empty.
pub(super) fn read_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading {what} from standard input"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!line.is_empty(), "{what} on standard input is empty");
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_flags_go_on_the_wire_as_the_api_spells_them() {
        assert_eq!(wire(BrokerArg::AngelOne), "angel_one");
        assert_eq!(wire(ScopeArg::Read), "read");
    }
}
