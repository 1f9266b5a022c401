//! The HMAC-SHA256 chain over one audit subject: what a link is and how its hash is made.
//!
//! Each `audit.credential.<user>` subject is one chain. A link is the stored MessagePack
//! event plus five headers ([`pinnacle_protocol::subjects::headers`]): its position (from 1), the
//! previous link's stream sequence and hash, its own hash and the audit key id.
//!
//! ```text
//! hash = HMAC-SHA256(K_audit[key_id],
//!          "pinnacle/audit-chain/v1" ‖ len(subject) ‖ subject ‖ key_id ‖ position
//!          ‖ prev_seq ‖ prev_hash ‖ len(payload) ‖ payload)
//! ```
//!
//! Integers are big-endian (lengths and positions u64, key id u32). The payload is the exact
//! bytes stored in the stream, so no re-encoding can change what is hashed. Binding the
//! subject stops a link being moved to another user's chain; binding `prev_seq` ties the
//! chain to the stream's sequence numbers (JetStream's per-subject last sequence).

use async_nats::HeaderMap;

use pinnacle_protocol::subjects::headers;
use pinnacle_vault::{AuditKey, Vault};

/// The `prev_hash` of a chain's first link.
pub const GENESIS: [u8; 32] = [0; 32];

const DOMAIN: &[u8] = b"pinnacle/audit-chain/v1";

/// A link's chain headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Position in the chain, from 1.
    pub position: u64,
    /// Stream sequence of the previous link (0 for the first).
    pub prev_seq: u64,
    /// Hash of the previous link ([`GENESIS`] for the first).
    pub prev_hash: [u8; 32],
    /// This link's hash.
    pub hash: [u8; 32],
    /// Master key id the chain key was derived from.
    pub key_id: u32,
}

/// Why a message is not a well-formed link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// A chain header is absent (an event written without the chain).
    #[error("no {0} header: the event is not chained")]
    Missing(&'static str),
    /// A chain header does not parse.
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// The key id is not in the ring.
    #[error("audit key id {0} is not in the key ring")]
    UnknownKey(u32),
}

/// Where the next link goes: the last link's sequence, position and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// Stream sequence of the last link (0: the chain is empty).
    pub seq: u64,
    /// Its position (0: the chain is empty).
    pub position: u64,
    /// Its hash ([`GENESIS`] when empty).
    pub hash: [u8; 32],
}

impl Tip {
    /// The tip of an empty chain.
    pub const EMPTY: Tip = Tip {
        seq: 0,
        position: 0,
        hash: GENESIS,
    };
}

/// Computes a link's hash; `None` when `key_id` is not in the ring.
pub fn link_hash(
    vault: &Vault,
    key_id: u32,
    subject: &str,
    position: u64,
    prev_seq: u64,
    prev_hash: &[u8; 32],
    payload: &[u8],
) -> Option<[u8; 32]> {
    use hmac::Mac as _;
    let mut mac = vault.audit_mac(key_id, AuditKey::Chain)?;
    mac.update(DOMAIN);
    mac.update(&(subject.len() as u64).to_be_bytes());
    mac.update(subject.as_bytes());
    mac.update(&key_id.to_be_bytes());
    mac.update(&position.to_be_bytes());
    mac.update(&prev_seq.to_be_bytes());
    mac.update(prev_hash);
    mac.update(&(payload.len() as u64).to_be_bytes());
    mac.update(payload);
    Some(mac.finalize().into_bytes().into())
}

impl Link {
    /// The link that follows `tip` on `subject` for `payload`, keyed by the vault's audit key.
    pub fn next(
        vault: &Vault,
        subject: &str,
        tip: &Tip,
        payload: &[u8],
    ) -> Result<Self, LinkError> {
        let key_id = vault.audit_key_id();
        let position = tip.position + 1;
        let hash = link_hash(
            vault, key_id, subject, position, tip.seq, &tip.hash, payload,
        )
        .ok_or(LinkError::UnknownKey(key_id))?;
        Ok(Self {
            position,
            prev_seq: tip.seq,
            prev_hash: tip.hash,
            hash,
            key_id,
        })
    }

    /// Whether `hash` is right for this link's headers, `subject` and `payload`.
    pub fn check(&self, vault: &Vault, subject: &str, payload: &[u8]) -> Result<bool, LinkError> {
        let want = link_hash(
            vault,
            self.key_id,
            subject,
            self.position,
            self.prev_seq,
            &self.prev_hash,
            payload,
        )
        .ok_or(LinkError::UnknownKey(self.key_id))?;
        // Not secret-dependent timing that matters (the verifier holds the key), but cheap.
        Ok(constant_eq(&want, &self.hash))
    }

    /// Writes the chain headers.
    pub fn write_headers(&self, hdrs: &mut HeaderMap) {
        hdrs.insert(headers::AUDIT_LINK, self.position.to_string().as_str());
        hdrs.insert(headers::AUDIT_PREV_SEQ, self.prev_seq.to_string().as_str());
        hdrs.insert(
            headers::AUDIT_PREV_HASH,
            hex::encode(self.prev_hash).as_str(),
        );
        hdrs.insert(headers::AUDIT_HASH, hex::encode(self.hash).as_str());
        hdrs.insert(headers::AUDIT_KEY_ID, self.key_id.to_string().as_str());
    }

    /// Reads the chain headers of a stored message.
    pub fn from_headers(hdrs: Option<&HeaderMap>) -> Result<Self, LinkError> {
        fn get<'a>(hdrs: Option<&'a HeaderMap>, name: &'static str) -> Result<&'a str, LinkError> {
            hdrs.and_then(|h| h.get(name))
                .map(|v| v.as_str())
                .ok_or(LinkError::Missing(name))
        }
        fn num<T: std::str::FromStr>(
            hdrs: Option<&HeaderMap>,
            name: &'static str,
        ) -> Result<T, LinkError> {
            get(hdrs, name)?
                .trim()
                .parse()
                .map_err(|_| LinkError::Malformed(name))
        }
        fn hash(hdrs: Option<&HeaderMap>, name: &'static str) -> Result<[u8; 32], LinkError> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(get(hdrs, name)?.trim(), &mut out)
                .map_err(|_| LinkError::Malformed(name))?;
            Ok(out)
        }
        let position: u64 = num(hdrs, headers::AUDIT_LINK)?;
        if position == 0 {
            return Err(LinkError::Malformed(headers::AUDIT_LINK));
        }
        Ok(Self {
            position,
            prev_seq: num(hdrs, headers::AUDIT_PREV_SEQ)?,
            prev_hash: hash(hdrs, headers::AUDIT_PREV_HASH)?,
            hash: hash(hdrs, headers::AUDIT_HASH)?,
            key_id: num(hdrs, headers::AUDIT_KEY_ID)?,
        })
    }

    /// The tip this link makes once stored at `seq`.
    pub fn tip_at(&self, seq: u64) -> Tip {
        Tip {
            seq,
            position: self.position,
            hash: self.hash,
        }
    }
}

/// Compares two hashes without an early exit.
pub fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::new(3, &[7u8; 32])
    }

    #[test]
    fn a_link_round_trips_through_headers_and_checks() {
        let v = vault();
        let link = Link::next(&v, "audit.credential.u1", &Tip::EMPTY, b"event").expect("link");
        assert_eq!((link.position, link.prev_seq, link.key_id), (1, 0, 3));
        assert_eq!(link.prev_hash, GENESIS);
        let mut hdrs = HeaderMap::new();
        link.write_headers(&mut hdrs);
        let back = Link::from_headers(Some(&hdrs)).expect("parses");
        assert_eq!(back, link);
        assert_eq!(back.check(&v, "audit.credential.u1", b"event"), Ok(true));
        assert_eq!(back.check(&v, "audit.credential.u1", b"evenT"), Ok(false));
        assert_eq!(back.check(&v, "audit.credential.u2", b"event"), Ok(false));
        let second = Link::next(&v, "audit.credential.u1", &link.tip_at(9), b"e2").expect("link");
        assert_eq!((second.position, second.prev_seq), (2, 9));
        assert_eq!(second.prev_hash, link.hash);
    }

    #[test]
    fn another_key_gives_another_hash_and_unknown_keys_are_refused() {
        let a = Link::next(&vault(), "s", &Tip::EMPTY, b"x").expect("link");
        let b = Link::next(&Vault::new(3, &[8u8; 32]), "s", &Tip::EMPTY, b"x").expect("link");
        assert_ne!(a.hash, b.hash);
        let foreign = Link { key_id: 99, ..a };
        assert_eq!(
            foreign.check(&vault(), "s", b"x"),
            Err(LinkError::UnknownKey(99))
        );
    }

    #[test]
    fn missing_or_malformed_headers_are_errors() {
        assert_eq!(
            Link::from_headers(None),
            Err(LinkError::Missing(headers::AUDIT_LINK))
        );
        let mut hdrs = HeaderMap::new();
        Link::next(&vault(), "s", &Tip::EMPTY, b"x")
            .expect("link")
            .write_headers(&mut hdrs);
        hdrs.insert(headers::AUDIT_HASH, "zz");
        assert_eq!(
            Link::from_headers(Some(&hdrs)),
            Err(LinkError::Malformed(headers::AUDIT_HASH))
        );
    }
}
