//! API tokens: high-entropy bearer secrets with an id prefix for O(1) lookup.
//!
//! A token reads `pnk_<id>_<secret>`: `id` is 16 hex characters (the primary key of its
//! `api_tokens` row) and `secret` is 32 random bytes in unpadded base64url. Only
//! HMAC-SHA256(pepper, secret) is stored, and checks compare it in constant time, so one
//! check costs exactly one HMAC however many users there are.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::crypto::Key32;

const PREFIX: &str = "pnk_";
const ID_HEX_LEN: usize = 16;
const SECRET_B64_LEN: usize = 43;

/// A freshly minted token: show `token` once, store `id` and `hash`.
#[derive(Debug)]
pub struct MintedToken {
    /// The lookup id (not secret).
    pub id: String,
    /// The whole bearer token; shown to its owner once and never stored.
    pub token: SecretString,
    /// The keyed hash to store.
    pub hash: String,
}

/// A presented token split into its parts. `Debug` shows only the id.
pub struct PresentedToken<'a> {
    /// The lookup id.
    pub id: &'a str,
    secret: &'a str,
}

impl std::fmt::Debug for PresentedToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedToken")
            .field("id", &self.id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Mints a new token.
pub fn mint(pepper: &Key32) -> MintedToken {
    let mut id = [0u8; ID_HEX_LEN / 2];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = B64URL.encode(secret);
    let hash = keyed_hash(pepper, &secret);
    MintedToken {
        token: SecretString::from(format!("{PREFIX}{id}_{secret}")),
        id,
        hash,
    }
}

/// Splits a presented token; `None` if it cannot be one of ours.
pub fn parse(token: &str) -> Option<PresentedToken<'_>> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_HEX_LEN && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == SECRET_B64_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(PresentedToken { id, secret })
}

/// Reads `Bearer <token>` from one `Authorization` value, strictly: the scheme (any case),
/// exactly one space, and a token of visible ASCII without a comma, with nothing before or
/// after. A comma-joined value (`Bearer a, Bearer b`, two headers folded into one), extra
/// or odd whitespace (tabs, NBSP, a trailing space) or any other scheme gives `None`, so a
/// proxy and the server can never disagree about which credential was meant.
pub fn from_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token_ok = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic() && b != b',');
    (scheme.eq_ignore_ascii_case("bearer") && token_ok).then_some(token)
}

impl PresentedToken<'_> {
    /// Whether this token matches the stored hash, in constant time.
    pub fn verify(&self, pepper: &Key32, stored_hash: &str) -> bool {
        let computed = keyed_hash(pepper, self.secret);
        computed.as_bytes().ct_eq(stored_hash.as_bytes()).into()
    }
}

fn keyed_hash(pepper: &Key32, secret: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(pepper.expose_secret()) else {
        unreachable!("HMAC accepts keys of any length");
    };
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretBox;

    fn pepper() -> Key32 {
        SecretBox::new(Box::new([3u8; 32]))
    }

    #[test]
    fn minted_tokens_parse_and_verify() {
        let p = pepper();
        let minted = mint(&p);
        let presented = parse(minted.token.expose_secret()).expect("parses");
        assert_eq!(presented.id, minted.id);
        assert!(presented.verify(&p, &minted.hash));
        let other = mint(&p);
        assert!(!presented.verify(&p, &other.hash));
        assert!(!presented.verify(&SecretBox::new(Box::new([4u8; 32])), &minted.hash));
    }

    #[test]
    fn junk_does_not_parse() {
        for junk in [
            "",
            "pnk_",
            "pnk_zz_yy",
            "Bearer x",
            "pnk_0123456789abcdef_short",
        ] {
            assert!(parse(junk).is_none(), "{junk}");
        }
        assert_eq!(from_bearer("Bearer abc"), Some("abc"));
        assert_eq!(from_bearer("bearer abc"), Some("abc"));
        assert_eq!(from_bearer("BEARER pnk_0a_b-c"), Some("pnk_0a_b-c"));
        for odd in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearer  abc",
            "Bearer abc ",
            " Bearer abc",
            "Bearer\tabc",
            "Bearer\u{a0}abc",
            "Bearer abc\u{a0}",
            "Bearer abc, Bearer def",
            "Bearer abc,Bearer def",
            "Bearer abc,",
            "Bearer abc def",
            "Bearer ab\u{e9}",
            "Bearer abc\r\n Bearer def",
            "Bearerabc",
        ] {
            assert_eq!(from_bearer(odd), None, "{odd:?}");
        }
    }
}
