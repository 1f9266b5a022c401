//! `Session`: one trader connection, and the request-reply every verb makes over it.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use pinnacle_common::codec::Encoding;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::subjects::{self, headers};
use serde_json::Value;

use crate::client::ClientEnv;

/// How long a reply may take before the verb gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection as the trader in the env file.
pub(super) struct Session {
    /// The trader's connection.
    client: async_nats::Client,
    /// `PINNACLE_USER_ID` or `DEMO_USER_ID`: whose orders.
    user_id: Option<String>,
    /// `PINNACLE_API_TOKEN` or `DEMO_API_TOKEN`: sent with order requests.
    token: Option<String>,
}

impl Session {
    /// Connects with the settings of the env file (or the environment).
    pub(super) async fn open() -> anyhow::Result<Self> {
        let env = ClientEnv::load(None)?;
        let settings = env.nats();
        let client = tokio::time::timeout(
            Duration::from_secs(5),
            pinnacle_common::nats::connect(&settings, "pinnacle-cli"),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no NATS server answered at {} within 5 s (set NATS_URL or --env-file)",
                settings.url
            )
        })??;
        Ok(Self {
            client,
            user_id: env.get(&["PINNACLE_USER_ID", "DEMO_USER_ID"]),
            token: env.get(&["PINNACLE_API_TOKEN", "DEMO_API_TOKEN"]),
        })
    }

    /// Sends `body` to `subject` (with the token, for order subjects); the result, or the
    /// error as one line.
    pub(super) async fn request(
        &self,
        subject: String,
        body: Value,
        auth: bool,
    ) -> anyhow::Result<Value> {
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
        if auth {
            let token = self
                .token
                .as_deref()
                .context("set PINNACLE_API_TOKEN (or use --env-file with DEMO_API_TOKEN)")?;
            hdrs.insert(headers::AUTHORIZATION, format!("Bearer {token}").as_str());
        }
        let payload = Encoding::MsgPack.encode(&body)?;
        let reply = tokio::time::timeout(
            REPLY_TIMEOUT,
            self.client
                .request_with_headers(subject.clone(), hdrs, payload),
        )
        .await
        .with_context(|| format!("no reply on {subject} within {REPLY_TIMEOUT:?}"))?
        .with_context(|| format!("no service answers on {subject} (is it running?)"))?;
        let reply: Value = Encoding::MsgPack
            .decode(&reply.payload)
            .context("the reply is not a Pinnacle reply")?;
        result_of(reply)
    }

    /// Sends an order request (`orders.<user>.<verb>`) with the token.
    pub(super) async fn order(&self, verb: &str, body: Value) -> anyhow::Result<Value> {
        let user_id = self.user_id()?;
        self.request(subjects::order(user_id, verb), body, true)
            .await
    }

    /// The trader's user id.
    pub(super) fn user_id(&self) -> anyhow::Result<&str> {
        self.user_id
            .as_deref()
            .context("set PINNACLE_USER_ID (or use --env-file with DEMO_USER_ID)")
    }

    /// The connection.
    pub(super) fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

/// The `result` of a reply, or its error as `CODE: message`.
fn result_of(reply: Value) -> anyhow::Result<Value> {
    if reply["ok"] == true {
        return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
    }
    let code = reply["error"]["code"].as_str().unwrap_or("ERROR");
    let message = reply["error"]["message"].as_str().unwrap_or("no message");
    // A known code stays typed, so a caller can tell a retryable refusal
    // (`error.downcast_ref::<ErrorBody>()`); it prints the same either way.
    match code.parse::<ErrorCode>() {
        Ok(code) => Err(ErrorBody::new(code, message).into()),
        Err(_) => anyhow::bail!("{code}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_reply_is_one_readable_line() {
        let error = result_of(json!({"ok": false, "error":
            {"code": "INSUFFICIENT_FUNDS", "message": "needs ₹10"}}))
        .expect_err("an error");
        assert_eq!(error.to_string(), "INSUFFICIENT_FUNDS: needs ₹10");
        let typed = error
            .downcast_ref::<ErrorBody>()
            .expect("a known code stays typed");
        assert_eq!(typed.code, ErrorCode::InsufficientFunds);
        let unknown =
            result_of(json!({"ok": false, "error": {"code": "NEW_CODE", "message": "m"}}))
                .expect_err("an error");
        assert_eq!(unknown.to_string(), "NEW_CODE: m");
        assert_eq!(
            result_of(json!({"ok": true, "result": 1})).expect("ok"),
            json!(1)
        );
    }
}
