//! RFC 6238 time-based one-time passwords (HMAC-SHA1, 6 digits, 30 s), from the base32
//! seed Angel One shows when TOTP is enabled. SmartAPI login needs one.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use zeroize::Zeroizing;

/// The seed is not valid base32. Says nothing about the seed itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the TOTP seed is not valid base32")]
pub struct BadSeed;

/// The 6-digit code for `unix_seconds`.
pub fn code(seed: &SecretString, unix_seconds: i64) -> Result<String, BadSeed> {
    let key = decode_seed(seed.expose_secret())?;
    Ok(format!(
        "{:06}",
        hotp(&key, (unix_seconds.max(0) / 30) as u64) % 1_000_000
    ))
}

/// The code for now.
pub fn now(seed: &SecretString) -> Result<String, BadSeed> {
    code(seed, chrono::Utc::now().timestamp())
}

/// Base32, case-insensitive, spaces and `=` padding ignored.
fn decode_seed(seed: &str) -> Result<Zeroizing<Vec<u8>>, BadSeed> {
    let cleaned: Zeroizing<String> = Zeroizing::new(
        seed.chars()
            .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    if cleaned.is_empty() {
        return Err(BadSeed);
    }
    data_encoding::BASE32_NOPAD
        .decode(cleaned.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| BadSeed)
}

/// RFC 4226 HOTP, the full 31-bit truncated value.
fn hotp(key: &[u8], counter: u64) -> u32 {
    // HMAC accepts keys of any length.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return 0;
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    u32::from_be_bytes([
        digest[offset],
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]) & 0x7fff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA1: the seed is ASCII "12345678901234567890".
    #[test]
    fn rfc6238_vectors() {
        let seed = SecretString::from(data_encoding::BASE32_NOPAD.encode(b"12345678901234567890"));
        // The RFC gives 8 digits; the low 6 are the 6-digit code.
        for (t, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(code(&seed, t).expect("code"), eight[2..], "t={t}");
        }
    }

    #[test]
    fn seeds_are_forgiving_but_checked() {
        let spaced = SecretString::from("gezd gnbv gy3t qojq gezd gnbv gy3t qojq".to_string());
        assert_eq!(code(&spaced, 59).expect("code"), "287082");
        assert_eq!(
            code(&SecretString::from("not base32!".to_string()), 0),
            Err(BadSeed)
        );
        assert_eq!(code(&SecretString::from(String::new()), 0), Err(BadSeed));
        assert!(!BadSeed.to_string().contains("GEZD"));
    }
}
