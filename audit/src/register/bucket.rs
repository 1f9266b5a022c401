//! The generation register's bucket itself: its definition, and reading and advancing one
//! account's entry without any cache (what [`super::Register`] and `pinnacle audit verify`
//! build on).

use async_nats::jetstream::{self, kv};

use pinnacle_protocol::subjects;

/// The register could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// NATS or JetStream failed (no bucket, no server, a timeout, no permission).
    #[error("the credential generation register is unavailable: {0}")]
    Unavailable(String),
    /// The stored value is not a generation.
    #[error("the credential generation register holds an unreadable value for account {0}")]
    Corrupt(String),
    /// Every compare-and-set lost to another writer.
    #[error("the credential generation register kept changing for account {0}")]
    Contended(String),
}

pub(super) fn unavailable(error: impl std::fmt::Display) -> RegisterError {
    RegisterError::Unavailable(error.to_string())
}

/// Versions of each key the bucket keeps (JetStream's maximum is 64), so an operator can
/// see how an account's generation moved.
pub const HISTORY: i64 = 16;
/// Compare-and-set attempts before an advance gives up (each loss means another writer
/// advanced the same account in between).
const MAX_CAS_ATTEMPTS: usize = 16;

/// The bucket's definition; `replicas` is 1 when a service creates it, 3 in the cluster
/// (`nats/streams/KV_CREDENTIAL_GENERATIONS.json`).
pub fn bucket_config(replicas: usize) -> kv::Config {
    kv::Config {
        bucket: subjects::CREDENTIAL_GENERATIONS_BUCKET.to_string(),
        description: "Pinnacle: latest credential generation per broker account".into(),
        history: HISTORY,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Opens the bucket, creating it (one replica) when it does not exist yet.
pub async fn open_bucket(js: &jetstream::Context) -> Result<kv::Store, RegisterError> {
    match js
        .get_key_value(subjects::CREDENTIAL_GENERATIONS_BUCKET)
        .await
    {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_key_value(bucket_config(1))
            .await
            .map_err(unavailable),
    }
}

/// An entry's generation; `None` for a delete or purge marker.
pub(super) fn generation_of(entry: &kv::Entry) -> Result<Option<i64>, RegisterError> {
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    std::str::from_utf8(&entry.value)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|g| *g >= 0)
        .map(Some)
        .ok_or_else(|| RegisterError::Corrupt(entry.key.clone()))
}

/// The register's generation for `account_id`, read from the bucket (no cache).
pub async fn read(store: &kv::Store, account_id: &str) -> Result<Option<i64>, RegisterError> {
    match store.entry(account_id).await.map_err(unavailable)? {
        Some(entry) => generation_of(&entry),
        None => Ok(None),
    }
}

/// Moves `account_id`'s register to `generation` unless it is already there or beyond;
/// returns the register's generation afterwards.
pub async fn advance_in(
    store: &kv::Store,
    account_id: &str,
    generation: i64,
) -> Result<i64, RegisterError> {
    let value = bytes::Bytes::from(generation.to_string());
    for _ in 0..MAX_CAS_ATTEMPTS {
        let entry = store.entry(account_id).await.map_err(unavailable)?;
        let current = match &entry {
            Some(entry) => generation_of(entry)?,
            None => None,
        };
        if let Some(current) = current.filter(|c| *c >= generation) {
            return Ok(current);
        }
        let written = match &entry {
            // A live value: replace exactly the revision read.
            Some(entry) if current.is_some() => store
                .update(account_id, value.clone(), entry.revision)
                .await
                .map(|_| ())
                .map_err(|e| e.kind() == kv::UpdateErrorKind::WrongLastRevision),
            // Absent (or deleted): create, which fails if someone else created it first.
            _ => store
                .create(account_id, value.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.kind() == kv::CreateErrorKind::AlreadyExists),
        };
        match written {
            Ok(()) => return Ok(generation),
            Err(true) => continue,
            Err(false) => {
                return Err(RegisterError::Unavailable(format!(
                    "advancing account {account_id} failed"
                )))
            }
        }
    }
    Err(RegisterError::Contended(account_id.to_string()))
}
