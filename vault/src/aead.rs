//! The one AES-256-GCM primitive every ciphertext goes through, and its text format.
//!
//! A sealed value reads `pnk1:<key id>:<base64(nonce ‖ ciphertext+tag)>`. `pnk1` is the
//! format version; the key id names the key that sealed it (a master key id for wrapped
//! data keys, a data-key id for credential fields). The nonce is 96 random bits. The
//! caller always supplies the key id it *expects* (from the row, never from the blob),
//! and the associated data it rebuilt from the row; a mismatch is the one opaque
//! [`DecryptError`].

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::error::DecryptError;

/// The format-version prefix of every ciphertext.
pub const FORMAT_PREFIX: &str = "pnk1";
/// Nonce length: 96 bits, random.
pub const NONCE_LEN: usize = 12;
/// GCM tag length.
const TAG_LEN: usize = 16;

/// Seals `plaintext` under `cipher`, labelled with `key_id`, bound to `aad`.
pub fn seal(cipher: &Aes256Gcm, key_id: u64, aad: &[u8], plaintext: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // AES-GCM encryption fails only for inputs beyond 64 GiB, far over any credential.
    let Ok(sealed) = cipher.encrypt(
        Nonce::from_slice(&nonce),
        Payload {
            msg: plaintext,
            aad,
        },
    ) else {
        unreachable!("credential plaintexts are tiny");
    };
    let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    format!("{FORMAT_PREFIX}:{key_id}:{}", B64.encode(blob))
}

/// The key id a stored value claims, if it parses; used only to pick a key, never as AAD.
pub fn claimed_key_id(stored: &str) -> Result<u64, DecryptError> {
    let mut parts = stored.splitn(3, ':');
    match (parts.next(), parts.next()) {
        (Some(FORMAT_PREFIX), Some(kid)) if !kid.is_empty() && kid.len() <= 20 => {
            kid.parse().map_err(|_| DecryptError)
        }
        _ => Err(DecryptError),
    }
}

/// Opens `stored`, which must carry `expected_key_id`, under `cipher` with `aad`.
pub fn open(
    cipher: &Aes256Gcm,
    expected_key_id: u64,
    aad: &[u8],
    stored: &str,
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    if claimed_key_id(stored)? != expected_key_id {
        return Err(DecryptError);
    }
    let body = stored.splitn(3, ':').nth(2).ok_or(DecryptError)?;
    let blob = B64.decode(body).map_err(|_| DecryptError)?;
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(DecryptError);
    }
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .map(Zeroizing::new)
        .map_err(|_| DecryptError)
}

/// Appends length-prefixed parts, so no two different identities encode alike.
pub fn push_parts(out: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
}
