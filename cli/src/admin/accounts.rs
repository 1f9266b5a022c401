//! `pinnacle accounts …`: list, set (credentials as `KEY=VALUE` lines on standard input),
//! default, delete.

use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::shared::{print_list, wire, BrokerArg, UserArg};
use crate::api::{segment, user_or_default, Api};
use crate::output;
use crate::trader::{print_value, Common, Shape};

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
}
