//! The order path's read cache: each user's broker account rows with their default
//! account, and the risk-limit rows (the global row and each user's), so that a place
//! reads neither table while they do not change.
//!
//! # What it promises
//! - **Bounded staleness.** An entry is used for at most [`CACHE_TTL`] (one second, like
//!   the API-token cache) after the read that filled it *started*, so a change made by
//!   any means, a write straight to the database included, applies within that bound.
//! - **Invalidation before the next order.** Every writer in Pinnacle announces its
//!   change on `pinnacle.cache.invalidate` ([`Invalidation`]) before it answers its
//!   caller. The worker holds what arrived in a port, [`Announcements`], and the cache
//!   takes and applies it before every read ([`Cache::invalidate`]), so an order sent
//!   after the change was acknowledged never sees the old entry (the worker's
//!   `inbox` module says why the order cannot overtake it). A read that was in flight
//!   when an invalidation arrived does not fill the cache (the epoch moved), so it cannot
//!   put the old state back.
//! - **Bounded size.** Each shelf holds at most [`CACHE_ENTRIES`]; a full shelf first
//!   drops what has expired, then its oldest entry.
//! - **Nothing decrypted.** Account rows are kept sealed, exactly as stored
//!   (`broker_accounts::Model`): credentials are decrypted only in
//!   [`super::credentials`], after the audit event is acknowledged, and the row's
//!   generation is checked against the register there (and before, in
//!   [`super::lookup`]), so a cached row that a credential write superseded is read
//!   again, never opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pinnacle_common::entities::{broker_accounts, risk_limits};
use pinnacle_common::invalidate::Invalidation;

/// How long an entry is trusted after the read that filled it started.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// The most entries a shelf (accounts, limits) holds.
pub const CACHE_ENTRIES: usize = 65_536;

/// Announced changes that reached this process and wait to be applied: a port, which the
/// NATS shell implements over its subscription to `pinnacle.cache.invalidate`.
pub trait Announcements: Send + Sync + std::fmt::Debug {
    /// Applies every change waiting, oldest first, without waiting for more; a change is
    /// applied before another caller can see it gone from the port.
    fn apply_waiting(&self, apply: &mut dyn FnMut(Invalidation));
}

/// A user's broker accounts as stored (sealed), oldest first, and their default label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserAccounts {
    /// Every account row of the user, by `created_at`.
    pub rows: Vec<broker_accounts::Model>,
    /// `users.default_account` (`None` also when the user row is gone).
    pub default_account: Option<String>,
}

/// Marks the start of a read: its result is stored only if no invalidation arrived
/// meanwhile, stamped with this time.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    started: Instant,
}

/// A map of fresh entries with a size bound.
#[derive(Debug)]
struct Shelf<V> {
    entries: HashMap<String, (Instant, V)>,
}

impl<V: Clone> Shelf<V> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }

    fn get(&self, key: &str, ttl: Duration) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, value)| value.clone())
    }

    fn put(&mut self, key: &str, at: Instant, value: V, ttl: Duration, capacity: usize) {
        if self.entries.len() >= capacity && !self.entries.contains_key(key) {
            self.entries.retain(|_, (stamp, _)| stamp.elapsed() < ttl);
        }
        if self.entries.len() >= capacity && !self.entries.contains_key(key) {
            // Only reached with more than `capacity` users seen within one lifetime.
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (stamp, _))| *stamp)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key.to_string(), (at, value));
    }
}

#[derive(Debug)]
struct Shelves {
    /// Bumped by every invalidation: a read that started before it stores nothing.
    epoch: u64,
    /// By user id.
    accounts: Shelf<Arc<UserAccounts>>,
    /// By scope (`global` or a user id); `None` caches "no row".
    limits: Shelf<Option<risk_limits::Model>>,
}

/// The cache (see the module doc). Cheap to share: one mutex, held for map operations
/// only, never across an `.await`.
#[derive(Debug)]
pub struct Cache {
    shelves: Mutex<Shelves>,
    ttl: Duration,
    capacity: usize,
    /// Taken before every read, once set ([`Cache::listen`]).
    announcements: OnceLock<Arc<dyn Announcements>>,
}

impl Default for Cache {
    fn default() -> Self {
        Self::new(CACHE_TTL, CACHE_ENTRIES)
    }
}

impl Cache {
    /// A cache whose entries live `ttl` and whose shelves hold `capacity` entries each.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            shelves: Mutex::new(Shelves {
                epoch: 0,
                accounts: Shelf::new(),
                limits: Shelf::new(),
            }),
            ttl,
            capacity: capacity.max(1),
            announcements: OnceLock::new(),
        }
    }

    /// Takes `announcements` before every read from now on; a second call changes nothing
    /// (one process has one subscription).
    pub fn listen(&self, announcements: Arc<dyn Announcements>) {
        if self.announcements.set(announcements).is_err() {
            tracing::warn!("the cache already listens to announcements; ignoring another source");
        }
    }

    /// Applies every announcement that arrived and was not applied yet.
    fn catch_up(&self) {
        if let Some(announcements) = self.announcements.get() {
            announcements.apply_waiting(&mut |change| self.invalidate(&change));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shelves> {
        // A panic while holding the lock left at worst a stale map, which expires anyway.
        self.shelves.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call before reading the database to fill the cache.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            epoch: self.lock().epoch,
            started: Instant::now(),
        }
    }

    /// `user_id`'s accounts, when fresh.
    pub fn accounts(&self, user_id: &str) -> Option<Arc<UserAccounts>> {
        self.catch_up();
        self.lock().accounts.get(user_id, self.ttl)
    }

    /// Stores `user_id`'s accounts read under `ticket` (unless an invalidation came first).
    pub fn put_accounts(&self, ticket: Ticket, user_id: &str, accounts: Arc<UserAccounts>) {
        let mut shelves = self.lock();
        if shelves.epoch == ticket.epoch {
            let (ttl, capacity) = (self.ttl, self.capacity);
            shelves
                .accounts
                .put(user_id, ticket.started, accounts, ttl, capacity);
        }
    }

    /// The global row and `user_id`'s row (`None` inside: no such row), when both are fresh.
    pub fn limit_rows(&self, user_id: &str) -> Option<[Option<risk_limits::Model>; 2]> {
        self.catch_up();
        let shelves = self.lock();
        let global = shelves.limits.get(risk_limits::GLOBAL, self.ttl)?;
        let user = shelves.limits.get(user_id, self.ttl)?;
        Some([global, user])
    }

    /// Stores the global row and `user_id`'s row, as read under `ticket` (`rows` holds
    /// those that exist).
    pub fn put_limit_rows(&self, ticket: Ticket, user_id: &str, rows: &[risk_limits::Model]) {
        let mut shelves = self.lock();
        if shelves.epoch != ticket.epoch {
            return;
        }
        let (ttl, capacity) = (self.ttl, self.capacity);
        for scope in [risk_limits::GLOBAL, user_id] {
            let row = rows.iter().find(|row| row.scope == scope).cloned();
            shelves
                .limits
                .put(scope, ticket.started, row, ttl, capacity);
        }
    }

    /// Drops what `change` names, and makes every read already in flight store nothing.
    pub fn invalidate(&self, change: &Invalidation) {
        let mut shelves = self.lock();
        shelves.epoch = shelves.epoch.wrapping_add(1);
        match change {
            Invalidation::Accounts { user_id } => {
                shelves.accounts.entries.remove(user_id);
            }
            Invalidation::Limits { user_id } => {
                shelves.limits.entries.remove(user_id);
            }
            Invalidation::GlobalLimits => {
                shelves.limits.entries.remove(risk_limits::GLOBAL);
            }
            Invalidation::All => {
                shelves.accounts.entries.clear();
                shelves.limits.entries.clear();
            }
        }
    }

    /// How many entries each shelf holds (accounts, limits), expired ones included.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        let shelves = self.lock();
        (shelves.accounts.entries.len(), shelves.limits.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(label: &str) -> Arc<UserAccounts> {
        Arc::new(UserAccounts {
            rows: Vec::new(),
            default_account: Some(label.into()),
        })
    }

    fn limits(scope: &str, kill: bool) -> risk_limits::Model {
        risk_limits::Model {
            kill_switch: kill,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            ..risk_limits::Model::unlimited(scope)
        }
    }

    #[test]
    fn entries_expire_after_the_lifetime() {
        let cache = Cache::new(Duration::from_millis(50), 16);
        cache.put_accounts(cache.ticket(), "u1", accounts("a"));
        assert_eq!(cache.accounts("u1"), Some(accounts("a")));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.accounts("u1"), None, "an expired entry is not used");
    }

    #[test]
    fn the_lifetime_counts_from_the_start_of_the_read() {
        let cache = Cache::new(Duration::from_millis(50), 16);
        let ticket = cache.ticket();
        std::thread::sleep(Duration::from_millis(60));
        cache.put_accounts(ticket, "u1", accounts("a"));
        assert_eq!(cache.accounts("u1"), None, "a slow read is already stale");
    }

    #[test]
    fn an_invalidation_drops_only_what_it_names() {
        let cache = Cache::default();
        let ticket = cache.ticket();
        cache.put_accounts(ticket, "u1", accounts("a"));
        cache.put_accounts(ticket, "u2", accounts("b"));
        cache.put_limit_rows(ticket, "u1", &[limits("u1", false)]);
        cache.put_limit_rows(ticket, "u2", &[limits(risk_limits::GLOBAL, false)]);
        cache.invalidate(&Invalidation::Accounts {
            user_id: "u1".into(),
        });
        assert_eq!(cache.accounts("u1"), None);
        assert_eq!(cache.accounts("u2"), Some(accounts("b")));
        assert!(cache.limit_rows("u1").is_some(), "limits untouched");
        cache.invalidate(&Invalidation::Limits {
            user_id: "u1".into(),
        });
        assert!(cache.limit_rows("u1").is_none());
        assert!(cache.limit_rows("u2").is_some());
        cache.invalidate(&Invalidation::GlobalLimits);
        assert!(
            cache.limit_rows("u2").is_none(),
            "everyone needs the global row"
        );
        cache.invalidate(&Invalidation::All);
        assert_eq!(cache.accounts("u2"), None);
        assert_eq!(cache.len(), (0, 0));
    }

    #[test]
    fn a_read_in_flight_during_an_invalidation_stores_nothing() {
        let cache = Cache::default();
        let before = cache.ticket();
        cache.invalidate(&Invalidation::Accounts {
            user_id: "other".into(),
        });
        cache.put_accounts(before, "u1", accounts("old"));
        cache.put_limit_rows(before, "u1", &[limits("u1", false)]);
        assert_eq!(cache.accounts("u1"), None);
        assert!(cache.limit_rows("u1").is_none());
        let after = cache.ticket();
        cache.put_accounts(after, "u1", accounts("new"));
        assert_eq!(cache.accounts("u1"), Some(accounts("new")));
    }

    /// Announcements pushed by the test, as the NATS shell's inbox holds them.
    #[derive(Debug, Default)]
    struct Waiting(Mutex<Vec<Invalidation>>);

    impl Announcements for Waiting {
        fn apply_waiting(&self, apply: &mut dyn FnMut(Invalidation)) {
            let mut waiting = self.0.lock().expect("not poisoned");
            waiting.drain(..).for_each(apply);
        }
    }

    #[test]
    fn a_waiting_announcement_applies_to_the_next_read() {
        let cache = Cache::default();
        let waiting = Arc::new(Waiting::default());
        cache.listen(waiting.clone());
        cache.put_accounts(cache.ticket(), "u1", accounts("a"));
        cache.put_limit_rows(cache.ticket(), "u1", &[limits("u1", false)]);
        assert_eq!(cache.accounts("u1"), Some(accounts("a")));
        waiting.0.lock().expect("not poisoned").extend([
            Invalidation::Accounts {
                user_id: "u1".into(),
            },
            Invalidation::Limits {
                user_id: "u1".into(),
            },
        ]);
        assert_eq!(cache.accounts("u1"), None, "taken before the read");
        assert!(cache.limit_rows("u1").is_none());
        assert!(
            waiting.0.lock().expect("not poisoned").is_empty(),
            "each is taken once"
        );
    }

    #[test]
    fn limit_rows_cache_absent_rows_and_need_both_scopes() {
        let cache = Cache::default();
        let ticket = cache.ticket();
        cache.put_limit_rows(ticket, "u1", &[limits(risk_limits::GLOBAL, true)]);
        let [global, user] = cache.limit_rows("u1").expect("both fresh");
        assert_eq!(global, Some(limits(risk_limits::GLOBAL, true)));
        assert_eq!(user, None, "no row of the user's own is cached as such");
        assert!(cache.limit_rows("u2").is_none(), "u2's row was never read");
    }

    #[test]
    fn a_full_shelf_evicts_expired_entries_then_the_oldest() {
        let cache = Cache::new(Duration::from_millis(40), 3);
        for user in ["u1", "u2", "u3"] {
            cache.put_accounts(cache.ticket(), user, accounts(user));
        }
        cache.put_accounts(cache.ticket(), "u4", accounts("u4"));
        assert_eq!(cache.len().0, 3, "bounded");
        assert_eq!(cache.accounts("u1"), None, "the oldest went");
        assert_eq!(cache.accounts("u4"), Some(accounts("u4")));
        std::thread::sleep(Duration::from_millis(50));
        cache.put_accounts(cache.ticket(), "u5", accounts("u5"));
        assert_eq!(cache.len().0, 1, "expired entries are dropped first");
        // Refreshing a present key never evicts another.
        let cache = Cache::new(CACHE_TTL, 2);
        cache.put_accounts(cache.ticket(), "a", accounts("a"));
        cache.put_accounts(cache.ticket(), "b", accounts("b"));
        cache.put_accounts(cache.ticket(), "a", accounts("a2"));
        assert_eq!(cache.accounts("b"), Some(accounts("b")));
        assert_eq!(cache.accounts("a"), Some(accounts("a2")));
    }
}
