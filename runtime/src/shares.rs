//! [`Shares`]: how many of something each key (a user, a sender) holds, each one counted
//! by a [`Share`] until it is dropped, also when its task panics or is cancelled. For
//! limits per user on what a service holds at once: a queue-group member's requests per
//! sender, the order worker's event pages per user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts per key; keys holding none are not kept. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Shares(Arc<Mutex<HashMap<String, usize>>>);

impl Shares {
    /// How many `key` holds now.
    pub fn held_by(&self, key: &str) -> usize {
        let counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(key).copied().unwrap_or(0)
    }

    /// One more for `key`, counted until the share is dropped, unless it already holds
    /// `most`: then how many it holds.
    pub fn take_below(&self, key: &str, most: usize) -> Result<Share, usize> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let held = counts.get(key).copied().unwrap_or(0);
        if held >= most {
            return Err(held);
        }
        *counts.entry(key.to_string()).or_default() += 1;
        Ok(self.share(key))
    }

    fn share(&self, key: &str) -> Share {
        Share {
            shares: self.clone(),
            key: key.to_string(),
        }
    }
}

/// One counted for its key in [`Shares`], given back when dropped.
#[derive(Debug)]
pub struct Share {
    shares: Shares,
    key: String,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut counts = self.shares.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = counts.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_counts_until_dropped_and_a_key_holds_at_most_what_it_may() {
        let shares = Shares::default();
        let first = shares.take_below("a", 2).expect("one");
        let second = shares.take_below("a", 2).expect("two");
        assert_eq!(
            shares.take_below("a", 2).err(),
            Some(2),
            "a third is refused"
        );
        assert_eq!((shares.held_by("a"), shares.held_by("b")), (2, 0));
        let other = shares.take_below("b", usize::MAX).expect("no bound");
        drop(first);
        assert_eq!(shares.held_by("a"), 1);
        assert!(
            shares.take_below("a", 2).is_ok(),
            "room again (dropped at once)"
        );
        drop((second, other));
        assert!(shares.take_below("c", 0).is_err());
        assert!(shares.0.lock().expect("counts").is_empty(), "no key kept");
    }
}
