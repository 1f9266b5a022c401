//! The verifier: feed it the stream's messages in sequence order, plus the checkpoints kept
//! outside NATS, and it checks every link and reports the first bad stream sequence.
//!
//! Per chain subject it checks, link by link: the HMAC (an edited or forged event fails),
//! the position (one more than the previous link: a gap is a deleted event, a repeat an
//! inserted copy or a reordering), `prev_hash` (equal to the previous link's hash) and
//! `prev_seq` (equal to the previous link's stream sequence). Then every checkpoint (signature
//! first) is compared with the chain: a checkpoint beyond the chain's last link is a
//! truncated tail; a different hash or sequence at its position is a rewritten chain.
//!
//! Which sequence is "first bad" for each kind of tampering:
//! - edited or inserted event: its own sequence (its HMAC fails, or its position repeats);
//! - deleted event: the sequence it had, which its successor records as `prev_seq`;
//! - reordered events: the first position where a later link appears;
//! - truncated tail: the first sequence after the chain's last link that is absent from the
//!   stream (exact when the whole stream was read).
//!
//! With [`Verifier::expect_sealed`], a chain whose last link is older than the given age and
//! covered by no matching checkpoint is reported as [`ProblemKind::Unsealed`]: writers
//! checkpoint every link within `PINNACLE_AUDIT_CHECKPOINT_SECS`, so an old unsealed tail
//! means a writer died before its timer fired, checkpoints are failing, or links after the
//! last checkpoint were dropped together with that writer's pending checkpoint.
//! Problems with the stream itself ([`super::stream_check`]) are added by the caller.
//!
//! The authorised accesses it collects feed [`super::orders::orders_without_audit`].

use std::collections::{BTreeMap, HashMap};

use async_nats::HeaderMap;
use serde::Serialize;

use super::chain::{Link, LinkError, GENESIS};
use super::checkpoint::Checkpoint;
use super::orders::Access;
use super::stream_check::StreamProblem;
use crate::codec::Encoding;
use crate::crypto::Vault;
use crate::model::{AuditEvent, AuditOutcome};
use crate::subjects;

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

/// Where a checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointSource {
    /// The AUDIT stream, at this sequence.
    Stream(u64),
    /// The `audit_checkpoints` table.
    Database,
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
    /// Orders checked (filled in by the caller; see [`super::orders::orders_without_audit`]).
    pub orders_checked: usize,
    /// Ids of orders missing their audit event.
    pub orders_missing_audit: Vec<String>,
    /// Broker account rows checked against the generation register (filled in by the
    /// caller; see [`super::generations::check_accounts`]).
    pub accounts_checked: usize,
    /// Broker account rows older than what was written: rolled back.
    pub accounts_rolled_back: Vec<super::generations::RolledBackRow>,
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

/// The last link accepted on a chain.
#[derive(Debug, Clone, Copy)]
struct Prev {
    seq: u64,
    position: u64,
    hash: [u8; 32],
}

#[derive(Debug, Default)]
struct Chain {
    /// The last link, as the chain continues from it.
    prev: Option<Prev>,
    /// Sequence of the last unchained message, after which a writer restarts the chain.
    unchained_at: Option<u64>,
    /// Position → (sequence, hash), first occurrence, for the checkpoint comparison.
    positions: HashMap<u64, (u64, [u8; 32])>,
    /// When the last link (`prev`) was stored, ms since the epoch, if known.
    last_stored_ms: Option<i64>,
}

/// Checks messages in stream order; see the module docs.
#[derive(Debug)]
pub struct Verifier<'a> {
    vault: &'a Vault,
    chains: BTreeMap<String, Chain>,
    /// Every sequence seen, ascending (messages arrive in order).
    present: Vec<u64>,
    checkpoints: Vec<(Checkpoint, CheckpointSource)>,
    problems: Vec<Problem>,
    events: u64,
    /// Authorised accesses by (user id, broker account id), for the order check.
    accesses: HashMap<(String, String), Vec<Access>>,
    /// (now, max age) in ms: report a chain whose last link is older and unsealed.
    sealing: Option<(i64, i64)>,
    /// The generations the trail records as written, for the rolled-back-row check.
    written: super::generations::WrittenGenerations,
}

impl<'a> Verifier<'a> {
    /// A verifier keyed by `vault`'s audit keys.
    pub fn new(vault: &'a Vault) -> Self {
        Self {
            vault,
            chains: BTreeMap::new(),
            present: Vec::new(),
            checkpoints: Vec::new(),
            problems: Vec::new(),
            events: 0,
            accesses: HashMap::new(),
            sealing: None,
            written: Default::default(),
        }
    }

    /// Also reports each chain whose last link was stored more than `max_age_ms` before
    /// `now_ms` and is covered by no matching checkpoint ([`ProblemKind::Unsealed`]).
    pub fn expect_sealed(&mut self, now_ms: i64, max_age_ms: i64) {
        self.sealing = Some((now_ms, max_age_ms));
    }

    fn problem(&mut self, seq: u64, subject: &str, kind: ProblemKind, detail: String) {
        self.problems.push(Problem {
            seq,
            subject: subject.to_string(),
            kind,
            detail,
        });
    }

    /// Adds a checkpoint read from outside the stream.
    pub fn add_checkpoint(&mut self, cp: Checkpoint, source: CheckpointSource) {
        self.checkpoints.push((cp, source));
    }

    /// Feeds the next stored message (ascending `seq`), its storage time unknown.
    pub fn push(&mut self, seq: u64, subject: &str, headers: Option<&HeaderMap>, payload: &[u8]) {
        self.push_stored(seq, subject, headers, payload, None);
    }

    /// Feeds the next stored message (ascending `seq`) with when the stream stored it.
    pub fn push_stored(
        &mut self,
        seq: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
        stored_ms: Option<i64>,
    ) {
        self.present.push(seq);
        if subjects::audit_chain_of_checkpoint(subject).is_some() {
            match Encoding::MsgPack.decode::<Checkpoint>(payload) {
                Ok(cp) => self.checkpoints.push((cp, CheckpointSource::Stream(seq))),
                Err(_) => self.problem(
                    seq,
                    subject,
                    ProblemKind::BadCheckpoint,
                    "a checkpoint message that does not decode".into(),
                ),
            }
            return;
        }
        if !subject.starts_with(subjects::AUDIT_CREDENTIAL_PREFIX) {
            return;
        }
        self.events += 1;
        self.chains.entry(subject.to_string()).or_default();
        let link = match Link::from_headers(headers) {
            Ok(link) => link,
            Err(error) => {
                self.problem(seq, subject, ProblemKind::Unchained, error.to_string());
                if let Some(chain) = self.chains.get_mut(subject) {
                    chain.unchained_at = Some(seq);
                }
                return;
            }
        };
        match link.check(self.vault, subject, payload) {
            Ok(true) => {}
            Ok(false) => self.problem(
                seq,
                subject,
                ProblemKind::BadHash,
                format!(
                    "link {} does not match its HMAC: edited or forged",
                    link.position
                ),
            ),
            Err(LinkError::UnknownKey(id)) => {
                self.problem(
                    seq,
                    subject,
                    ProblemKind::UnknownKey,
                    format!("audit key id {id} is not in the ring"),
                );
                return;
            }
            Err(error) => {
                self.problem(seq, subject, ProblemKind::Unchained, error.to_string());
                return;
            }
        }
        if let Some((kind, bad, detail)) = self.continuity(subject, seq, &link) {
            self.problem(bad, subject, kind, detail);
        }
        let Some(chain) = self.chains.get_mut(subject) else {
            return;
        };
        let advance = chain.prev.is_none_or(|p| link.position > p.position);
        if advance {
            chain.prev = Some(Prev {
                seq,
                position: link.position,
                hash: link.hash,
            });
            chain.last_stored_ms = stored_ms;
        }
        chain
            .positions
            .entry(link.position)
            .or_insert((seq, link.hash));
        if let Ok(event) = Encoding::MsgPack.decode::<AuditEvent>(payload) {
            self.written.note(&event);
            if event.outcome == AuditOutcome::Authorized {
                self.accesses
                    .entry((event.user_id, event.broker_account_id))
                    .or_default()
                    .push(Access {
                        ts_ms: event.ts_ms,
                        purpose: event.purpose,
                    });
            }
        }
    }

    /// How `link` at `seq` continues its chain: `None` if well, else (kind, first bad seq, detail).
    fn continuity(
        &self,
        subject: &str,
        seq: u64,
        link: &Link,
    ) -> Option<(ProblemKind, u64, String)> {
        let chain = self.chains.get(subject)?;
        let Some(prev) = chain.prev else {
            let restart = link.prev_seq == 0 || chain.unchained_at == Some(link.prev_seq);
            if link.position == 1 && link.prev_hash == GENESIS && restart {
                return None;
            }
            let bad = if link.prev_seq > 0 && link.prev_seq < seq {
                link.prev_seq
            } else {
                seq
            };
            return Some((
                ProblemKind::Missing,
                bad,
                format!(
                    "the chain starts at link {}: links before it are missing",
                    link.position
                ),
            ));
        };
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

    /// The first sequence after `after` that is absent from what was read.
    fn first_absent_after(&self, after: u64) -> u64 {
        let mut want = after + 1;
        let start = self.present.partition_point(|&s| s <= after);
        for &seq in &self.present[start..] {
            if seq != want {
                break;
            }
            want += 1;
        }
        want
    }

    /// Compares the checkpoints with the chains and returns the report.
    pub fn finish(mut self) -> Report {
        let mut seen = std::collections::HashSet::new();
        let checkpoints = std::mem::take(&mut self.checkpoints);
        let mut verified = 0;
        // Per chain, the highest position a matching checkpoint covers.
        let mut sealed: HashMap<String, u64> = HashMap::new();
        for (cp, source) in checkpoints {
            if !cp.verify(self.vault) {
                let seq = match source {
                    CheckpointSource::Stream(seq) => seq,
                    CheckpointSource::Database => cp.seq,
                };
                self.problem(
                    seq,
                    &cp.subject,
                    ProblemKind::BadCheckpoint,
                    format!(
                        "checkpoint of link {} has a bad signature ({source:?})",
                        cp.position
                    ),
                );
                continue;
            }
            if !seen.insert((cp.subject.clone(), cp.seq, cp.position, cp.hash.clone())) {
                continue;
            }
            verified += 1;
            let (last, at) = match self.chains.get(&cp.subject) {
                Some(chain) => (chain.prev, chain.positions.get(&cp.position).copied()),
                None => (None, None),
            };
            match at {
                Some((seq, hash)) if hash == cp.hash_bytes() && seq == cp.seq => {
                    let covered = sealed.entry(cp.subject.clone()).or_default();
                    *covered = (*covered).max(cp.position);
                }
                Some((seq, hash)) => {
                    let what = if hash == cp.hash_bytes() {
                        "sequence"
                    } else {
                        "hash"
                    };
                    self.problem(
                        seq.min(cp.seq),
                        &cp.subject,
                        ProblemKind::CheckpointMismatch,
                        format!(
                            "link {} at seq {seq} differs in {what} from its checkpoint (seq {})",
                            cp.position, cp.seq
                        ),
                    );
                }
                None => {
                    let last_seq = last.map_or(0, |p| p.seq);
                    let last_position = last.map_or(0, |p| p.position);
                    let bad = self
                        .first_absent_after(last_seq)
                        .min(cp.seq.max(last_seq + 1));
                    self.problem(
                        bad,
                        &cp.subject,
                        ProblemKind::Truncated,
                        format!(
                            "the chain ends at link {last_position} (seq {last_seq}) but a checkpoint records link {} at seq {}",
                            cp.position, cp.seq
                        ),
                    );
                }
            }
        }
        self.unsealed(&sealed);
        self.problems.sort_by_key(|p| p.seq);
        Report {
            events: self.events,
            chains: self.chains.len(),
            checkpoints: verified,
            first_bad_seq: self.problems.first().map(|p| p.seq),
            problems: self.problems,
            stream_problems: Vec::new(),
            orders_checked: 0,
            orders_missing_audit: Vec::new(),
            accounts_checked: 0,
            accounts_rolled_back: Vec::new(),
            generation_register_missing: false,
        }
    }

    /// Reports the chains whose last link is past the sealing deadline and uncovered.
    fn unsealed(&mut self, sealed: &HashMap<String, u64>) {
        let Some((now_ms, max_age_ms)) = self.sealing else {
            return;
        };
        let mut found = Vec::new();
        for (subject, chain) in &self.chains {
            let (Some(last), Some(stored_ms)) = (chain.prev, chain.last_stored_ms) else {
                continue;
            };
            let covered = sealed.get(subject).copied().unwrap_or(0);
            let age_ms = now_ms.saturating_sub(stored_ms);
            if last.position <= covered || age_ms <= max_age_ms {
                continue;
            }
            let first = chain
                .positions
                .get(&(covered + 1))
                .map_or(last.seq, |(seq, _)| *seq);
            found.push((
                first,
                subject.clone(),
                format!(
                    "links {}..={} (last stored {} s ago) are covered by no checkpoint: a writer stopped before sealing them, checkpoints are failing, or the chain's tail was dropped",
                    covered + 1,
                    last.position,
                    age_ms / 1000
                ),
            ));
        }
        for (seq, subject, detail) in found {
            self.problem(seq, &subject, ProblemKind::Unsealed, detail);
        }
    }

    /// The generations the trail records as written, per broker account.
    pub fn take_written(&mut self) -> super::generations::WrittenGenerations {
        std::mem::take(&mut self.written)
    }

    /// The authorised accesses read so far, by (user id, broker account id).
    pub fn take_accesses(&mut self) -> HashMap<(String, String), Vec<Access>> {
        std::mem::take(&mut self.accesses)
    }
}

#[cfg(test)]
mod tests;
