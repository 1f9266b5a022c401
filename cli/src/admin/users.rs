//! `pinnacle users …` and `pinnacle tokens …`.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::shared::{print_list, read_line, wire, ScopeArg, UserArg};
use crate::api::{segment, user_or_default, Api};
use crate::trader::{print_value, Common, Shape};

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
