//! `pinnacle users|tokens|accounts`: the operator's verbs over the user API ([`crate::api::Api`]).
//!
//! Each prints a table for people or, with `--json`, the API's reply. A verb that acts on
//! one user takes `--user`, defaulting to `PINNACLE_USER_ID` / `DEMO_USER_ID`, so a trader
//! with their own token can manage their own tokens and accounts. Secrets (a password,
//! credentials) are read from standard input, never from arguments.
//!
//! # Layout
//! - [`users`](mod@users): `users …` and `tokens …`; [`accounts`](mod@accounts): `accounts …`.
//! - [`shared`]: the `--user` flag, the enums, list printing, a secret line from stdin.

pub mod accounts;
pub mod shared;
pub mod users;

pub use accounts::{accounts, AccountsCommand};
pub use shared::{BrokerArg, ScopeArg, UserArg};
pub use users::{tokens, users, TokensCommand, UsersCommand};
