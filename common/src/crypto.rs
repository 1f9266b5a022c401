//! Credential encryption: AES-256-GCM with associated data bound to the row.
//!
//! The master key never encrypts anything directly. HKDF-SHA256 derives one subkey per
//! purpose ([`Purpose`]): credential encryption, the API-token pepper, the audit chain.
//!
//! A ciphertext is the text `pnk1:<key id>:<base64(nonce ‖ ciphertext+tag)>`: a format
//! version and the key id travel with it, the nonce is 96 random bits. The associated
//! data is rebuilt at decrypt time from the row's identity ([`CredentialAad`]): user id,
//! broker account id, field name, key id and the row's generation counter. A ciphertext
//! copied into another row or field, or restored from an older generation, fails to
//! decrypt, and every failure is the same opaque [`DecryptError`].

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hkdf::Hkdf;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::{ConfigError, VaultSettings};

const FORMAT_PREFIX: &str = "pnk1";
const NONCE_LEN: usize = 12;
const HKDF_SALT: &[u8] = b"pinnacle/hkdf/v1";

/// What a derived subkey is for. Each purpose gets its own key, so no key serves two roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Encrypting broker credentials.
    CredentialEncryption,
    /// The pepper in API-token hashes.
    TokenPepper,
    /// The HMAC chain over audit events.
    AuditChain,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Self::CredentialEncryption => b"pinnacle/credential-encryption",
            Self::TokenPepper => b"pinnacle/api-token-pepper",
            Self::AuditChain => b"pinnacle/audit-chain",
        }
    }
}

/// A 256-bit key that zeroes itself on drop and never prints.
pub type Key32 = SecretBox<[u8; 32]>;

/// The one error every failed decrypt gives, whatever went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("credential could not be decrypted")]
pub struct DecryptError;

/// The row identity a credential ciphertext is bound to.
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
    fn bytes(&self, key_id: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"pinnacle/credential/v1");
        for part in [self.user_id, self.account_id, self.field] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(&key_id.to_be_bytes());
        out.extend_from_slice(&self.generation.to_be_bytes());
        out
    }
}

/// The master key ring and the subkeys derived from it.
pub struct Vault {
    /// Credential-encryption subkeys by key id; decrypt accepts any of them.
    encryption: BTreeMap<u32, Aes256Gcm>,
    /// The key id new ciphertexts are made under.
    current: u32,
    /// Pepper for API-token hashes, from the current master key.
    token_pepper: Key32,
    /// Key for the audit HMAC chain, from the current master key.
    audit_key: Key32,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("key_ids", &self.encryption.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
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

impl Vault {
    /// Builds a vault from one master key (32 bytes) and its id.
    pub fn new(key_id: u32, master: &[u8; 32]) -> Self {
        let enc = derive(master, Purpose::CredentialEncryption);
        let cipher = Aes256Gcm::new(enc.expose_secret().into());
        Self {
            encryption: BTreeMap::from([(key_id, cipher)]),
            current: key_id,
            token_pepper: derive(master, Purpose::TokenPepper),
            audit_key: derive(master, Purpose::AuditChain),
        }
    }

    /// Builds a vault from settings, failing clearly on a missing, short or malformed key.
    pub fn from_settings(settings: &VaultSettings) -> Result<Self, ConfigError> {
        let master = parse_master_key(&settings.master_key)?;
        Ok(Self::new(settings.master_key_id, &master))
    }

    /// Generates a fresh random master key, base64-encoded, for `PINNACLE_MASTER_KEY`.
    pub fn generate_master_key() -> SecretString {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        SecretString::from(B64.encode(key.as_ref()))
    }

    /// The key id new ciphertexts carry.
    pub fn current_key_id(&self) -> u32 {
        self.current
    }

    /// The API-token pepper.
    pub fn token_pepper(&self) -> &Key32 {
        &self.token_pepper
    }

    /// The audit-chain key.
    pub fn audit_key(&self) -> &Key32 {
        &self.audit_key
    }

    /// Encrypts one credential field for the row named by `aad`.
    pub fn encrypt(&self, aad: CredentialAad<'_>, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = &self.encryption[&self.current];
        let aad_bytes = aad.bytes(self.current);
        // AES-GCM encryption fails only for inputs beyond 64 GiB, far over any credential.
        let Ok(sealed) = cipher.encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad_bytes,
            },
        ) else {
            unreachable!("credential plaintexts are tiny");
        };
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{FORMAT_PREFIX}:{}:{}", self.current, B64.encode(blob))
    }

    /// Decrypts one credential field; the row identity must match the one it was sealed to.
    pub fn decrypt(
        &self,
        aad: CredentialAad<'_>,
        stored: &str,
    ) -> Result<SecretString, DecryptError> {
        let mut parts = stored.splitn(3, ':');
        let (Some(FORMAT_PREFIX), Some(kid), Some(body)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(DecryptError);
        };
        let key_id: u32 = kid.parse().map_err(|_| DecryptError)?;
        let cipher = self.encryption.get(&key_id).ok_or(DecryptError)?;
        let blob = B64.decode(body).map_err(|_| DecryptError)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(DecryptError);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &aad.bytes(key_id),
                    },
                )
                .map_err(|_| DecryptError)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| DecryptError)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

/// Parses a base64 master key, refusing anything but exactly 32 bytes.
pub fn parse_master_key(encoded: &SecretString) -> Result<Zeroizing<[u8; 32]>, ConfigError> {
    let raw = Zeroizing::new(B64.decode(encoded.expose_secret().trim()).map_err(|_| {
        ConfigError::new(
            "PINNACLE_MASTER_KEY is not valid base64 (generate one with `pinnacle keys generate`)",
        )
    })?);
    if raw.len() != 32 {
        return Err(ConfigError::new(format!(
            "PINNACLE_MASTER_KEY must decode to 32 bytes, got {}",
            raw.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&raw);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vault() -> Vault {
        Vault::new(1, &[7u8; 32])
    }

    fn aad<'a>(user: &'a str, field: &'a str, generation: i64) -> CredentialAad<'a> {
        CredentialAad {
            user_id: user,
            account_id: "acct-1",
            field,
            generation,
        }
    }

    #[test]
    fn round_trips_and_binds_to_the_row() {
        let v = vault();
        let blob = v.encrypt(aad("alice", "api_key", 1), b"secret-api-key");
        assert!(blob.starts_with("pnk1:1:"));
        assert!(!blob.contains("secret-api-key"));
        let plain = v
            .decrypt(aad("alice", "api_key", 1), &blob)
            .expect("decrypt");
        assert_eq!(plain.expose_secret(), "secret-api-key");
        // Another user, another field, an older generation: all refused, identically.
        assert_eq!(
            v.decrypt(aad("bob", "api_key", 1), &blob).err(),
            Some(DecryptError)
        );
        assert_eq!(
            v.decrypt(aad("alice", "pin", 1), &blob).err(),
            Some(DecryptError)
        );
        assert_eq!(
            v.decrypt(aad("alice", "api_key", 2), &blob).err(),
            Some(DecryptError)
        );
        // A different master key cannot read it either.
        let other = Vault::new(1, &[8u8; 32]);
        assert_eq!(
            other.decrypt(aad("alice", "api_key", 1), &blob).err(),
            Some(DecryptError)
        );
    }

    #[test]
    fn nonces_are_fresh() {
        let v = vault();
        let a = v.encrypt(aad("u", "f", 1), b"same");
        let b = v.encrypt(aad("u", "f", 1), b"same");
        assert_ne!(a, b);
    }

    #[test]
    fn subkeys_differ_by_purpose() {
        let v = vault();
        assert_ne!(
            v.token_pepper().expose_secret(),
            v.audit_key().expose_secret()
        );
    }

    #[test]
    fn master_key_must_be_32_bytes_of_base64() {
        assert!(parse_master_key(&SecretString::from("not base64!")).is_err());
        assert!(parse_master_key(&SecretString::from(B64.encode([1u8; 16]))).is_err());
        assert!(parse_master_key(&SecretString::from(B64.encode([1u8; 32]))).is_ok());
        let err = parse_master_key(&SecretString::from(B64.encode([1u8; 31])))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("32 bytes"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn arbitrary_blobs_give_the_one_opaque_error(s in ".{0,200}", raw in proptest::collection::vec(any::<u8>(), 0..120)) {
            let v = vault();
            prop_assert_eq!(v.decrypt(aad("u", "f", 1), &s).err(), Some(DecryptError));
            let forged = format!("pnk1:1:{}", B64.encode(&raw));
            prop_assert_eq!(v.decrypt(aad("u", "f", 1), &forged).err(), Some(DecryptError));
        }
    }
}
