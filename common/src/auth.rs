//! Resolving a bearer API token to the user behind it.
//!
//! One database lookup by the token's id prefix, then exactly one HMAC, compared in
//! constant time. An unknown id, a wrong secret, an expired or a revoked token all give
//! the same [`AuthError::Invalid`], so a caller learns nothing about which it was.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};
use tracing::Instrument as _;

use crate::crypto::Key32;
use crate::entities::api_tokens;
use crate::tokens;

/// Scope that allows placing and changing orders.
pub const SCOPE_TRADE: &str = "trade";
/// Scope that allows reading.
pub const SCOPE_READ: &str = "read";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user the token belongs to.
    pub user_id: String,
    /// The token's id (safe to log and audit).
    pub token_id: String,
    /// Scopes the token carries.
    pub scopes: Vec<String>,
    /// When the token stops working, if ever.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Principal {
    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("missing API token")]
    Missing,
    /// The token is malformed, unknown, wrong, expired or revoked.
    #[error("invalid or expired API token")]
    Invalid,
    /// The token store could not be read.
    #[error("token store unavailable")]
    Store(#[from] DbErr),
}

/// Resolves `token` (the bare token, without `Bearer `) to its owner.
pub async fn authenticate(
    db: &DatabaseConnection,
    pepper: &Key32,
    token: Option<&str>,
) -> Result<Principal, AuthError> {
    let token = token.ok_or(AuthError::Missing)?;
    let presented = tokens::parse(token).ok_or(AuthError::Invalid)?;
    let row = fetch(db, presented.id).await?;
    verify(&presented, pepper, row)
}

async fn fetch(db: &DatabaseConnection, id: &str) -> Result<Option<api_tokens::Model>, DbErr> {
    api_tokens::Entity::find_by_id(id.to_string())
        .one(db)
        .instrument(crate::db::span(db, "SELECT", "api_tokens"))
        .await
}

/// The one HMAC and the expiry and revocation checks on a token row.
fn verify(
    presented: &tokens::PresentedToken<'_>,
    pepper: &Key32,
    row: Option<api_tokens::Model>,
) -> Result<Principal, AuthError> {
    let Some(row) = row else {
        // Spend the same one HMAC as a real check, so timing does not reveal unknown ids.
        let _ = presented.verify(pepper, DUMMY_HASH);
        return Err(AuthError::Invalid);
    };
    if !presented.verify(pepper, &row.secret_hash) || !row.is_active(Utc::now()) {
        return Err(AuthError::Invalid);
    }
    Ok(Principal {
        expires_at: row.expires_at,
        user_id: row.user_id,
        token_id: row.id,
        scopes: row
            .scopes
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
    })
}

/// How long a cached token row is trusted: a revocation (or any other change to the row)
/// takes effect within this long on a worker using [`TokenCache`]. Expiry is checked on
/// every request.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);

/// The most token rows a [`TokenCache`] holds; past it, it starts afresh.
pub const TOKEN_CACHE_ENTRIES: usize = 65_536;

/// [`authenticate`] with the token rows cached for at most [`TOKEN_CACHE_TTL`], which
/// saves a database read per request on the order path. The secret is still checked with
/// one HMAC on every request (the cache holds the row, never a verdict), expiry on every
/// request, and a revocation from the next lookup when announced on
/// [`crate::subjects::TOKENS_REVOKED`] (drained from [`Revocations`] before each lookup, or
/// [`TokenCache::forget`]), within the TTL otherwise. Unknown token ids are not cached.
#[derive(Debug, Default)]
pub struct TokenCache {
    rows: Mutex<Rows>,
    /// Drained before every lookup, once set ([`TokenCache::listen`]).
    revocations: OnceLock<Arc<dyn Revocations>>,
}

/// Announced revocations that reached this process and wait to be applied: a port, which
/// the order worker implements over its subscription to
/// [`crate::subjects::TOKENS_REVOKED`]. The cache drains it before every lookup, so a
/// revocation announced before a request arrived applies to that request.
pub trait Revocations: Send + Sync + std::fmt::Debug {
    /// Applies every revoked token id waiting, oldest first, without waiting for more; an
    /// id is applied before another caller can see it gone from the port.
    fn apply_waiting(&self, apply: &mut dyn FnMut(String));
}

/// The cached rows, and how many revocations the cache has been told of: a read that
/// started before one stores nothing, so it cannot put a revoked row back.
#[derive(Debug, Default)]
struct Rows {
    forgotten: u64,
    by_id: HashMap<String, (Instant, api_tokens::Model)>,
}

impl TokenCache {
    /// Drains `revocations` before every lookup from now on; a second call changes nothing
    /// (one process has one subscription).
    pub fn listen(&self, revocations: Arc<dyn Revocations>) {
        if self.revocations.set(revocations).is_err() {
            tracing::warn!(
                "the token cache already listens for revocations; ignoring another source"
            );
        }
    }

    /// Forgets every token whose revocation has arrived and was not applied yet.
    pub fn catch_up(&self) {
        if let Some(revocations) = self.revocations.get() {
            revocations.apply_waiting(&mut |token_id| self.forget(&token_id));
        }
    }

    /// Drops `token_id`'s row, so the next request reads it afresh (a revocation), and
    /// keeps every read already in flight from storing what it read.
    pub fn forget(&self, token_id: &str) {
        if let Ok(mut rows) = self.rows.lock() {
            rows.forgotten = rows.forgotten.wrapping_add(1);
            rows.by_id.remove(token_id);
        }
    }

    /// Resolves `token` like [`authenticate`], reading its row from the cache when fresh.
    pub async fn authenticate(
        &self,
        db: &DatabaseConnection,
        pepper: &Key32,
        token: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let presented = tokens::parse(token).ok_or(AuthError::Invalid)?;
        self.catch_up();
        let (cached, forgotten) = self.cached(presented.id);
        let row = match cached {
            Some(row) => Some(row),
            None => {
                let fetched_at = Instant::now();
                let row = fetch(db, presented.id).await?;
                if let Some(row) = &row {
                    self.remember(forgotten, fetched_at, row);
                }
                row
            }
        };
        verify(&presented, pepper, row)
    }

    /// `token_id`'s row when fresh, and the revocation count to read it under otherwise
    /// (`None`: the cache is unusable, store nothing).
    fn cached(&self, token_id: &str) -> (Option<api_tokens::Model>, Option<u64>) {
        match self.rows.lock() {
            Ok(rows) => (
                rows.by_id
                    .get(token_id)
                    .filter(|(at, _)| at.elapsed() < TOKEN_CACHE_TTL)
                    .map(|(_, row)| row.clone()),
                Some(rows.forgotten),
            ),
            Err(_) => (None, None),
        }
    }

    /// Stores `row`, read at `fetched_at` under the revocation count `forgotten`, unless a
    /// revocation arrived meanwhile.
    fn remember(&self, forgotten: Option<u64>, fetched_at: Instant, row: &api_tokens::Model) {
        if let Ok(mut rows) = self.rows.lock() {
            if Some(rows.forgotten) != forgotten {
                return;
            }
            if rows.by_id.len() >= TOKEN_CACHE_ENTRIES {
                rows.by_id.clear();
            }
            rows.by_id.insert(row.id.clone(), (fetched_at, row.clone()));
        }
    }
}

const DUMMY_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[cfg(test)]
mod tests {
    use super::*;

    fn token_row(id: &str) -> api_tokens::Model {
        api_tokens::Model {
            id: id.into(),
            user_id: "u1".into(),
            secret_hash: String::new(),
            scopes: "trade".into(),
            created_at: chrono::DateTime::UNIX_EPOCH,
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_token_read_in_flight_during_a_revocation_is_not_cached() {
        let cache = TokenCache::default();
        let (none, before) = cache.cached("t1");
        assert!(none.is_none());
        cache.remember(before, Instant::now(), &token_row("t1"));
        assert!(cache.cached("t1").0.is_some(), "a quiet read is cached");

        cache.forget("t1");
        let (none, mark) = cache.cached("t1");
        assert!(none.is_none(), "forgotten at once");
        // A revocation arrives while t1's row is being read.
        cache.forget("t1");
        cache.remember(mark, Instant::now(), &token_row("t1"));
        assert!(
            cache.cached("t1").0.is_none(),
            "a row read before a revocation could be the revoked one's: not stored"
        );
    }
}
