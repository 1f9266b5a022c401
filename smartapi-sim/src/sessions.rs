//! Login sessions and the tokens issued for them: verification, expiry and revocation.

use std::collections::HashMap;

use chrono::{Duration as ChronoDuration, TimeZone, Utc};

use crate::calendar::SimClock;
use crate::config::SessionExpiry;
use crate::jwt::{self, Claims, TokenKind};

/// One successful login.
#[derive(Debug, Clone)]
pub struct Session {
    pub client_code: String,
    /// Access tokens with a lower generation were killed by `expire_session`.
    pub min_generation: u64,
    pub next_generation: u64,
    /// Logout or `revoke_session`: every token of the session is dead.
    pub revoked: bool,
    pub login_at: chrono::DateTime<Utc>,
}

/// The three tokens login and generateTokens hand out.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub jwt: String,
    pub refresh: String,
    pub feed: String,
}

/// Why a token was refused; maps to AG8001 / AB8050 / AB8051 or WS 401 / 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// Unsigned, malformed, wrong kind or revoked.
    Invalid,
    /// Past `exp` or expired by the test harness.
    Expired,
}

/// All sessions, keyed by session id. Times (`iat`, `exp`, expiry checks) are the
/// simulator's clock.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: HashMap<u64, Session>,
    next_sid: u64,
    clock: SimClock,
}

impl Sessions {
    /// No sessions yet, on `clock`.
    pub fn new(clock: SimClock) -> Self {
        Self {
            clock,
            ..Self::default()
        }
    }

    /// Starts a session and issues its first tokens.
    pub fn login(&mut self, secret: &[u8], client_code: &str, expiry: SessionExpiry) -> TokenSet {
        self.next_sid += 1;
        let sid = self.next_sid;
        self.sessions.insert(
            sid,
            Session {
                client_code: client_code.to_owned(),
                min_generation: 0,
                next_generation: 0,
                revoked: false,
                login_at: self.clock.now(),
            },
        );
        self.issue(secret, sid, expiry)
    }

    /// Issues a fresh token set for an existing session.
    pub fn issue(&mut self, secret: &[u8], sid: u64, expiry: SessionExpiry) -> TokenSet {
        let (client_code, generation) = match self.sessions.get_mut(&sid) {
            Some(s) => {
                let g = s.next_generation;
                s.next_generation += 1;
                (s.client_code.clone(), g)
            }
            None => (String::new(), 0),
        };
        let now = self.clock.now().timestamp();
        let exp = expiry_epoch(&self.clock, expiry);
        let make = |kind| {
            jwt::encode(
                secret,
                &Claims {
                    username: client_code.clone(),
                    kind,
                    sid,
                    generation,
                    iat: now,
                    exp,
                    jti: uuid::Uuid::new_v4().to_string(),
                },
            )
        };
        TokenSet {
            jwt: make(TokenKind::Access),
            refresh: make(TokenKind::Refresh),
            feed: make(TokenKind::Feed),
        }
    }

    /// Verifies a token of `kind`. With `ignore_expiry` an expired but otherwise valid
    /// token passes (generateTokens accepts the stale JWT it is meant to replace).
    pub fn verify(
        &self,
        secret: &[u8],
        token: &str,
        kind: TokenKind,
        ignore_expiry: bool,
    ) -> Result<Claims, TokenProblem> {
        let token = token.trim();
        let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
        let claims = jwt::decode(secret, token).map_err(|_| TokenProblem::Invalid)?;
        if claims.kind != kind {
            return Err(TokenProblem::Invalid);
        }
        let session = self
            .sessions
            .get(&claims.sid)
            .ok_or(TokenProblem::Invalid)?;
        if session.revoked {
            return Err(TokenProblem::Invalid);
        }
        if !ignore_expiry {
            if claims.exp <= self.clock.now().timestamp() {
                return Err(TokenProblem::Expired);
            }
            if kind == TokenKind::Access && claims.generation < session.min_generation {
                return Err(TokenProblem::Expired);
            }
        }
        Ok(claims)
    }

    /// Kills the current JWTs of every session of `client_code`; refresh tokens live on.
    pub fn expire(&mut self, client_code: &str) {
        for s in self
            .sessions
            .values_mut()
            .filter(|s| s.client_code == client_code)
        {
            s.min_generation = s.next_generation;
        }
    }

    /// Kills every token of every session of `client_code`.
    pub fn revoke(&mut self, client_code: &str) {
        for s in self
            .sessions
            .values_mut()
            .filter(|s| s.client_code == client_code)
        {
            s.revoked = true;
        }
    }

    /// Kills one session (logout).
    pub fn revoke_sid(&mut self, sid: u64) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.revoked = true;
        }
    }

    pub fn get(&self, sid: u64) -> Option<&Session> {
        self.sessions.get(&sid)
    }
}

/// `exp` for tokens issued now (by the simulator's clock).
fn expiry_epoch(clock: &SimClock, expiry: SessionExpiry) -> i64 {
    match expiry {
        SessionExpiry::After(d) => clock.now().timestamp() + d.as_secs().max(1) as i64,
        SessionExpiry::NextMidnightIst => {
            let now = clock.now_ist();
            let tomorrow = now.date_naive() + ChronoDuration::days(1);
            let midnight = tomorrow.and_hms_opt(0, 0, 0).unwrap_or_default();
            now.timezone()
                .from_local_datetime(&midnight)
                .single()
                .map_or(now.timestamp() + 86_400, |t| t.timestamp())
        }
    }
}
