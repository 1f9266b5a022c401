//! One chain as the verifier has read it so far, and how the next link continues it: the
//! position (one more than the previous link), `prev_hash` and `prev_seq` (the previous
//! link's hash and stream sequence), or a restart after an unchained message.

use std::collections::HashMap;

use super::report::ProblemKind;
use crate::chain::{Link, GENESIS};

/// A break in a chain: what is wrong, the first bad sequence, and why.
pub(super) type Break = (ProblemKind, u64, String);

/// The last link accepted on a chain.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prev {
    pub(super) seq: u64,
    pub(super) position: u64,
    hash: [u8; 32],
}

/// One chain subject's links, as read so far.
#[derive(Debug, Default)]
pub(super) struct Chain {
    /// The last link, as the chain continues from it.
    pub(super) prev: Option<Prev>,
    /// Sequence of the last unchained message, after which a writer restarts the chain.
    pub(super) unchained_at: Option<u64>,
    /// Position → (sequence, hash), first occurrence, for the checkpoint comparison.
    pub(super) positions: HashMap<u64, (u64, [u8; 32])>,
    /// When the last link (`prev`) was stored, ms since the epoch, if known.
    pub(super) last_stored_ms: Option<i64>,
}

impl Chain {
    /// How `link` at `seq` continues the chain: `None` if well.
    pub(super) fn continuity(&self, seq: u64, link: &Link) -> Option<Break> {
        match self.prev {
            None => self.start(seq, link),
            Some(prev) => follow(prev, seq, link),
        }
    }

    /// Takes `link` at `seq` as read: it becomes the chain's last link if it is past the
    /// current one, and the first link seen at its position.
    pub(super) fn accept(&mut self, seq: u64, link: &Link, stored_ms: Option<i64>) {
        if self.prev.is_none_or(|p| link.position > p.position) {
            self.prev = Some(Prev {
                seq,
                position: link.position,
                hash: link.hash,
            });
            self.last_stored_ms = stored_ms;
        }
        self.positions
            .entry(link.position)
            .or_insert((seq, link.hash));
    }

    /// The chain's first link: position 1 after the genesis hash, at the stream's start or
    /// right after an unchained message.
    fn start(&self, seq: u64, link: &Link) -> Option<Break> {
        let restart = link.prev_seq == 0 || self.unchained_at == Some(link.prev_seq);
        if link.position == 1 && link.prev_hash == GENESIS && restart {
            return None;
        }
        let bad = if link.prev_seq > 0 && link.prev_seq < seq {
            link.prev_seq
        } else {
            seq
        };
        Some((
            ProblemKind::Missing,
            bad,
            format!(
                "the chain starts at link {}: links before it are missing",
                link.position
            ),
        ))
    }
}

/// A link after `prev`: the next position, then the same hash and sequence as recorded.
fn follow(prev: Prev, seq: u64, link: &Link) -> Option<Break> {
    if link.position <= prev.position {
        return Some((
            ProblemKind::OutOfOrder,
            seq,
            format!(
                "link {} after link {}: inserted or reordered",
                link.position, prev.position
            ),
        ));
    }
    if link.position > prev.position + 1 {
        let bad = if link.prev_seq > prev.seq && link.prev_seq < seq {
            link.prev_seq
        } else {
            seq
        };
        return Some((
            ProblemKind::Missing,
            bad,
            format!(
                "link {} follows link {}: link {} (seq {}) is missing",
                link.position,
                prev.position,
                link.position - 1,
                link.prev_seq
            ),
        ));
    }
    mislinked(prev, seq, link)
}

/// A link at the next position whose `prev_hash` or `prev_seq` is not `prev`'s.
fn mislinked(prev: Prev, seq: u64, link: &Link) -> Option<Break> {
    if link.prev_hash != prev.hash {
        return Some((
            ProblemKind::BrokenLink,
            seq,
            format!(
                "link {}'s prev_hash is not link {}'s hash",
                link.position, prev.position
            ),
        ));
    }
    if link.prev_seq != prev.seq {
        return Some((
            ProblemKind::Renumbered,
            prev.seq.min(link.prev_seq),
            format!(
                "link {} records its predecessor at seq {}, found at seq {}",
                link.position, link.prev_seq, prev.seq
            ),
        ));
    }
    None
}
