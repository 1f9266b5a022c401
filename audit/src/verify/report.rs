//! The verifier's verdict: each [`Problem`] at the first stream sequence it makes bad, and
//! the [`Report`] that callers complete with the stream's own problems, the order check and
//! the broker-account check, and print.

use serde::Serialize;

use crate::generations::RolledBackRow;
use crate::stream_check::StreamProblem;

/// What is wrong at a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A message on a chain subject without (well-formed) chain headers.
    Unchained,
    /// The link's key id is not in the key ring.
    UnknownKey,
    /// The HMAC does not match: the event or its headers were edited, or it was forged.
    BadHash,
    /// One or more links are missing before this point: deleted events.
    Missing,
    /// A link at or before a position already seen: an inserted copy or a reordering.
    OutOfOrder,
    /// `prev_hash` differs from the previous link's hash.
    BrokenLink,
    /// `prev_seq` differs from the previous link's stream sequence.
    Renumbered,
    /// A checkpoint lies beyond the chain's last link: the tail was truncated.
    Truncated,
    /// The chain differs from a checkpoint at its position.
    CheckpointMismatch,
    /// A checkpoint whose signature does not verify.
    BadCheckpoint,
    /// The chain's last links are older than the sealing deadline and no checkpoint covers
    /// them.
    Unsealed,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The first stream sequence it makes bad.
    pub seq: u64,
    /// The chain subject.
    pub subject: String,
    /// What is wrong.
    pub kind: ProblemKind,
    /// A human explanation.
    pub detail: String,
}

/// The verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Chain events read.
    pub events: u64,
    /// Chains (subjects) read.
    pub chains: usize,
    /// Distinct checkpoints compared with the chains.
    pub checkpoints: usize,
    /// Every problem, in sequence order.
    pub problems: Vec<Problem>,
    /// Problems with the stream itself (limits, deny flags, discarded history, missing).
    pub stream_problems: Vec<StreamProblem>,
    /// The first bad stream sequence, if any.
    pub first_bad_seq: Option<u64>,
    /// Orders checked (filled in by the caller; see [`crate::orders::orders_without_audit`]).
    pub orders_checked: usize,
    /// Ids of orders missing their audit event.
    pub orders_missing_audit: Vec<String>,
    /// Broker account rows checked against the generation register (filled in by the
    /// caller; see [`crate::generations::check_accounts`]).
    pub accounts_checked: usize,
    /// Broker account rows older than what was written: rolled back.
    pub accounts_rolled_back: Vec<RolledBackRow>,
    /// No generation register on this server: rows were compared with the audit trail only.
    pub generation_register_missing: bool,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
            && self.stream_problems.is_empty()
            && self.orders_missing_audit.is_empty()
            && self.accounts_rolled_back.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.stream_problems {
            writeln!(f, "stream {:?}: {}", p.kind, p.detail)?;
        }
        for p in self.problems.iter().take(20) {
            writeln!(f, "seq {}: {} {:?}: {}", p.seq, p.subject, p.kind, p.detail)?;
        }
        if self.problems.len() > 20 {
            writeln!(f, "... and {} more problems", self.problems.len() - 20)?;
        }
        for id in self.orders_missing_audit.iter().take(20) {
            writeln!(f, "order {id}: no audit event precedes it")?;
        }
        for row in self.accounts_rolled_back.iter().take(20) {
            writeln!(f, "{row}")?;
        }
        match self.first_bad_seq {
            Some(seq) => write!(f, "FAILED: first bad sequence {seq}; ")?,
            None if !self.is_clean() => write!(f, "FAILED: ")?,
            None => write!(f, "OK: ")?,
        }
        write!(
            f,
            "{} events in {} chains, {} checkpoints verified, {} orders checked ({} missing audit events), {} problems",
            self.events,
            self.chains,
            self.checkpoints,
            self.orders_checked,
            self.orders_missing_audit.len(),
            self.problems.len() + self.stream_problems.len()
        )?;
        write!(
            f,
            ", {} broker accounts checked ({} rolled back)",
            self.accounts_checked,
            self.accounts_rolled_back.len()
        )?;
        if self.generation_register_missing {
            write!(
                f,
                " (no generation register here: checked against the audit trail only)"
            )?;
        }
        Ok(())
    }
}
