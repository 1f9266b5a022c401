//! `pinnacle users|tokens|accounts`: the operator's verbs over the user API ([`Api`]).
//!
//! Each prints a table for people or, with `--json`, the API's reply. A verb that acts on
//! one user takes `--user`, defaulting to `PINNACLE_USER_ID` / `DEMO_USER_ID`, so a trader
//! with their own token can manage their own tokens and accounts. Secrets (a password,
//! credentials) are read from standard input, never from arguments.

use std::io::BufRead as _;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::api::{segment, user_or_default, Api};
use crate::output;
use crate::trader::{print_value, Common, Shape};

/// `--user USER_ID` (default: `PINNACLE_USER_ID` / `DEMO_USER_ID`).
#[derive(Debug, Clone, Args)]
pub struct UserArg {
    /// The user's id (default: PINNACLE_USER_ID, or DEMO_USER_ID from dev.env).
    #[arg(long, value_name = "USER_ID")]
    pub user: Option<String>,
}

/// `pinnacle users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user (admin); prints their id.
    Create {
        /// Unique name (letters, digits, `-`, `_`, `.`; 1 to 64).
        name: String,
        /// Read a login password (12 to 256 characters) from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List every user (admin).
    List,
    /// Show one user, with their default broker account.
    Show {
        #[command(flatten)]
        user: UserArg,
    },
}

/// `pinnacle tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue an API token; it is printed once and never shown again.
    Create {
        #[command(flatten)]
        user: UserArg,
        /// Scopes, comma separated: `trade`, `read` (default: both).
        #[arg(long, value_delimiter = ',', value_enum, ignore_case = true)]
        scopes: Vec<ScopeArg>,
        /// Lifetime in seconds, 60 to 31536000 (default: no expiry).
        #[arg(long, value_name = "SECS")]
        expires_in: Option<i64>,
    },
    /// List a user's tokens (ids, scopes, expiry, revocation; never a token).
    List {
        #[command(flatten)]
        user: UserArg,
    },
    /// Revoke a token: workers refuse it from the next request on.
    Revoke {
        #[command(flatten)]
        user: UserArg,
        /// The token id (from `tokens list`).
        token_id: String,
    },
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

/// `pinnacle accounts …`.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// List a user's broker accounts (which credential fields are set, never a value).
    List {
        #[command(flatten)]
        user: UserArg,
    },
    /// Create or replace an account. Credentials come from standard input as KEY=VALUE
    /// lines (api_key, client_code, secret, totp_seed; see docs/SMARTAPI.md), never from
    /// arguments.
    Set {
        #[command(flatten)]
        user: UserArg,
        /// The account's label (e.g. `main`).
        label: String,
        /// Which broker.
        #[arg(long, value_enum, ignore_case = true)]
        broker: BrokerArg,
        /// Read credentials from standard input (KEY=VALUE lines).
        #[arg(long)]
        credentials_stdin: bool,
        /// The static IP registered with Angel One for the API key (live orders).
        #[arg(long)]
        static_ip: Option<String>,
        /// The exchange-issued algo id (live orders).
        #[arg(long)]
        algo_id: Option<String>,
        /// An HTTP(S)/SOCKS5 proxy whose egress is the static IP (no credentials in it).
        #[arg(long)]
        egress_proxy: Option<String>,
    },
    /// Make an account the one used when an order or portfolio request names none.
    Default {
        #[command(flatten)]
        user: UserArg,
        /// The account's label.
        #[arg(required_unless_present = "none", conflicts_with = "none")]
        label: Option<String>,
        /// Have no default (requests must name an account when there are several).
        #[arg(long)]
        none: bool,
    },
    /// Delete an account (audited; kept with its credentials erased if orders refer to it).
    Delete {
        #[command(flatten)]
        user: UserArg,
        /// The account's label.
        label: String,
    },
}

fn wire<T: ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// A list reply: as the API sent it with `--json`, else a table of `columns`.
fn print_list(common: &Common, key: &'static str, list: Value, columns: &'static [&'static str]) {
    if common.json {
        print_value(common, &list, Shape::Fields);
    } else {
        print_value(common, &json!({ key: list }), Shape::List(key, columns));
    }
}

/// `pinnacle users …`.
pub async fn users(common: &Common, command: UsersCommand) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    const COLUMNS: &[&str] = &["id", "name", "is_admin", "default_account", "created_at"];
    match command {
        UsersCommand::Create {
            name,
            password_stdin,
        } => {
            let mut body = json!({"name": name});
            if password_stdin {
                body["password"] = Value::String(read_line("the password")?);
            }
            let user = api.call(Method::POST, "/v1/users", Some(&body)).await?;
            print_value(common, &user, Shape::Fields);
        }
        UsersCommand::List => {
            let users = api.get("/v1/users").await?;
            print_list(common, "users", users, COLUMNS);
        }
        UsersCommand::Show { user } => {
            let id = segment(&user_or_default(user.user)?);
            let user = api.get(&format!("/v1/users/{id}")).await?;
            print_value(common, &user, Shape::Fields);
        }
    }
    Ok(())
}

/// `pinnacle tokens …`.
pub async fn tokens(common: &Common, command: TokensCommand) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    match command {
        TokensCommand::Create {
            user,
            scopes,
            expires_in,
        } => {
            let id = segment(&user_or_default(user.user)?);
            let mut body = Map::new();
            if !scopes.is_empty() {
                body.insert(
                    "scopes".into(),
                    scopes.into_iter().map(wire).collect::<Vec<_>>().into(),
                );
            }
            if let Some(secs) = expires_in {
                body.insert("expires_in_secs".into(), secs.into());
            }
            let issued = api
                .call(
                    Method::POST,
                    &format!("/v1/users/{id}/tokens"),
                    Some(&Value::Object(body)),
                )
                .await?;
            print_value(common, &issued, Shape::Fields);
            if !common.json {
                eprintln!("the token is shown once: store it now");
            }
        }
        TokensCommand::List { user } => {
            let id = segment(&user_or_default(user.user)?);
            let tokens = api.get(&format!("/v1/users/{id}/tokens")).await?;
            print_list(
                common,
                "tokens",
                tokens,
                &["id", "scopes", "created_at", "expires_at", "revoked_at"],
            );
        }
        TokensCommand::Revoke { user, token_id } => {
            let id = segment(&user_or_default(user.user)?);
            let token = api
                .call(
                    Method::DELETE,
                    &format!("/v1/users/{id}/tokens/{}", segment(&token_id)),
                    None,
                )
                .await?;
            print_value(common, &token, Shape::Fields);
        }
    }
    Ok(())
}

/// `pinnacle accounts …`.
pub async fn accounts(common: &Common, command: AccountsCommand) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    match command {
        AccountsCommand::List { user } => {
            let id = segment(&user_or_default(user.user)?);
            list_accounts(&api, common, &id).await?;
        }
        AccountsCommand::Set {
            user,
            label,
            broker,
            credentials_stdin,
            static_ip,
            algo_id,
            egress_proxy,
        } => {
            let id = segment(&user_or_default(user.user)?);
            let optional = [
                ("static_ip", static_ip),
                ("algo_id", algo_id),
                ("egress_proxy", egress_proxy),
            ];
            let body = account_body(broker, credentials_stdin, optional)?;
            let account = api
                .call(
                    Method::PUT,
                    &format!("/v1/users/{id}/broker-accounts/{}", segment(&label)),
                    Some(&Value::Object(body)),
                )
                .await?;
            print_value(common, &account, Shape::Fields);
        }
        AccountsCommand::Default { user, label, none } => {
            let id = segment(&user_or_default(user.user)?);
            let label = if none { Value::Null } else { label.into() };
            set_default(&api, common, &id, label).await?;
        }
        AccountsCommand::Delete { user, label } => {
            let id = segment(&user_or_default(user.user)?);
            let deleted = api
                .call(
                    Method::DELETE,
                    &format!("/v1/users/{id}/broker-accounts/{}", segment(&label)),
                    None,
                )
                .await?;
            if common.json {
                print_value(common, &deleted, Shape::Fields);
            } else if deleted["deleted"] == true {
                output::line(&format!("deleted {label}"));
            } else {
                output::line(&format!(
                    "kept {label} for its orders' history, with every credential erased"
                ));
            }
        }
    }
    Ok(())
}

/// `pinnacle accounts list`: the user's accounts, with which one is the default.
async fn list_accounts(api: &Api, common: &Common, id: &str) -> anyhow::Result<()> {
    let default = api.get(&format!("/v1/users/{id}")).await?["default_account"].clone();
    let mut accounts = api.get(&format!("/v1/users/{id}/broker-accounts")).await?;
    for account in accounts.as_array_mut().into_iter().flatten() {
        let is_default = account["label"] == default;
        account["default"] = is_default.into();
    }
    print_list(
        common,
        "accounts",
        accounts,
        &[
            "label",
            "broker",
            "default",
            "fields_set",
            "generation",
            "updated_at",
        ],
    );
    Ok(())
}

/// The body of `pinnacle accounts set`: the broker, the credentials from standard input
/// when asked, and the optional settings that were given.
fn account_body(
    broker: BrokerArg,
    credentials_stdin: bool,
    optional: [(&str, Option<String>); 3],
) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    body.insert("broker".into(), wire(broker).into());
    if credentials_stdin {
        for (key, value) in read_pairs()? {
            body.insert(key, value.into());
        }
    }
    for (key, value) in optional {
        if let Some(value) = value {
            body.insert(key.into(), value.into());
        }
    }
    Ok(body)
}

/// `pinnacle accounts default`: sets (or, with `Value::Null`, clears) the default account,
/// warning when no account has that label yet.
async fn set_default(api: &Api, common: &Common, id: &str, label: Value) -> anyhow::Result<()> {
    let user = api
        .call(
            Method::PUT,
            &format!("/v1/users/{id}/default-account"),
            Some(&json!({ "label": label })),
        )
        .await?;
    print_value(common, &user, Shape::Fields);
    if let Some(label) = label.as_str() {
        let accounts = api.get(&format!("/v1/users/{id}/broker-accounts")).await?;
        let stored = accounts.as_array().into_iter().flatten();
        if !stored.clone().any(|a| a["label"] == label) {
            eprintln!(
                "warning: no account is labelled {label:?} yet: orders that name no \
                 account are refused until one is (pinnacle accounts set)"
            );
        }
    }
    Ok(())
}

/// One line from standard input (trailing newline removed), which must not be empty.
fn read_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading {what} from standard input"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!line.is_empty(), "{what} on standard input is empty");
    Ok(line)
}

/// `KEY=VALUE` lines from standard input (blank lines and `#` comments skipped).
fn read_pairs() -> anyhow::Result<Vec<(String, String)>> {
    parse_pairs(std::io::stdin().lock())
}

fn parse_pairs(input: impl std::io::BufRead) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.context("reading credentials from standard input")?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The line number only: the line may hold a secret.
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("credentials line {} is not KEY=VALUE", n + 1))?;
        pairs.push((key.trim().to_string(), value.trim().to_string()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_key_value_lines_and_errors_never_echo_them() {
        let pairs =
            parse_pairs("# comment\napi_key = k1\n\nclient_code=C9\n".as_bytes()).expect("ok");
        assert_eq!(
            pairs,
            [
                ("api_key".to_string(), "k1".to_string()),
                ("client_code".into(), "C9".into())
            ]
        );
        let error = parse_pairs("api_key=k\nhunter2-secret\n".as_bytes()).expect_err("refused");
        assert_eq!(error.to_string(), "credentials line 2 is not KEY=VALUE");
    }

    #[test]
    fn enum_flags_go_on_the_wire_as_the_api_spells_them() {
        assert_eq!(wire(BrokerArg::AngelOne), "angel_one");
        assert_eq!(wire(ScopeArg::Read), "read");
    }
}
