//! [`Api`], the operator verbs' client of the user API: where it is (`USER_API_URL`), who
//! calls (`PINNACLE_API_ADMIN_TOKEN`, else the user's `PINNACLE_API_TOKEN` /
//! `DEMO_API_TOKEN`), and an error reply decoded into one line with its code.
//!
//! A server that does not answer within a few seconds is an error that names the URL and
//! says how to point the command elsewhere; nothing waits silently.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::client::ClientEnv;

/// Where the user API listens when nothing says otherwise (what `pinnacle dev` binds).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A user-API client with its bearer token.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl Api {
    /// Reads the URL and token from the environment (after `--env-file`).
    pub fn from_env() -> anyhow::Result<Self> {
        let env = ClientEnv::load(None)?;
        let base = env
            .get(&["USER_API_URL"])
            .unwrap_or_else(|| DEFAULT_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        let token = env
            .get(&[
                "PINNACLE_API_ADMIN_TOKEN",
                "PINNACLE_API_TOKEN",
                "DEMO_API_TOKEN",
            ])
            .context(
                "no token: set PINNACLE_API_ADMIN_TOKEN (operator verbs) or PINNACLE_API_TOKEN \
                 (your own account), or pass --env-file .pinnacle/dev.env",
            )?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            token: SecretString::from(token),
        })
    }

    /// The user API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; a 2xx reply's JSON body, or the error reply as one line
    /// (`CODE: message (HTTP status)`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "no answer in time"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            anyhow::anyhow!(
                "the user API at {} did not answer {method} {path}: {why}; is it running? (set \
                 USER_API_URL, or pass --env-file .pinnacle/dev.env)",
                self.base
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the reply to {method} {path}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        anyhow::bail!("{}", error_line(&value, status.as_u16()))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }
}

/// `CODE: message (HTTP status)` from the API's `{"error": {code, message}}`.
pub fn error_line(reply: &Value, status: u16) -> String {
    let error = &reply["error"];
    match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message} (HTTP {status})"),
        _ => format!("HTTP {status}: {reply}"),
    }
}

/// `value` as one URL path segment: everything but letters, digits and `-._~`
/// percent-encoded, so an id can never reach another route.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The user a verb acts on: `--user`, else `PINNACLE_USER_ID` / `DEMO_USER_ID`.
pub fn user_or_default(user: Option<String>) -> anyhow::Result<String> {
    match user {
        Some(user) => Ok(user),
        None => ClientEnv::load(None)?
            .get(&["PINNACLE_USER_ID", "DEMO_USER_ID"])
            .context("which user? pass --user USER_ID (or set PINNACLE_USER_ID)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("abc-123"), "abc-123");
        assert_eq!(segment("../x?y"), "..%2Fx%3Fy");
    }

    #[test]
    fn an_error_reply_is_one_line_with_its_code() {
        let reply = serde_json::json!({"error": {"code": "NOT_FOUND", "message": "no such user"}});
        assert_eq!(
            error_line(&reply, 404),
            "NOT_FOUND: no such user (HTTP 404)"
        );
        assert_eq!(
            error_line(&Value::String("oops".into()), 502),
            "HTTP 502: \"oops\""
        );
    }
}
