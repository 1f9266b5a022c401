//! The generation register: every broker account's latest credential generation, kept
//! outside the database so that restoring an old copy of a row cannot go unnoticed.
//!
//! A row's ciphertexts are bound to its own generation, so swapping single fields or
//! copying a row elsewhere fails to decrypt. A *whole* older row (every sealed field, its
//! data key and its generation, saved earlier and written back) is self-consistent and
//! would decrypt; only something the database cannot rewrite knows it is stale. That is
//! the JetStream KV bucket [`CREDENTIAL_GENERATIONS_BUCKET`][bucket]: key = broker account
//! id, value = the latest generation as decimal ASCII, history kept. Only the
//! services may write it (`nats/auth.conf`); a database writer cannot.
//!
//! The rules:
//! - **Writers advance after the commit.** Every writer that bumps a generation (the user
//!   API's credential writes and deletes, the worker's SmartAPI session save) calls
//!   [`Register::advance`] once its row update committed. Advancing is a compare-and-set
//!   to the maximum, so the register never moves backwards and racing writers converge.
//! - **Readers refuse older rows.** Before decrypting, [`Register::check`] compares the
//!   row's generation with the register: older is refused ([`CheckError::RolledBack`]).
//!   Equal is the normal case. Newer means a writer committed but has not advanced the
//!   register yet (it may have crashed in between): the row is accepted, and once it
//!   *decrypted*, the reader advances the register itself. A forged higher generation never
//!   decrypts (the generation is in every ciphertext's associated data), so it can never
//!   push the register forward.
//! - **The hot path is local.** Each register keeps a watch on the bucket and an in-memory
//!   copy that only ever moves forward. A cached value counts only while the watch that
//!   was live when it was read is still live; otherwise the value is read from the bucket
//!   (one round trip per account, then cached). The copy may lag the bucket by the watch's
//!   delivery time (milliseconds); it never goes backwards.
//! - **No entry** (an account written before the register existed, or whose writer crashed
//!   before its first advance) is treated as generation 0: the first successful decrypt
//!   records the row's generation.
//!
//! # Layout
//! - `bucket`: the bucket's definition, uncached reads and compare-and-set advances, and
//!   [`RegisterError`] (a leaf: this file uses it, it uses nothing here).
//! - [`Register`]: a service's handle: the watch-fed cache, [`Register::check`] and
//!   [`Register::advance`].
//!
//! [bucket]: pinnacle_protocol::subjects::CREDENTIAL_GENERATIONS_BUCKET

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use pinnacle_protocol::model::DecryptReason;

mod bucket;

pub use bucket::{advance_in, bucket_config, open_bucket, read, RegisterError, HISTORY};
use bucket::{generation_of, unavailable};

/// How long the watch waits before it is re-created after it ended.
const REWATCH_AFTER: Duration = Duration::from_secs(1);

/// Why a row may not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The row is older than the register: it was rolled back.
    #[error("the row is at generation {row} but generation {register} was written")]
    RolledBack {
        /// The row's generation.
        row: i64,
        /// The register's.
        register: i64,
    },
    /// The register could not be consulted (fail closed).
    #[error(transparent)]
    Register(#[from] RegisterError),
}

impl CheckError {
    /// The reason code of the `decrypt_failed` audit event.
    pub fn reason(&self) -> DecryptReason {
        match self {
            Self::RolledBack { .. } => DecryptReason::RolledBack,
            Self::Register(_) => DecryptReason::RegisterUnavailable,
        }
    }
}

/// How a row's generation stands against the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The row is at the register's generation.
    Current,
    /// The row is newer than the register (`None`: no entry yet); advance the register
    /// with [`Register::advance`] once the row decrypted.
    Ahead {
        /// The register's generation, if it has one.
        register: Option<i64>,
    },
}

/// One account's cached generation and the watch epoch it is complete for.
#[derive(Debug, Clone, Copy)]
struct Cached {
    generation: i64,
    epoch: u64,
}

/// The in-memory copy of the bucket.
#[derive(Debug, Default)]
struct Cache {
    /// Bumped whenever the watch (re)starts or reports an error: values from an older epoch
    /// may have missed an update and are read again.
    epoch: u64,
    /// Whether a watch is delivering updates right now.
    live: bool,
    /// Generation by account id, only ever raised.
    values: HashMap<String, Cached>,
}

impl Cache {
    /// Raises `account_id` to `generation`, complete as of `epoch`.
    fn note(&mut self, account_id: &str, generation: Option<i64>, epoch: u64) {
        let slot = self.values.entry(account_id.to_string()).or_insert(Cached {
            generation: 0,
            epoch,
        });
        slot.generation = slot.generation.max(generation.unwrap_or(0));
        slot.epoch = slot.epoch.max(epoch);
    }

    /// The cached generation, if it is trustworthy now.
    fn get(&self, account_id: &str) -> Option<i64> {
        let cached = self.values.get(account_id)?;
        (self.live && cached.epoch == self.epoch).then_some(cached.generation)
    }
}

#[derive(Debug)]
struct Inner {
    /// JetStream on the service's connection, with its request timeout.
    js: jetstream::Context,
    /// The bucket, opened (or created) on first use.
    store: tokio::sync::OnceCell<kv::Store>,
    /// The watch-fed copy.
    cache: Mutex<Cache>,
    /// Set once the watch task is running.
    watching: tokio::sync::OnceCell<()>,
    /// Stops the watch task when the last handle is dropped.
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A service's handle on the generation register (cheap to clone).
#[derive(Debug, Clone)]
pub struct Register {
    inner: Arc<Inner>,
}

impl Register {
    /// A register over `client`; nothing is contacted until first use. Requests time out
    /// after `timeout`.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        Self {
            inner: Arc::new(Inner {
                js,
                store: tokio::sync::OnceCell::new(),
                cache: Mutex::new(Cache::default()),
                watching: tokio::sync::OnceCell::new(),
                stop: CancellationToken::new(),
            }),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bucket, opened on first use.
    pub async fn store(&self) -> Result<&kv::Store, RegisterError> {
        self.inner
            .store
            .get_or_try_init(|| open_bucket(&self.inner.js))
            .await
    }

    /// Starts the watch that keeps the cache current (once).
    async fn ensure_watch(&self) -> Result<(), RegisterError> {
        if self.inner.watching.initialized() {
            return Ok(());
        }
        let store = self.store().await?.clone();
        self.inner
            .watching
            .get_or_try_init(|| async {
                // The first watch is created here, so a value read right after is covered.
                let watch = store.watch_all().await.map_err(unavailable)?;
                {
                    let mut cache = self.cache();
                    cache.epoch += 1;
                    cache.live = true;
                }
                tokio::spawn(watch_loop(
                    Arc::downgrade(&self.inner),
                    store,
                    watch,
                    self.inner.stop.clone(),
                ));
                Ok::<(), RegisterError>(())
            })
            .await?;
        Ok(())
    }

    /// The register's generation for `account_id`: from the cache when it is current,
    /// else from the bucket.
    pub async fn latest(&self, account_id: &str) -> Result<Option<i64>, RegisterError> {
        self.ensure_watch().await?;
        if let Some(generation) = self.cache().get(account_id) {
            return Ok((generation > 0).then_some(generation));
        }
        let epoch = self.cache().epoch;
        let generation = read(self.store().await?, account_id).await?;
        self.cache().note(account_id, generation, epoch);
        Ok(generation)
    }

    /// How a row of `account_id` at `generation` stands; older than the register is
    /// [`CheckError::RolledBack`].
    pub async fn check(&self, account_id: &str, generation: i64) -> Result<Standing, CheckError> {
        match self.latest(account_id).await? {
            Some(register) if generation < register => Err(CheckError::RolledBack {
                row: generation,
                register,
            }),
            Some(register) if generation == register => Ok(Standing::Current),
            register => Ok(Standing::Ahead { register }),
        }
    }

    /// Records that `account_id`'s credentials are at `generation` (a committed write, or
    /// a newer row that decrypted); the register never moves backwards.
    pub async fn advance(&self, account_id: &str, generation: i64) -> Result<i64, RegisterError> {
        let epoch = self.cache().epoch;
        let now = advance_in(self.store().await?, account_id, generation).await?;
        self.cache().note(account_id, Some(now), epoch);
        Ok(now)
    }

    /// [`Self::advance`] after a committed write: a failure is logged, not returned,
    /// because the write stands and the next reader advances the register itself.
    pub async fn advance_after_commit(&self, account_id: &str, generation: i64) {
        if let Err(error) = self.advance(account_id, generation).await {
            tracing::warn!(
                %account_id,
                generation,
                %error,
                "credential generation register not advanced; the next decrypt advances it"
            );
        }
    }
}

/// Feeds the cache from the watch, re-creating the watch when it ends, until `stop`.
async fn watch_loop(
    inner: Weak<Inner>,
    store: kv::Store,
    mut watch: kv::Watch,
    stop: CancellationToken,
) {
    loop {
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = watch.next() => next,
            };
            let Some(inner) = inner.upgrade() else { return };
            let mut cache = inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            match next {
                Some(Ok(entry)) => match generation_of(&entry) {
                    Ok(generation) => {
                        let epoch = cache.epoch;
                        cache.note(&entry.key, generation, epoch);
                    }
                    Err(error) => {
                        // Read it again on next use, which refuses until it is fixed.
                        tracing::warn!(%error, "unreadable credential generation");
                        cache.values.remove(&entry.key);
                    }
                },
                Some(Err(error)) => {
                    tracing::warn!(%error, "credential generation watch error; re-reading");
                    cache.epoch += 1;
                }
                None => {
                    cache.live = false;
                    cache.epoch += 1;
                    break;
                }
            }
        }
        // The watch ended (connection lost): re-create it, then trust new reads again.
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(REWATCH_AFTER) => {}
            }
            match store.watch_all().await {
                Ok(fresh) => {
                    let Some(inner) = inner.upgrade() else { return };
                    let mut cache = inner.cache.lock().unwrap_or_else(|e| e.into_inner());
                    cache.epoch += 1;
                    cache.live = true;
                    watch = fresh;
                    break;
                }
                Err(error) => tracing::warn!(%error, "credential generation watch not re-created"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_only_moves_forward_and_trusts_only_the_live_epoch() {
        let mut cache = Cache {
            live: true,
            epoch: 1,
            ..Cache::default()
        };
        cache.note("a", Some(3), 1);
        assert_eq!(cache.get("a"), Some(3));
        cache.note("a", Some(2), 1);
        assert_eq!(cache.get("a"), Some(3), "never backwards");
        cache.note("a", None, 1);
        assert_eq!(cache.get("a"), Some(3), "a delete marker does not lower it");
        cache.epoch = 2;
        assert_eq!(cache.get("a"), None, "an older epoch is read again");
        cache.note("a", Some(4), 2);
        assert_eq!(cache.get("a"), Some(4));
        cache.live = false;
        assert_eq!(cache.get("a"), None, "no live watch, no trust");
        assert_eq!(cache.get("b"), None);
    }

    #[test]
    fn rolled_back_and_unavailable_have_their_reason_codes() {
        let rolled = CheckError::RolledBack {
            row: 1,
            register: 2,
        };
        assert_eq!(rolled.reason(), DecryptReason::RolledBack);
        let down = CheckError::Register(RegisterError::Unavailable("x".into()));
        assert_eq!(down.reason(), DecryptReason::RegisterUnavailable);
    }
}
