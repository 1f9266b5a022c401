//! What a queue-group member may hold ([`Capacity`]) and what it did ([`Pressure`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How much a member may hold: `concurrency` requests running plus `queue` waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Requests handled at once.
    pub concurrency: usize,
    /// Requests received and waiting for a free slot.
    pub queue: usize,
}

impl Capacity {
    /// The most requests this member ever holds (received, not yet answered); the server
    /// never delivers more.
    pub fn bound(self) -> usize {
        self.concurrency.max(1) + self.queue
    }

    /// The smallest grant opened (a quarter of the bound, at least 1): a member opens a
    /// grant whenever what it holds plus what it has been granted leaves that much room,
    /// so it rejoins the group once it holds at most `bound - min_grant` requests (the
    /// low-water mark).
    pub fn min_grant(self) -> usize {
        (self.bound() / 4).max(1)
    }

    /// The default share of one sender ([`super::Member::with_senders`]): a quarter of the
    /// bound, at least 1. With it one sender alone may hold half the bound; once a second
    /// pushes too, each is held to a quarter as their requests are answered, so a quarter
    /// of the bound stays for everyone else however hard up to three senders push.
    pub fn sender_share(self) -> usize {
        (self.bound() / 4).max(1)
    }
}

/// What one member did, for metrics and tests. Shared with the serving loop.
#[derive(Debug, Default)]
pub struct Pressure {
    /// Requests received and not yet answered (queued and running).
    held: AtomicUsize,
    /// The most ever held at once.
    peak_held: AtomicUsize,
    /// Requests received and waiting for a free slot.
    queued: AtomicUsize,
    /// Times the member left the group because its grants ran out with no room for more.
    left: AtomicU64,
    /// Times it came back.
    rejoined: AtomicU64,
    /// Requests received in all.
    received: AtomicU64,
    /// Requests refused at once because their sender was over its share.
    over_share: AtomicU64,
}

impl Pressure {
    /// Requests received and not yet answered.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
    /// The most requests ever held at once.
    pub fn peak_held(&self) -> usize {
        self.peak_held.load(Ordering::Relaxed)
    }
    /// Requests waiting for a free slot.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
    /// Times the member left the queue group.
    pub fn left(&self) -> u64 {
        self.left.load(Ordering::Relaxed)
    }
    /// Times it rejoined.
    pub fn rejoined(&self) -> u64 {
        self.rejoined.load(Ordering::Relaxed)
    }
    /// Requests received in all.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Requests refused at once because their sender was over its share.
    pub fn over_share(&self) -> u64 {
        self.over_share.load(Ordering::Relaxed)
    }

    /// Counts a request refused for its sender's share.
    pub(super) fn note_over_share(&self) {
        self.over_share.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request received.
    pub(super) fn note_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts leaving the queue group.
    pub(super) fn note_left(&self) {
        self.left.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts rejoining it.
    pub(super) fn note_rejoined(&self) {
        self.rejoined.fetch_add(1, Ordering::Relaxed);
    }

    /// Records what the member holds now: `queued` waiting, `running` started.
    pub(super) fn set_held(&self, queued: usize, running: usize) {
        let held = queued + running;
        self.held.store(held, Ordering::Relaxed);
        self.peak_held.fetch_max(held, Ordering::Relaxed);
        self.queued.store(queued, Ordering::Relaxed);
    }
}
