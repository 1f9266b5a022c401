//! The order tag: Pinnacle's idempotency key at the broker.
//!
//! SmartAPI's `ordertag` must be under 20 characters (AB4008), and Pinnacle's order ids are
//! longer, so the tag is derived: `PN` followed by 16 base32 characters of the SHA-256 of
//! the order id (80 bits). The same order id always gives the same tag, so after a timeout
//! the worker finds the order in the order book by its tag instead of sending it again.

use sha2::{Digest, Sha256};

/// The longest tag SmartAPI accepts.
pub const MAX_TAG_LEN: usize = 19;

/// How every Pinnacle tag starts.
pub const PREFIX: &str = "PN";

/// The tag for Pinnacle order `order_id`.
pub fn order_tag(order_id: &str) -> String {
    let digest = Sha256::digest(order_id.as_bytes());
    let mut encoded = data_encoding::BASE32_NOPAD.encode(&digest[..10]);
    encoded.truncate(16);
    format!("{PREFIX}{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_stable_and_distinct() {
        let a = order_tag("0192f1c2-7d1e-7a55-9c3b-2f2a7c9d1e11");
        assert_eq!(a, order_tag("0192f1c2-7d1e-7a55-9c3b-2f2a7c9d1e11"));
        assert!(a.len() <= MAX_TAG_LEN, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        let tags: std::collections::HashSet<_> =
            (0..10_000).map(|i| order_tag(&i.to_string())).collect();
        assert_eq!(tags.len(), 10_000);
    }
}
