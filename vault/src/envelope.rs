//! Envelope encryption: one random data key per credential write, wrapped by a master key.
//!
//! Every write of a broker account's credentials makes a fresh 256-bit data key. The
//! fields are sealed under it (the data key's id is the row's `generation`), and the data
//! key itself is sealed ("wrapped") under the current master key's credential-encryption
//! subkey. Rotation rewraps only the data key; the field ciphertexts never change.
//!
//! Both layers bind their associated data to the row: the wrapped data key to
//! (user id, account id, master key id, generation), each field to (user id, account id,
//! field name, data key id, generation). A data key has sealed at most one write's fields,
//! so its nonce count stays tiny; master keys count their wraps in the database.

use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use rand::RngCore;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::aead::{self, push_parts};
use crate::error::DecryptError;

/// The identity of one credential write: which row, at which generation.
#[derive(Debug, Clone, Copy)]
pub struct RowIdentity<'a> {
    /// Owning user id.
    pub user_id: &'a str,
    /// Broker account id.
    pub account_id: &'a str,
    /// The row's generation counter, bumped on every credential write.
    pub generation: i64,
}

impl RowIdentity<'_> {
    /// The associated data of this row's wrapped data key under master key `key_id`.
    pub(super) fn wrap_aad(&self, master_key_id: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"pinnacle/data-key/v1");
        push_parts(&mut out, &[self.user_id, self.account_id]);
        out.extend_from_slice(&u64::from(master_key_id).to_be_bytes());
        out.extend_from_slice(&self.generation.to_be_bytes());
        out
    }

    /// The id of this write's data key (its generation, as carried in field ciphertexts).
    pub fn data_key_id(&self) -> u64 {
        self.generation as u64
    }
}

/// The row identity a credential field's ciphertext is bound to.
#[derive(Debug, Clone, Copy)]
pub struct CredentialAad<'a> {
    /// Owning user id.
    pub user_id: &'a str,
    /// Broker account id.
    pub account_id: &'a str,
    /// Column / field name, e.g. `api_key`.
    pub field: &'a str,
    /// The row's generation counter, bumped on every credential write.
    pub generation: i64,
}

impl CredentialAad<'_> {
    fn bytes(&self, data_key_id: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"pinnacle/credential/v1");
        push_parts(&mut out, &[self.user_id, self.account_id, self.field]);
        out.extend_from_slice(&data_key_id.to_be_bytes());
        out.extend_from_slice(&self.generation.to_be_bytes());
        out
    }

    fn data_key_id(&self) -> u64 {
        self.generation as u64
    }
}

/// A plaintext data key: seals and opens one write's fields. Zeroed on drop, never printed.
pub struct DataKey {
    /// The key bytes, kept so the key can be wrapped again under a new master key.
    pub(super) raw: Zeroizing<[u8; 32]>,
    /// The AES-GCM instance over `raw`.
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Self {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(raw.as_mut());
        Self::from_raw(raw)
    }

    pub(super) fn from_raw(raw: Zeroizing<[u8; 32]>) -> Self {
        let cipher = Aes256Gcm::new(raw.as_ref().into());
        Self { raw, cipher }
    }

    /// Seals one credential field for the row and field named by `aad`.
    pub fn seal(&self, aad: CredentialAad<'_>, plaintext: &[u8]) -> String {
        let kid = aad.data_key_id();
        aead::seal(&self.cipher, kid, &aad.bytes(kid), plaintext)
    }

    /// Opens one credential field; the row identity must match the one it was sealed to.
    pub fn open(&self, aad: CredentialAad<'_>, stored: &str) -> Result<SecretString, DecryptError> {
        let kid = aad.data_key_id();
        let plain = aead::open(&self.cipher, kid, &aad.bytes(kid), stored)?;
        let text = std::str::from_utf8(&plain).map_err(|_| DecryptError)?;
        Ok(SecretString::from(text.to_owned()))
    }
}
