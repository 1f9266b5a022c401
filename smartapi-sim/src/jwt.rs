//! HS512 JSON Web Tokens, as SmartAPI issues them (`eyJhbGciOiJIUzUxMiJ9…`, SPEC §2).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha512;

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
    Feed,
}

/// The claims the simulator puts in (and trusts from) its own tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Client code, the name SmartAPI uses.
    pub username: String,
    pub kind: TokenKind,
    /// The login session the token belongs to.
    pub sid: u64,
    /// Access-token generation inside the session (expire_session bumps the floor).
    pub generation: u64,
    pub iat: i64,
    /// Authoritative expiry, epoch seconds.
    pub exp: i64,
    /// Makes every token unique.
    pub jti: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    Signature,
}

const HEADER: &str = r#"{"alg":"HS512"}"#;

/// Signs `claims` with `secret`.
pub fn encode(secret: &[u8], claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(HEADER);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{body}");
    let sig = URL_SAFE_NO_PAD.encode(sign(secret, signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

/// Checks the signature and returns the claims; expiry is the caller's business.
pub fn decode(secret: &[u8], token: &str) -> Result<Claims, JwtError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(b), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let mut mac = mac(secret);
    mac.update(format!("{h}.{b}").as_bytes());
    mac.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
    let body = URL_SAFE_NO_PAD.decode(b).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&body).map_err(|_| JwtError::Malformed)
}

fn mac(secret: &[u8]) -> Hmac<Sha512> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha512> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

fn sign(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let mut m = mac(secret);
    m.update(input);
    m.finalize().into_bytes().to_vec()
}
