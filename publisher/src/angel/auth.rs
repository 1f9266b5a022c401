//! The platform's one Angel One session, shared by the live feed and the candle service.
//!
//! Built only from `ANGEL_ONE_*` ([`AngelOneMarketDataSettings`]): the publisher never
//! sees a user's broker credentials. Sessions live in memory ([`MemoryStore`]), and
//! [`SessionManager`] makes sure the feed and a candle request never log in twice at once.
//! A session is used until its expiry (the JWT's `exp` or the daily rollover at 00:00
//! IST, whichever is first); after that the next caller logs in again.

use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::config::AngelOneMarketDataSettings;
use pinnacle_smartapi::limits::RateLimiter;
use pinnacle_smartapi::session::{
    LoginSecrets, MemoryStore, Session, SessionManager, SessionPolicy,
};
use pinnacle_smartapi::{AccountKey, Egress, RestClient, RestConfig, SmartApiError};
use secrecy::SecretString;

/// The key the session is stored under (one platform account).
const ACCOUNT: &str = "platform-market-data";
/// How long a REST call may queue behind the client-side rate limiter before it is
/// refused as rate limited.
const LIMITER_WAIT: Duration = Duration::from_secs(2);

/// The platform credentials are incomplete or unusable.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Some `ANGEL_ONE_*` variables are unset.
    #[error("Angel One market data needs {}; unset: {}", NEEDED, .0.join(", "))]
    Missing(Vec<&'static str>),
    /// The REST client could not be built (e.g. the key is not a valid header value).
    #[error("Angel One REST client: {0}")]
    Client(#[from] SmartApiError),
}

const NEEDED: &str =
    "ANGEL_ONE_API_KEY, ANGEL_ONE_CLIENT_ID, ANGEL_ONE_PIN and ANGEL_ONE_TOTP_SECRET";

/// The platform's SmartAPI client and session.
#[derive(Debug)]
pub struct AngelAuth {
    /// REST client keyed with the platform API key and client code.
    rest: RestClient,
    /// One login at a time; sessions used until they expire (no early-renewal margin,
    /// since a login before the rollover would get tokens that end at the same rollover).
    sessions: SessionManager,
    /// Where the current session lives.
    store: MemoryStore,
    /// PIN and TOTP seed, for logins.
    secrets: LoginSecrets,
    /// Sent as the stream's `x-api-key`.
    api_key: SecretString,
}

impl AngelAuth {
    /// A client for the platform account, talking to `rest_url`.
    pub fn new(
        settings: &AngelOneMarketDataSettings,
        rest_url: &str,
        timeout: Duration,
    ) -> Result<Arc<Self>, AuthError> {
        let missing = settings.missing();
        let (Some(api_key), Some(client_code), Some(pin), Some(totp_seed), true) = (
            settings.api_key.clone(),
            settings.client_id.clone(),
            settings.pin.clone(),
            settings.totp_secret.clone(),
            missing.is_empty(),
        ) else {
            return Err(AuthError::Missing(missing));
        };
        let config = RestConfig {
            base_url: rest_url.to_string(),
            timeout: timeout.max(Duration::from_millis(1)),
            ..RestConfig::default()
        };
        let rest = RestClient::new(
            &config,
            AccountKey {
                api_key: api_key.clone(),
                client_code: client_code.trim().to_string(),
            },
            &Egress::Default,
            RateLimiter::new(LIMITER_WAIT),
        )?;
        Ok(Arc::new(Self {
            rest,
            sessions: SessionManager::new(SessionPolicy {
                margin: Duration::ZERO,
                ..SessionPolicy::default()
            }),
            store: MemoryStore::default(),
            secrets: LoginSecrets { pin, totp_seed },
            api_key,
        }))
    }

    /// The platform's client code (not a secret).
    pub fn client_code(&self) -> &str {
        self.rest.client_code()
    }

    /// The REST client.
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// The API key, for the stream's handshake.
    pub(crate) fn api_key(&self) -> SecretString {
        self.api_key.clone()
    }

    /// The current session, logging in when there is none or it has expired.
    pub async fn session(&self) -> Result<Session, SmartApiError> {
        let current = self.store_load().await;
        self.sessions
            .ensure(&self.rest, ACCOUNT, current, &self.secrets, &self.store)
            .await
    }

    /// A new session after `stale` was refused: the one another caller already made, a
    /// refreshed one, or a fresh login.
    pub async fn renew(&self, stale: &Session) -> Result<Session, SmartApiError> {
        self.sessions
            .renew(&self.rest, ACCOUNT, Some(stale), &self.secrets, &self.store)
            .await
    }

    async fn store_load(&self) -> Option<Session> {
        use pinnacle_smartapi::session::SessionStore as _;
        self.store.load(ACCOUNT).await.ok().flatten()
    }
}
