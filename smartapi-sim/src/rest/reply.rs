//! What a route handler works with ([`Ctx`]: the request, its account and claims) and what
//! it answers ([`Reply`], which the gateway wraps in SPEC §1.2's envelopes).

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use crate::config::SimAccount;
use crate::jwt::Claims;
use crate::state::Shared;

/// What a handler answers; the gateway turns it into HTTP.
#[derive(Debug)]
pub enum Reply {
    /// `{"status":true,"message":"SUCCESS","errorcode":"","data":…}`
    Ok(Value),
    /// `{"status":false,"message":…,"errorcode":…,"data":null}`, HTTP 200.
    Business(String, String),
    /// `{"success":false,"message":…,"errorCode":…,"data":""}`, HTTP 200 (token failures).
    Gateway(&'static str, &'static str),
}

impl Reply {
    pub fn business(code: &str, message: impl Into<String>) -> Reply {
        Reply::Business(code.to_owned(), message.into())
    }
}

/// What a handler gets to work with.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub body: &'a Value,
    /// The path after normalisation, e.g. for `details/{uniqueorderid}`.
    pub path: &'a str,
    pub ip: IpAddr,
    /// Present for Secure routes and generateTokens.
    pub claims: Option<Claims>,
    /// Present for Secure routes.
    pub account: Option<SimAccount>,
}

impl Ctx<'_> {
    /// The authenticated client code (empty on login).
    pub fn client_code(&self) -> &str {
        self.claims.as_ref().map_or("", |c| c.username.as_str())
    }
}
