//! The body of `PUT /v1/users/{user_id}/broker-accounts/{label}`: [`PutAccount`], the
//! brokers and length bounds it is checked against, and `validate`.

use chrono::{DateTime, Utc};
use pinnacle_common::entities::broker_accounts::fields;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::{char_len, ApiError};

/// Brokers an account may use.
pub const BROKERS: [&str; 2] = ["paper", "angel_one"];
/// The longest accepted credential value, in characters.
pub const MAX_SECRET_LEN: usize = 1024;
/// The longest accepted `egress_proxy`, in characters.
pub const MAX_PROXY_LEN: usize = 512;
/// The longest accepted `algo_id`, in characters.
pub const MAX_ALGO_ID_LEN: usize = 32;

/// Request body: the broker and the credentials. Secrets are redacted in `Debug`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutAccount {
    /// `paper` or `angel_one`.
    pub broker: String,
    /// SmartAPI key.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Client code.
    #[serde(default)]
    pub client_code: Option<SecretString>,
    /// PIN or secret.
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// TOTP seed.
    #[serde(default)]
    pub totp_seed: Option<SecretString>,
    /// Session token.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// SmartAPI session JWT.
    #[serde(default)]
    pub jwt_token: Option<SecretString>,
    /// SmartAPI refresh token.
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    /// SmartAPI feed token.
    #[serde(default)]
    pub feed_token: Option<SecretString>,
    /// When the session tokens expire (RFC 3339), read by [`PutAccount::session_expiry`]
    /// once `validate` has judged it (a bad time is `INVALID_REQUEST` naming the field,
    /// like every other format error, not a payload that failed to parse).
    #[serde(default)]
    pub session_expires_at: Option<String>,
    /// The static IP registered with Angel One for the API key (not secret).
    #[serde(default)]
    pub static_ip: Option<String>,
    /// A proxy whose egress is `static_ip`: `http://`, `https://`, `socks5://` or
    /// `socks5h://`, with no credentials in it.
    #[serde(default)]
    pub egress_proxy: Option<String>,
    /// The exchange-issued algo id for this account's orders.
    #[serde(default)]
    pub algo_id: Option<String>,
}

impl PutAccount {
    pub(super) fn field(&self, name: &str) -> Option<&SecretString> {
        match name {
            fields::API_KEY => self.api_key.as_ref(),
            fields::CLIENT_CODE => self.client_code.as_ref(),
            fields::SECRET => self.secret.as_ref(),
            fields::TOTP_SEED => self.totp_seed.as_ref(),
            fields::ACCESS_TOKEN => self.access_token.as_ref(),
            fields::JWT_TOKEN => self.jwt_token.as_ref(),
            fields::REFRESH_TOKEN => self.refresh_token.as_ref(),
            fields::FEED_TOKEN => self.feed_token.as_ref(),
            _ => None,
        }
    }

    /// `session_expires_at` as a time; `None` when absent (or not a time, which
    /// `validate` refuses first).
    pub(super) fn session_expiry(&self) -> Option<DateTime<Utc>> {
        self.session_expires_at.as_deref()?.parse().ok()
    }

    /// Paper credentials with only the three basic fields set.
    pub fn basic(
        broker: &str,
        api_key: SecretString,
        client_code: SecretString,
        secret: SecretString,
    ) -> Self {
        Self {
            broker: broker.into(),
            api_key: Some(api_key),
            client_code: Some(client_code),
            secret: Some(secret),
            totp_seed: None,
            access_token: None,
            jwt_token: None,
            refresh_token: None,
            feed_token: None,
            session_expires_at: None,
            static_ip: None,
            egress_proxy: None,
            algo_id: None,
        }
    }
}

/// Checks the broker, the addresses and every credential's length; the first bad value is
/// the error.
pub(crate) fn validate(body: &PutAccount) -> Result<(), ApiError> {
    if !BROKERS.contains(&body.broker.as_str()) {
        return Err(ApiError::invalid(format!(
            "broker must be one of {}",
            BROKERS.join(", ")
        )));
    }
    if let Some(at) = &body.session_expires_at {
        if at.parse::<DateTime<Utc>>().is_err() {
            return Err(ApiError::invalid(
                "session_expires_at must be an RFC 3339 time, e.g. 2026-12-04T00:00:00+05:30",
            ));
        }
    }
    if let Some(ip) = &body.static_ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::invalid(
                "static_ip must be an IPv4 or IPv6 address",
            ));
        }
    }
    if let Some(proxy) = &body.egress_proxy {
        // The rest after the scheme: visible ASCII without `@` (no credentials, no
        // whitespace, no look-alikes; an international host is written in punycode).
        let rest = ["http://", "https://", "socks5://", "socks5h://"]
            .iter()
            .find_map(|scheme| proxy.strip_prefix(scheme));
        let ok = rest.is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic() && b != b'@')
        }) && char_len(proxy) <= MAX_PROXY_LEN;
        if !ok {
            return Err(ApiError::invalid(
                "egress_proxy must be an http, https, socks5 or socks5h URL without credentials",
            ));
        }
    }
    if let Some(algo_id) = &body.algo_id {
        let ok = (1..=MAX_ALGO_ID_LEN).contains(&char_len(algo_id))
            && algo_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(ApiError::invalid(
                "algo_id must be 1 to 32 letters, digits, '-' or '_'",
            ));
        }
    }
    for field in fields::ALL {
        if let Some(value) = body.field(field) {
            let len = char_len(value.expose_secret());
            if len == 0 || len > MAX_SECRET_LEN {
                return Err(ApiError::invalid(format!(
                    "{field} must be 1 to {MAX_SECRET_LEN} characters"
                )));
            }
        }
    }
    Ok(())
}
