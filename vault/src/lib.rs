//! The credential vault: envelope encryption under a ring of master keys.
//!
//! A crate of its own, below everything that stores or uses a credential: it knows no
//! database, no NATS and no HTTP server (the database side, key bookkeeping, sealing rows
//! and rotation, is `pinnacle_common::keystore`). `pinnacle_common::crypto` is this crate
//! under its old name, so every `pinnacle_common::crypto::Vault` path still holds.
//!
//! A master key never encrypts anything directly. HKDF-SHA256 derives one subkey per
//! purpose ([`Purpose`]): credential (data-key) encryption, the API-token pepper, the
//! audit chain and the audit checkpoints. Each credential write gets its own random data key ([`DataKey`],
//! `envelope`), wrapped by the current master key's credential-encryption subkey.
//!
//! Ciphertexts carry a format version and a key id (`aead`). Associated data is rebuilt
//! at decrypt time from the row's identity, never read from the stored blob. Every
//! failure is the same opaque [`DecryptError`].
//!
//! # Layout
//! - [`aead`]: the AES-256-GCM primitive and the `pnk1:<key id>:<base64>` format.
//! - [`envelope`]: data keys and the associated data of both layers.
//! - [`ring`]: loading the master key ring from the environment or a file.
//! - [`settings`]: [`VaultSettings`] (`PINNACLE_MASTER_KEY*`) and [`VaultConfigError`].
//! - [`Vault`]: the ring at run time: wrap, unwrap, subkeys, retired keys.

pub mod aead;
pub mod envelope;
mod error;
pub mod ring;
pub mod settings;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hkdf::Hkdf;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use envelope::{CredentialAad, DataKey, RowIdentity};
pub use error::DecryptError;
pub use ring::parse_master_key;
pub use settings::{VaultConfigError, VaultSettings, DEFAULT_MAX_ENCRYPTIONS};

const HKDF_SALT: &[u8] = b"pinnacle/hkdf/v1";

/// What a derived subkey is for. Each purpose gets its own key, so no key serves two roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Wrapping data keys (credential encryption).
    CredentialEncryption,
    /// The pepper in API-token hashes.
    TokenPepper,
    /// The HMAC chain over audit events.
    AuditChain,
    /// Signatures on audit checkpoints (a different key from the chain's, so a checkpoint
    /// can never be passed off as a link or the other way round).
    AuditCheckpoint,
    /// A public fingerprint that tells two keys with the same id apart.
    Fingerprint,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Self::CredentialEncryption => b"pinnacle/credential-encryption",
            Self::TokenPepper => b"pinnacle/api-token-pepper",
            Self::AuditChain => b"pinnacle/audit-chain",
            Self::AuditCheckpoint => b"pinnacle/audit-checkpoint",
            Self::Fingerprint => b"pinnacle/key-fingerprint",
        }
    }
}

/// A 256-bit key that zeroes itself on drop and never prints.
pub type Key32 = SecretBox<[u8; 32]>;

/// HMAC-SHA256, as the audit chain and checkpoints use it.
pub type HmacSha256 = hmac::Hmac<Sha256>;

/// Which of the two audit subkeys ([`Purpose::AuditChain`], [`Purpose::AuditCheckpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKey {
    /// Links of the per-subject HMAC chain.
    Chain,
    /// Signatures on checkpoints.
    Checkpoint,
}

fn derive(master: &[u8; 32], purpose: Purpose) -> Key32 {
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), master);
    let mut okm = Box::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    if hk.expand(purpose.info(), okm.as_mut()).is_err() {
        unreachable!("HKDF output length is valid");
    }
    SecretBox::new(okm)
}

/// One master key as the vault holds it: only derived subkeys, never the key itself.
struct MasterKey {
    /// Wraps and unwraps data keys.
    wrap: Aes256Gcm,
    /// The audit-chain subkey under this id, so links written under an earlier audit key
    /// id still verify after the ring changed.
    audit_chain: Key32,
    /// The audit-checkpoint subkey under this id.
    audit_checkpoint: Key32,
    /// 16 hex characters that identify the key material without revealing it.
    fingerprint: String,
}

impl MasterKey {
    fn new(master: &[u8; 32]) -> Self {
        let enc = derive(master, Purpose::CredentialEncryption);
        let fp = derive(master, Purpose::Fingerprint);
        Self {
            wrap: Aes256Gcm::new(enc.expose_secret().into()),
            audit_chain: derive(master, Purpose::AuditChain),
            audit_checkpoint: derive(master, Purpose::AuditCheckpoint),
            fingerprint: hex::encode(&fp.expose_secret()[..8]),
        }
    }
}

/// The mutable part of the vault: which keys exist, which is current, which are retired.
struct Ring {
    /// Master keys by id; unwrap accepts any that is not retired.
    keys: BTreeMap<u32, MasterKey>,
    /// The key id new data keys are wrapped under.
    current: u32,
    /// Ids retired in the database: they no longer unwrap anything.
    retired: BTreeSet<u32>,
}

/// The master key ring and the subkeys derived from it.
pub struct Vault {
    /// Keys, current id and retired ids; changed only by key management.
    ring: RwLock<Ring>,
    /// Pepper for API-token hashes, from the pepper key (it does not change on rotation).
    token_pepper: Key32,
    /// Key for the audit HMAC chain, from the pepper key.
    audit_key: Key32,
    /// The id of the master key the audit keys come from (the pepper key); recorded in
    /// every chain link and checkpoint so a verifier picks the right key.
    audit_key_id: u32,
    /// Wraps a master key may make before it refuses and must be rotated.
    max_encryptions: i64,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.read();
        f.debug_struct("Vault")
            .field("key_ids", &ring.keys.keys().collect::<Vec<_>>())
            .field("current", &ring.current)
            .field("retired", &ring.retired)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Builds a one-key vault from a master key (32 bytes) and its id.
    pub fn new(key_id: u32, master: &[u8; 32]) -> Self {
        Self {
            ring: RwLock::new(Ring {
                keys: BTreeMap::from([(key_id, MasterKey::new(master))]),
                current: key_id,
                retired: BTreeSet::new(),
            }),
            token_pepper: derive(master, Purpose::TokenPepper),
            audit_key: derive(master, Purpose::AuditChain),
            audit_key_id: key_id,
            max_encryptions: DEFAULT_MAX_ENCRYPTIONS,
        }
    }

    /// Builds a vault from settings, failing clearly on a missing, short or malformed key.
    ///
    /// The token pepper and audit key come from `PINNACLE_PEPPER_KEY_ID` (default: the
    /// lowest id in the ring), so rotating the credential key leaves API tokens valid.
    pub fn from_settings(settings: &VaultSettings) -> Result<Self, VaultConfigError> {
        let spec = ring::from_settings(settings)?;
        let pepper_id = settings
            .pepper_key_id
            .or_else(|| spec.keys.keys().next().copied())
            .unwrap_or(spec.current);
        let pepper = spec.keys.get(&pepper_id).ok_or_else(|| {
            VaultConfigError::new(format!(
                "PINNACLE_PEPPER_KEY_ID={pepper_id} is not in the key ring"
            ))
        })?;
        if settings.key_max_encryptions < 1 {
            return Err(VaultConfigError::new(
                "PINNACLE_KEY_MAX_ENCRYPTIONS must be positive",
            ));
        }
        let vault = Self::new(pepper_id, pepper).with_max_encryptions(settings.key_max_encryptions);
        for (id, key) in &spec.keys {
            vault.add_key(*id, key);
        }
        vault.set_current(spec.current);
        Ok(vault)
    }

    /// Sets how many wraps a master key may make (tests use a small number).
    pub fn with_max_encryptions(mut self, max: i64) -> Self {
        self.max_encryptions = max;
        self
    }

    fn read(&self) -> RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Ring> {
        self.ring.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or replaces) master key `key_id`, e.g. after the ring was reloaded.
    pub fn add_key(&self, key_id: u32, master: &[u8; 32]) {
        self.write().keys.insert(key_id, MasterKey::new(master));
    }

    /// Makes `key_id` the key new data keys are wrapped under; false if it is unknown.
    pub fn set_current(&self, key_id: u32) -> bool {
        let mut ring = self.write();
        let ok = ring.keys.contains_key(&key_id);
        if ok {
            ring.current = key_id;
        }
        ok
    }

    /// Marks `key_id` retired: it no longer unwraps anything.
    pub fn retire(&self, key_id: u32) {
        self.write().retired.insert(key_id);
    }

    /// Generates a fresh random master key, base64-encoded, for `PINNACLE_MASTER_KEY`.
    pub fn generate_master_key() -> SecretString {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        SecretString::from(B64.encode(key.as_ref()))
    }

    /// The key id new data keys are wrapped under.
    pub fn current_key_id(&self) -> u32 {
        self.read().current
    }

    /// Every key id in the ring with its public fingerprint.
    pub fn key_fingerprints(&self) -> Vec<(u32, String)> {
        let ring = self.read();
        ring.keys
            .iter()
            .map(|(id, k)| (*id, k.fingerprint.clone()))
            .collect()
    }

    /// Wraps a master key may make before it must be rotated.
    pub fn max_encryptions(&self) -> i64 {
        self.max_encryptions
    }

    /// The API-token pepper.
    pub fn token_pepper(&self) -> &Key32 {
        &self.token_pepper
    }

    /// The audit-chain key.
    pub fn audit_key(&self) -> &Key32 {
        &self.audit_key
    }

    /// The master key id new audit links and checkpoints are keyed under.
    pub fn audit_key_id(&self) -> u32 {
        self.audit_key_id
    }

    /// HMAC-SHA256 keyed with `key`'s subkey of master key `key_id` (retired keys
    /// included: retirement stops wrapping, not verifying history); `None` for an unknown id.
    pub fn audit_mac(&self, key_id: u32, key: AuditKey) -> Option<HmacSha256> {
        let ring = self.read();
        let master = ring.keys.get(&key_id)?;
        let secret = match key {
            AuditKey::Chain => &master.audit_chain,
            AuditKey::Checkpoint => &master.audit_checkpoint,
        };
        <HmacSha256 as hmac::Mac>::new_from_slice(secret.expose_secret()).ok()
    }

    /// Wraps `data_key` for `row` under master key `key_id`. The caller has counted the
    /// encryption against that key first (see `pinnacle_common::keystore`).
    pub fn wrap(
        &self,
        key_id: u32,
        row: RowIdentity<'_>,
        data_key: &DataKey,
    ) -> Result<String, DecryptError> {
        let ring = self.read();
        if ring.retired.contains(&key_id) {
            return Err(DecryptError);
        }
        let key = ring.keys.get(&key_id).ok_or(DecryptError)?;
        Ok(aead::seal(
            &key.wrap,
            u64::from(key_id),
            &row.wrap_aad(key_id),
            data_key.raw.as_ref(),
        ))
    }

    /// Unwraps the data key of `row`, wrapped under `key_id` (the row's column, not the blob's).
    pub fn unwrap(
        &self,
        key_id: u32,
        row: RowIdentity<'_>,
        wrapped: &str,
    ) -> Result<DataKey, DecryptError> {
        let ring = self.read();
        if ring.retired.contains(&key_id) {
            return Err(DecryptError);
        }
        let key = ring.keys.get(&key_id).ok_or(DecryptError)?;
        let raw = aead::open(&key.wrap, u64::from(key_id), &row.wrap_aad(key_id), wrapped)?;
        if raw.len() != 32 {
            return Err(DecryptError);
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&raw);
        Ok(DataKey::from_raw(bytes))
    }
}
