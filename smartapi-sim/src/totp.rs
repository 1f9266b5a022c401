//! RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s steps), as the login checks it.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The code for a base32 `seed` at `unix_secs`, or None when the seed is not base32.
pub fn code_at(seed: &str, unix_secs: u64) -> Option<String> {
    let key = decode_seed(seed)?;
    Some(hotp(&key, unix_secs / 30, 6))
}

/// True when `code` matches the current step or one step either side.
pub fn verify(seed: &str, code: &str, unix_secs: u64) -> bool {
    let Some(key) = decode_seed(seed) else {
        return false;
    };
    let step = unix_secs / 30;
    [step.saturating_sub(1), step, step + 1]
        .iter()
        .any(|s| hotp(&key, *s, 6) == code.trim())
}

fn decode_seed(seed: &str) -> Option<Vec<u8>> {
    let cleaned: String = seed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    data_encoding::BASE32_NOPAD.decode(cleaned.as_bytes()).ok()
}

/// RFC 4226 HOTP with dynamic truncation.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    let code = bin % 10u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 Appendix B: key "12345678901234567890", T = 59 → 94287082 (8 digits).
        assert_eq!(hotp(b"12345678901234567890", 59 / 30, 8), "94287082");
        assert_eq!(
            hotp(b"12345678901234567890", 1_111_111_109 / 30, 8),
            "07081804"
        );
    }
}
