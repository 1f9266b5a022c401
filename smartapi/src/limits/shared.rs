//! Rate windows shared by every process of a deployment, so that one client code has one
//! budget however many order workers send for it.
//!
//! [`KvWindows`] keeps them in the JetStream KV bucket
//! [`SMARTAPI_RATE`](pinnacle_protocol::subjects::SMARTAPI_RATE_BUCKET):
//!
//! - **Key**: `<bucket name>.<32 hex digits of SHA-256 over a fixed prefix and the client
//!   code>`. Client codes are account identifiers, so they never appear in a subject; the
//!   hash is a pseudonym (it keys the windows), not a secret.
//! - **Value**: the send times (milliseconds since the Unix epoch, little-endian `u64`s,
//!   ascending) inside the bucket's longest window: at most 1,000 × 8 bytes for orders.
//! - **Take**: read the entry, check every window ([`super::window::admit`]), and if one
//!   more send fits write the log back *with the revision read* (compare-and-set). A
//!   writer that lost the race reads again, so two workers never both count the last
//!   slot. One request costs one KV read and one revision-checked write (two round trips
//!   to the stream leader).
//! - **Restamp**: a send counted ahead of the request (a reserved [`super::Slot`]) that
//!   goes out late has its stamp moved to when it goes, with the same compare-and-set
//!   ([`super::window::restamp`]).
//! - **Bounds**: a worker stamps a send before it sends; if it dies in between, that slot
//!   stays counted until it leaves its window (1.05 s, a minute or an hour): budget is
//!   lost, never exceeded. Nothing is held by a worker, so nothing leaks when it dies. The
//!   bucket's `max_age` (an hour and a minute) drops the entries of idle accounts.
//! - **Clocks**: times are wall-clock, so hosts must keep them in step (NTP); a clock
//!   ahead only makes the others stricter (see [`super::window::admit`]), a clock behind
//!   by d lets that host send up to d early inside the 50 ms margin of the one-second
//!   window.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use pinnacle_protocol::subjects;
use sha2::{Digest, Sha256};

use super::bucket::{Bucket, Limit};
use super::window;

/// How many times in a row a take may lose the compare-and-set before it gives up.
const MAX_CAS_ATTEMPTS: usize = 32;
/// How long an idle account's entry is kept: every window has closed by then.
const MAX_AGE: Duration = Duration::from_secs(3_660);

/// Why the shared windows could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RateStoreError {
    /// The bucket could not be opened, read or written.
    #[error("the SmartAPI rate bucket is unavailable: {0}")]
    Unavailable(String),
    /// Other writers changed the entry every time it was read.
    #[error("the SmartAPI rate entry changed under {0} attempts in a row")]
    Contended(usize),
    /// No answer in time.
    #[error("the SmartAPI rate bucket did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
}

/// Windows that several processes consult atomically.
#[async_trait]
pub trait SharedWindows: Send + Sync + std::fmt::Debug {
    /// Counts one send of `client_code` in `bucket` if every window has room (`None`), or
    /// returns how long until one opens.
    async fn take(
        &self,
        client_code: &str,
        bucket: Bucket,
    ) -> Result<Option<Duration>, RateStoreError> {
        Ok(self.take_stamped(client_code, bucket).await?.err())
    }

    /// [`Self::take`], returning the stamp (milliseconds on the windows' clock) of the
    /// send it counted.
    async fn take_stamped(
        &self,
        client_code: &str,
        bucket: Bucket,
    ) -> Result<Result<u64, Duration>, RateStoreError>;

    /// Moves the send stamped `from` to now ([`window::restamp`]): the new stamp, or
    /// `None` when it cannot be moved and the request must be counted afresh.
    async fn restamp(
        &self,
        client_code: &str,
        bucket: Bucket,
        from: u64,
    ) -> Result<Option<u64>, RateStoreError>;
}

/// The bucket's definition; `replicas` is 1 when a service creates it, 3 in the cluster
/// (`nats/streams/KV_SMARTAPI_RATE.json`).
pub fn bucket_config(replicas: usize) -> kv::Config {
    kv::Config {
        bucket: subjects::SMARTAPI_RATE_BUCKET.to_string(),
        description: "Pinnacle: SmartAPI rate windows per client code (hashed) and limit".into(),
        history: 1,
        max_age: MAX_AGE,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// The key for `client_code`'s windows in `bucket`.
pub fn key(client_code: &str, bucket: Bucket) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"pinnacle/smartapi-rate\0");
    hasher.update(client_code.as_bytes());
    let digest = hasher.finalize();
    format!("{}.{}", bucket.name(), hex::encode(&digest[..16]))
}

/// The log in a stored value; `None` when it is not a whole number of `u64`s.
fn decode(value: &[u8]) -> Option<Vec<u64>> {
    if value.len() % 8 != 0 {
        return None;
    }
    let mut log: Vec<u64> = value
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    log.sort_unstable();
    Some(log)
}

fn encode(log: &[u64]) -> bytes::Bytes {
    log.iter()
        .flat_map(|t| t.to_le_bytes())
        .collect::<Vec<u8>>()
        .into()
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn unavailable(error: impl std::fmt::Display) -> RateStoreError {
    RateStoreError::Unavailable(error.to_string())
}

/// The windows in the `SMARTAPI_RATE` KV bucket, opened (or created with one replica) on
/// first use.
#[derive(Debug)]
pub struct KvWindows {
    js: jetstream::Context,
    store: tokio::sync::OnceCell<kv::Store>,
}

impl KvWindows {
    /// Windows in the bucket reached through `js`.
    pub fn new(js: jetstream::Context) -> Self {
        Self {
            js,
            store: tokio::sync::OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&kv::Store, RateStoreError> {
        self.store
            .get_or_try_init(|| async {
                match self.js.get_key_value(subjects::SMARTAPI_RATE_BUCKET).await {
                    Ok(store) => Ok(store),
                    Err(_) => self
                        .js
                        .create_key_value(bucket_config(1))
                        .await
                        .map_err(unavailable),
                }
            })
            .await
    }

    /// [`SharedWindows::take`] against an explicit `limit` (for measurements).
    pub async fn take_with(
        &self,
        client_code: &str,
        bucket: Bucket,
        limit: Limit,
    ) -> Result<Option<Duration>, RateStoreError> {
        Ok(self.admit(client_code, bucket, limit).await?.err())
    }

    async fn admit(
        &self,
        client_code: &str,
        bucket: Bucket,
        limit: Limit,
    ) -> Result<Result<u64, Duration>, RateStoreError> {
        self.change(client_code, bucket, |log, now| {
            match window::admit(log, now, limit) {
                None => Ok(log.last().copied().unwrap_or(now)),
                Some(wait) => Err(Duration::from_millis(wait)),
            }
        })
        .await
    }

    /// Reads `client_code`'s log in `bucket`, lets `edit` change it (the stamp it wrote)
    /// or decline (what to answer, nothing written), and writes it back with the revision
    /// read (compare-and-set), reading again when another writer came in between.
    async fn change<T>(
        &self,
        client_code: &str,
        bucket: Bucket,
        edit: impl Fn(&mut Vec<u64>, u64) -> Result<u64, T>,
    ) -> Result<Result<u64, T>, RateStoreError> {
        let store = self.store().await?;
        let key = key(client_code, bucket);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = store.entry(&key).await.map_err(unavailable)?;
            let live = entry.as_ref().filter(|e| e.operation == kv::Operation::Put);
            let mut log = match live {
                Some(entry) => decode(&entry.value).unwrap_or_else(|| {
                    tracing::warn!(
                        bucket = bucket.name(),
                        "a SmartAPI rate entry is not a list of times; starting it afresh"
                    );
                    Vec::new()
                }),
                None => Vec::new(),
            };
            let stamp = match edit(&mut log, wall_ms()) {
                Ok(stamp) => stamp,
                Err(answer) => return Ok(Err(answer)),
            };
            let value = encode(&log);
            let written = match live {
                Some(entry) => store
                    .update(&key, value, entry.revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.kind() == kv::UpdateErrorKind::WrongLastRevision),
                None => store
                    .create(&key, value)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.kind() == kv::CreateErrorKind::AlreadyExists),
            };
            match written {
                Ok(()) => return Ok(Ok(stamp)),
                // Another worker wrote in between: read again.
                Err(true) => continue,
                Err(false) => {
                    return Err(RateStoreError::Unavailable(format!(
                        "writing the {} window failed",
                        bucket.name()
                    )))
                }
            }
        }
        Err(RateStoreError::Contended(MAX_CAS_ATTEMPTS))
    }
}

#[async_trait]
impl SharedWindows for KvWindows {
    async fn take_stamped(
        &self,
        client_code: &str,
        bucket: Bucket,
    ) -> Result<Result<u64, Duration>, RateStoreError> {
        self.admit(client_code, bucket, bucket.limit()).await
    }

    async fn restamp(
        &self,
        client_code: &str,
        bucket: Bucket,
        from: u64,
    ) -> Result<Option<u64>, RateStoreError> {
        let limit = bucket.limit();
        let moved = self
            .change(client_code, bucket, |log, now| {
                window::restamp(log, from, now, limit).ok_or(())
            })
            .await?;
        Ok(moved.ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_bucket_but_not_the_client_code() {
        let key = key("A12345", Bucket::Orders);
        assert!(key.starts_with("orders."), "{key}");
        assert!(!key.contains("A12345"), "{key}");
        assert_eq!(key.len(), "orders.".len() + 32);
        assert_ne!(key, super::key("A12346", Bucket::Orders));
    }

    #[test]
    fn logs_round_trip_and_garbage_is_not_a_log() {
        let log = vec![1, 2, 1_700_000_000_000];
        assert_eq!(decode(&encode(&log)), Some(log));
        assert_eq!(decode(b"not a log"), None);
        assert_eq!(decode(b""), Some(Vec::new()));
    }
}
