//! [`AuditChains`]: what a process's audit writers know about each chain, shared by all of
//! them, with bounded state (see [`super`]'s module docs, "One writer per chain per
//! process").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::chain::Tip;

/// How many chains an [`AuditChains`] keeps, idle ones included, by default.
pub const DEFAULT_MAX_CHAINS: usize = 10_000;

/// One chain's state behind its async lock: appends to the chain (and its checkpoint
/// timer) take it, so they never race each other within the process.
pub(super) type SharedChain = Arc<tokio::sync::Mutex<ChainState>>;

/// What a writer knows about one chain.
#[derive(Debug, Default)]
pub(super) struct ChainState {
    /// The tip as of this writer's last append; `None` means "re-read from the stream".
    pub(super) tip: Option<Tip>,
    /// The newest link this writer appended that none of its checkpoints covers yet (kept
    /// apart from `tip`, which an error clears, so a failed later append cannot leave an
    /// appended link unsealed).
    pub(super) unsealed: Option<Tip>,
    /// Links this writer appended since it last checkpointed the chain.
    pub(super) since_checkpoint: u64,
    /// Whether a timer task will checkpoint `unsealed` (one per chain at a time).
    pub(super) timer_armed: bool,
    /// The last failed publish was "no responders": the stream is missing (or leaderless).
    /// An append that times out after that reports
    /// [`AuditError::StreamUnavailable`](crate::AuditError::StreamUnavailable).
    pub(super) no_responders: bool,
}

impl ChainState {
    /// Records a link this writer just appended (not a de-duplicated retry).
    pub(super) fn appended(&mut self, tip: Tip) {
        self.unsealed = Some(tip);
        self.since_checkpoint += 1;
    }

    /// Takes the unsealed tip for a checkpoint, resetting the count.
    pub(super) fn take_unsealed(&mut self) -> Option<Tip> {
        let tip = self.unsealed.take().filter(|t| t.position > 0)?;
        self.since_checkpoint = 0;
        Some(tip)
    }

    /// Puts back a tip whose checkpoint was not stored, unless a newer link is pending.
    pub(super) fn restore_unsealed(&mut self, tip: Tip) {
        if self.unsealed.is_none_or(|u| u.position < tip.position) {
            self.unsealed = Some(tip);
        }
    }
}

/// The chain states of one process, shared by all its audit writers (see the module docs).
/// Cloning shares them.
#[derive(Clone, Debug)]
pub struct AuditChains {
    inner: Arc<ChainsInner>,
}

#[derive(Debug)]
struct ChainsInner {
    /// Per-subject state behind a per-subject async lock.
    map: Mutex<HashMap<String, SharedChain>>,
    /// Past this many chains, idle ones are dropped.
    max_chains: usize,
    /// Appends that lost the expected-sequence check and re-read the tip.
    races: AtomicU64,
}

impl Default for AuditChains {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CHAINS)
    }
}

impl AuditChains {
    /// An empty set of chains that keeps at most `max_chains` idle ones (at least 1).
    pub fn new(max_chains: usize) -> Self {
        Self {
            inner: Arc::new(ChainsInner {
                map: Mutex::new(HashMap::new()),
                max_chains: max_chains.max(1),
                races: AtomicU64::new(0),
            }),
        }
    }

    /// The cap on kept chains.
    pub fn max_chains(&self) -> usize {
        self.inner.max_chains
    }

    /// How many chains are kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no chain is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many appends through these chains lost the expected-sequence check (another
    /// writer appended first) and re-read the tip.
    pub fn races(&self) -> u64 {
        self.inner.races.load(Ordering::Relaxed)
    }

    /// Counts an append that lost the expected-sequence check.
    pub(super) fn lost_race(&self) {
        self.inner.races.fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, SharedChain>> {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state of `subject`'s chain, created when missing; drops idle chains first when
    /// the map is over its cap.
    pub(super) fn get(&self, subject: &str) -> SharedChain {
        let mut chains = self.lock();
        if let Some(chain) = chains.get(subject) {
            return chain.clone();
        }
        if chains.len() >= self.inner.max_chains {
            // Idle: nobody holds it (no append, no timer) and nothing awaits a checkpoint.
            chains.retain(|_, chain| {
                Arc::strong_count(chain) > 1
                    || chain
                        .try_lock()
                        .map_or(true, |state| state.unsealed.is_some())
            });
        }
        chains.entry(subject.to_string()).or_default().clone()
    }

    /// Every chain kept now.
    pub(super) fn all(&self) -> Vec<(String, SharedChain)> {
        self.lock()
            .iter()
            .map(|(s, c)| (s.clone(), c.clone()))
            .collect()
    }
}
