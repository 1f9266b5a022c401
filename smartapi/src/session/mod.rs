//! Sessions per broker account: log in on first use, renew on AG8001 or at the daily
//! rollover, and never run two logins for one account at once.
//!
//! Two layers keep logins single: an in-process lock per account, and a lease in the
//! [`SessionStore`] that covers every process (the order worker keeps it in the account's
//! row). A caller that finds the lease taken waits for the holder's new session to appear
//! in the store instead of logging in itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{SmartApiError, SmartApiErrorKind};
use crate::rest::RestClient;
use crate::totp;

/// A live session.
#[derive(Clone)]
pub struct Session {
    /// Bearer token for REST and the order WebSocket.
    pub jwt: SecretString,
    /// Renews `jwt` until the rollover.
    pub refresh: SecretString,
    /// Authenticates the market WebSocket.
    pub feed: SecretString,
    /// When Pinnacle stops using it: the JWT's `exp` or the daily rollover, whichever is
    /// first.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether it is usable at `now`, leaving `margin` before expiry.
    pub fn is_fresh(&self, now: DateTime<Utc>, margin: Duration) -> bool {
        self.expires_at - chrono::Duration::from_std(margin).unwrap_or_default() > now
    }

    fn same_jwt(&self, other: &Session) -> bool {
        self.jwt.expose_secret() == other.jwt.expose_secret()
    }
}

/// What login needs besides the client (which holds the API key and client code).
pub struct LoginSecrets {
    /// PIN / MPIN.
    pub pin: SecretString,
    /// Base32 TOTP seed.
    pub totp_seed: SecretString,
}

impl std::fmt::Debug for LoginSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginSecrets([REDACTED])")
    }
}

/// Where sessions live between calls.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The latest stored session of `account_id`.
    async fn load(&self, account_id: &str) -> Result<Option<Session>, SmartApiError>;
    /// Stores `session` as the account's current one.
    async fn save(&self, account_id: &str, session: &Session) -> Result<(), SmartApiError>;
    /// Takes the login lease for `ttl`; `false` when another process holds it.
    async fn try_lease(&self, account_id: &str, ttl: Duration) -> Result<bool, SmartApiError>;
    /// Gives the lease back.
    async fn release(&self, account_id: &str);
}

/// When sessions end and how logins are paced.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// The daily rollover, in IST: sessions are treated as dead from then on. SmartAPI's
    /// documentation says sessions last until midnight, so the default is 00:00.
    pub rollover_ist: NaiveTime,
    /// Renew this long before expiry.
    pub margin: Duration,
    /// How long one process may hold the login lease.
    pub lease: Duration,
    /// How often a waiting caller looks for the holder's new session.
    pub poll: Duration,
    /// What "now" is (the real clock unless a test shifts it).
    pub clock: pinnacle_protocol::clock::Clock,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            rollover_ist: NaiveTime::MIN,
            margin: Duration::from_secs(60),
            lease: Duration::from_secs(20),
            poll: Duration::from_millis(100),
            clock: pinnacle_protocol::clock::Clock::real(),
        }
    }
}

/// Renews sessions, one login at a time per account.
#[derive(Debug, Default)]
pub struct SessionManager {
    policy: SessionPolicy,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SessionManager {
    /// A manager with `policy`.
    pub fn new(policy: SessionPolicy) -> Self {
        Self {
            policy,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// `current` if it is still fresh, otherwise a renewed session.
    pub async fn ensure(
        &self,
        client: &RestClient,
        account_id: &str,
        current: Option<Session>,
        secrets: &LoginSecrets,
        store: &dyn SessionStore,
    ) -> Result<Session, SmartApiError> {
        match current {
            Some(session) if session.is_fresh(self.policy.clock.now(), self.policy.margin) => {
                Ok(session)
            }
            stale => {
                self.renew(client, account_id, stale.as_ref(), secrets, store)
                    .await
            }
        }
    }

    /// A new session after `stale` was refused (AG8001) or expired. If another caller has
    /// already renewed it, that session is used; otherwise this caller refreshes, or logs
    /// in when refreshing fails.
    pub async fn renew(
        &self,
        client: &RestClient,
        account_id: &str,
        stale: Option<&Session>,
        secrets: &LoginSecrets,
        store: &dyn SessionStore,
    ) -> Result<Session, SmartApiError> {
        let lock = self.lock_for(account_id);
        let _guard = lock.lock().await;
        let deadline = tokio::time::Instant::now() + self.policy.lease * 2;
        loop {
            // Lease first, then look: the previous holder may have stored its session just
            // before releasing, and a look taken before the lease would miss it.
            let leased = store.try_lease(account_id, self.policy.lease).await?;
            let latest = self.renewed(store, account_id, stale).await;
            match (leased, latest) {
                (true, Ok(None)) => break,
                (true, other) => {
                    store.release(account_id).await;
                    if let Some(session) = other? {
                        return Ok(session);
                    }
                }
                (false, Ok(Some(session))) => return Ok(session),
                (false, Err(error)) => return Err(error),
                (false, Ok(None)) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SmartApiError::new(
                    SmartApiErrorKind::Session,
                    None,
                    "another process held the SmartAPI login for this account and produced no session",
                ));
            }
            tokio::time::sleep(self.policy.poll).await;
        }
        let result = self.fresh_session(client, stale, secrets).await;
        let saved = match &result {
            Ok(session) => store.save(account_id, session).await,
            Err(_) => Ok(()),
        };
        store.release(account_id).await;
        saved?;
        result
    }

    /// The stored session, if someone other than the holder of `stale` renewed it and it is
    /// still fresh.
    async fn renewed(
        &self,
        store: &dyn SessionStore,
        account_id: &str,
        stale: Option<&Session>,
    ) -> Result<Option<Session>, SmartApiError> {
        Ok(store.load(account_id).await?.filter(|latest| {
            stale.is_none_or(|s| !latest.same_jwt(s))
                && latest.is_fresh(self.policy.clock.now(), self.policy.margin)
        }))
    }

    /// Refreshes `stale` if it is from today's session, else logs in.
    async fn fresh_session(
        &self,
        client: &RestClient,
        stale: Option<&Session>,
        secrets: &LoginSecrets,
    ) -> Result<Session, SmartApiError> {
        let now = self.policy.clock.now();
        if let Some(stale) = stale.filter(|s| s.expires_at > now) {
            let mut refreshed = client.refresh(&stale.jwt, &stale.refresh).await;
            if refreshed
                .as_ref()
                .is_err_and(|e| e.kind() == SmartApiErrorKind::RateLimited)
            {
                // The broker counts arrivals, and network delay can bunch two refreshes
                // into one of its seconds: wait out its window once.
                tokio::time::sleep(Duration::from_millis(1_100)).await;
                refreshed = client.refresh(&stale.jwt, &stale.refresh).await;
            }
            match refreshed {
                Ok(tokens) => return Ok(self.session_from(tokens, now)),
                Err(e) if e.kind() == SmartApiErrorKind::Session => {
                    tracing::info!(
                        code = e.code(),
                        "SmartAPI refresh refused; logging in again"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let code = totp::now(&secrets.totp_seed)
            .map_err(|e| SmartApiError::new(SmartApiErrorKind::Login, None, e.to_string()))?;
        tracing::info!(client_code = client.client_code(), "SmartAPI login");
        let tokens = client.login(&secrets.pin, &code).await?;
        Ok(self.session_from(tokens, now))
    }

    fn session_from(&self, tokens: crate::types::SessionTokens, now: DateTime<Utc>) -> Session {
        let rollover = next_rollover(now, self.policy.rollover_ist);
        let expires_at = jwt_expiry(&tokens.jwt_token).map_or(rollover, |exp| exp.min(rollover));
        Session {
            jwt: strip_bearer(tokens.jwt_token),
            refresh: tokens.refresh_token,
            feed: tokens.feed_token,
            expires_at,
        }
    }

    fn lock_for(&self, account_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(account_id.to_string()).or_default().clone()
    }
}

/// Some replies already say `Bearer …`; the client adds the prefix itself.
fn strip_bearer(jwt: SecretString) -> SecretString {
    match jwt.expose_secret().strip_prefix("Bearer ") {
        Some(raw) => SecretString::from(raw.to_string()),
        None => jwt,
    }
}

/// The `exp` claim of a JWT, read without verifying it (the broker verifies; Pinnacle only
/// schedules renewal).
pub fn jwt_expiry(jwt: &SecretString) -> Option<DateTime<Utc>> {
    let token = jwt.expose_secret();
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let payload = token.split('.').nth(1)?;
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(payload.trim_end_matches('=').as_bytes())
        .ok()?;
    if !crate::bounds::text_ok(std::str::from_utf8(&bytes).ok()?) {
        return None;
    }
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Utc.timestamp_opt(claims.get("exp")?.as_i64()?, 0).single()
}

/// The first `rollover` (IST) after `now`.
pub fn next_rollover(now: DateTime<Utc>, rollover: NaiveTime) -> DateTime<Utc> {
    let ist = pinnacle_protocol::clock::ist();
    let local = now.with_timezone(&ist);
    let today = local.date_naive().and_time(rollover);
    let candidate = ist.from_local_datetime(&today).single().unwrap_or(local);
    let next = if candidate > local {
        candidate
    } else {
        candidate + chrono::Duration::days(1)
    };
    next.with_timezone(&Utc)
}

/// When a session that ends at `ends_at` should be renewed in the background, so that the
/// next request finds a live one and pays no login.
///
/// * A session that ends at the daily rollover (within two minutes of it) cannot be
///   outlived by renewing it early: a refresh or login before the rollover gets tokens
///   that end at the same rollover (SPEC §2). It is renewed `settle` after its end, i.e.
///   a login just after midnight, hours before the open.
/// * A session that ends earlier (the JWT's `exp`, e.g. a 24–28 h session) is refreshed
///   `ahead` of its end.
pub fn renew_at(
    ends_at: DateTime<Utc>,
    rollover: NaiveTime,
    ahead: Duration,
    settle: Duration,
) -> DateTime<Utc> {
    let tolerance = chrono::Duration::minutes(2);
    let boundary = next_rollover(ends_at - tolerance, rollover);
    let at_rollover = (boundary - ends_at).abs() <= tolerance;
    if at_rollover {
        ends_at + chrono::Duration::from_std(settle).unwrap_or_default()
    } else {
        ends_at - chrono::Duration::from_std(ahead).unwrap_or_default()
    }
}

/// Sessions kept in memory: for the publisher's one platform account.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<String, Session>>,
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, account_id: &str) -> Result<Option<Session>, SmartApiError> {
        Ok(self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account_id)
            .cloned())
    }

    async fn save(&self, account_id: &str, session: &Session) -> Result<(), SmartApiError> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account_id.to_string(), session.clone());
        Ok(())
    }

    async fn try_lease(&self, _: &str, _: Duration) -> Result<bool, SmartApiError> {
        // One process: the in-process lock is enough.
        Ok(true)
    }

    async fn release(&self, _: &str) {}
}

#[cfg(test)]
mod tests;
