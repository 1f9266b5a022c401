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
//!
//! # Layout
//! - this file: [`Verifier`], fed message by message, compares the checkpoints at the end.
//! - `verify/continuity.rs`: one chain as read so far, and whether the next link continues
//!   it.
//! - `verify/report.rs`: [`Problem`], [`ProblemKind`] and the [`Report`].

mod continuity;
mod report;

use std::collections::{BTreeMap, HashMap, HashSet};

use async_nats::HeaderMap;

pub use report::{Problem, ProblemKind, Report};

use super::chain::{Link, LinkError};
use super::checkpoint::Checkpoint;
use super::generations::WrittenGenerations;
use super::orders::Access;
use continuity::{Chain, Prev};
use pinnacle_protocol::codec::Encoding;
use pinnacle_protocol::model::{AuditEvent, AuditOutcome};
use pinnacle_protocol::subjects;
use pinnacle_vault::Vault;

/// Where a checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointSource {
    /// The AUDIT stream, at this sequence.
    Stream(u64),
    /// The `audit_checkpoints` table.
    Database,
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
    written: WrittenGenerations,
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
            self.push_checkpoint(seq, subject, payload);
            return;
        }
        if !subject.starts_with(subjects::AUDIT_CREDENTIAL_PREFIX) {
            return;
        }
        self.events += 1;
        self.chains.entry(subject.to_string()).or_default();
        let Some(link) = self.checked_link(seq, subject, headers, payload) else {
            return;
        };
        let broken = self
            .chains
            .get(subject)
            .and_then(|chain| chain.continuity(seq, &link));
        if let Some((kind, bad, detail)) = broken {
            self.problem(bad, subject, kind, detail);
        }
        if let Some(chain) = self.chains.get_mut(subject) {
            chain.accept(seq, &link, stored_ms);
        }
        self.note_event(payload);
    }

    /// A checkpoint stored in the stream at `seq`.
    fn push_checkpoint(&mut self, seq: u64, subject: &str, payload: &[u8]) {
        match Encoding::MsgPack.decode::<Checkpoint>(payload) {
            Ok(cp) => self.checkpoints.push((cp, CheckpointSource::Stream(seq))),
            Err(_) => self.problem(
                seq,
                subject,
                ProblemKind::BadCheckpoint,
                "a checkpoint message that does not decode".into(),
            ),
        }
    }

    /// The message's link, its HMAC checked (a bad one is reported and the link still
    /// read); `None`, reported, when it has no well-formed link or an unknown key.
    fn checked_link(
        &mut self,
        seq: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Option<Link> {
        let link = match Link::from_headers(headers) {
            Ok(link) => link,
            Err(error) => {
                self.problem(seq, subject, ProblemKind::Unchained, error.to_string());
                if let Some(chain) = self.chains.get_mut(subject) {
                    chain.unchained_at = Some(seq);
                }
                return None;
            }
        };
        let (kind, detail) = match link.check(self.vault, subject, payload) {
            Ok(true) => return Some(link),
            Ok(false) => {
                let detail = format!(
                    "link {} does not match its HMAC: edited or forged",
                    link.position
                );
                self.problem(seq, subject, ProblemKind::BadHash, detail);
                return Some(link);
            }
            Err(LinkError::UnknownKey(id)) => (
                ProblemKind::UnknownKey,
                format!("audit key id {id} is not in the ring"),
            ),
            Err(error) => (ProblemKind::Unchained, error.to_string()),
        };
        self.problem(seq, subject, kind, detail);
        None
    }

    /// Notes what the event records: the generation written, an authorised access.
    fn note_event(&mut self, payload: &[u8]) {
        let Ok(event) = Encoding::MsgPack.decode::<AuditEvent>(payload) else {
            return;
        };
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
        let mut seen = HashSet::new();
        let checkpoints = std::mem::take(&mut self.checkpoints);
        let mut verified = 0;
        // Per chain, the highest position a matching checkpoint covers.
        let mut sealed: HashMap<String, u64> = HashMap::new();
        for (cp, source) in checkpoints {
            if !cp.verify(self.vault) {
                self.bad_signature(&cp, source);
                continue;
            }
            if !seen.insert((cp.subject.clone(), cp.seq, cp.position, cp.hash.clone())) {
                continue;
            }
            verified += 1;
            if self.compare(&cp) {
                let covered = sealed.entry(cp.subject.clone()).or_default();
                *covered = (*covered).max(cp.position);
            }
        }
        self.unsealed(&sealed);
        self.report(verified)
    }

    /// Reports a checkpoint whose signature does not verify.
    fn bad_signature(&mut self, cp: &Checkpoint, source: CheckpointSource) {
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
    }

    /// Compares a signed checkpoint with its chain: `true` when the chain holds its link,
    /// else the difference or the truncation is reported.
    fn compare(&mut self, cp: &Checkpoint) -> bool {
        let (last, at) = match self.chains.get(&cp.subject) {
            Some(chain) => (chain.prev, chain.positions.get(&cp.position).copied()),
            None => (None, None),
        };
        match at {
            Some((seq, hash)) if hash == cp.hash_bytes() && seq == cp.seq => return true,
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
            None => self.truncated(cp, last),
        }
        false
    }

    /// Reports a checkpoint beyond the chain's last link (`last`): a truncated tail.
    fn truncated(&mut self, cp: &Checkpoint, last: Option<Prev>) {
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

    /// The report: the problems in sequence order, `verified` checkpoints; the caller
    /// fills in the stream, order and account checks.
    fn report(mut self, verified: usize) -> Report {
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
    pub fn take_written(&mut self) -> WrittenGenerations {
        std::mem::take(&mut self.written)
    }

    /// The authorised accesses read so far, by (user id, broker account id).
    pub fn take_accesses(&mut self) -> HashMap<(String, String), Vec<Access>> {
        std::mem::take(&mut self.accesses)
    }
}

#[cfg(test)]
mod tests;
