//! [`AuditLog`]: appends events to their chain and waits for JetStream's ack.
//!
//! One chain per `audit.credential.<user>` subject. Each append carries
//! `Nats-Expected-Last-Subject-Sequence` = the sequence of the link it follows, so JetStream
//! stores it only if no one else appended in between: any number of writers (workers, the
//! user API, key rotation) share a chain, serialised by the stream. The writer caches each
//! chain's tip (last sequence, position, hash) in memory and re-reads the subject's last
//! message only when the cache is empty or JetStream reports a wrong last sequence. Within
//! one process, appends to one subject are serialised by a per-subject lock, so they never
//! race each other.
//!
//! With checkpoints on ([`AuditLog::with_checkpoints`]), every link a writer appends is
//! covered by one of its signed checkpoints after at most `every_events` of its appends to
//! that chain, or `every` after the append (a timer per chain, armed by the first unsealed
//! append: no later append is needed), or at [`AuditLog::checkpoint_now`] (graceful stop).
//! A checkpoint that cannot be stored is kept pending and retried `every` later.
//!
//! **One writer per chain per process.** The chain states live in [`AuditChains`], which
//! every component of a process shares ([`AuditLog::with_chains`]; `pinnacle dev` and the
//! test stack build one for the worker, its session store and the user API). Appends of
//! one process to one chain then take the same lock and chain after the same cached tip, so
//! they never lose the expected-sequence check to each other (they still may to another
//! process, and re-read the tip then; [`AuditChains::races`] counts those re-reads). The
//! map holds at most [`AuditChains::max_chains`] chains plus the ones in use: past the cap,
//! idle chains (no append or timer running, nothing left to checkpoint) are dropped, and
//! their tip is read from the stream again on their next append.
//!
//! # Layout
//! - this file: [`AuditLog`], the writer: appending a link and waiting for the ack.
//! - `log/chains.rs`: [`AuditChains`], the chain states a process's writers share.
//! - `log/sealing.rs`: the writer's checkpointing (when a checkpoint is due, signing it,
//!   storing it, retrying it).
//! - `log/tip.rs`: reading a chain's tip from the stream.

mod chains;
mod sealing;
mod tip;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::HeaderMap;
use sea_orm::DatabaseConnection;

pub use chains::{AuditChains, DEFAULT_MAX_CHAINS};

use super::chain::{Link, Tip};
use super::checkpoint::{Checkpoint, CheckpointPolicy};
use super::error::AuditError;
use chains::{ChainState, SharedChain};
use pinnacle_protocol::codec::Encoding;
use pinnacle_protocol::model::AuditEvent;
use pinnacle_protocol::subjects::{self, headers};
use pinnacle_runtime::jetstream::Retry;
use pinnacle_runtime::telemetry;
use pinnacle_vault::Vault;
use sealing::Sealer;
use tip::TipError;

/// How often one append may lose the race to another writer before giving up (within the
/// timeout either way).
const MAX_RACES: usize = 64;

/// The first pause after a failure a leader change produces; it doubles up to the maximum.
const LEADER_CHANGE_PAUSE: Duration = Duration::from_millis(25);
const LEADER_CHANGE_PAUSE_MAX: Duration = Duration::from_millis(400);

/// The retries of one append: races lost so far, and the pause after a leader change.
#[derive(Debug)]
struct Retries {
    races: usize,
    pause: Duration,
}

impl Retries {
    fn new() -> Self {
        Self {
            races: 0,
            pause: LEADER_CHANGE_PAUSE,
        }
    }

    /// Waits out a leader change: the pause, which doubles up to the maximum.
    async fn pause(&mut self) {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(LEADER_CHANGE_PAUSE_MAX);
    }
}

#[derive(Debug)]
struct Inner {
    /// JetStream context on the service's connection.
    js: jetstream::Context,
    /// How long an append may take, races included, before failing closed.
    timeout: Duration,
    /// The audit-chain key.
    vault: Arc<Vault>,
    /// The chain states, shared with the process's other writers.
    chains: AuditChains,
    /// Checkpointing (on appends only when this writer has a database).
    sealer: Sealer,
}

/// Publishes audit events into their HMAC chains and waits for them to be stored.
#[derive(Clone, Debug)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl AuditLog {
    /// An audit log over `client`, chaining with `vault`'s audit key, failing closed after
    /// `timeout`. It does not checkpoint until [`AuditLog::with_checkpoints`].
    pub fn new(client: async_nats::Client, timeout: Duration, vault: Arc<Vault>) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        Self {
            inner: Arc::new(Inner {
                sealer: Sealer::new(js.clone(), timeout, vault.clone()),
                js,
                timeout,
                vault,
                chains: AuditChains::default(),
            }),
        }
    }

    /// Shares `chains` (the process's) instead of its own: every component of a process
    /// should, so that they never race each other on one chain.
    pub fn with_chains(self, chains: AuditChains) -> Self {
        self.rebuilt(chains, self.inner.sealer.clone())
    }

    /// The chain states this writer uses.
    pub fn chains(&self) -> &AuditChains {
        &self.inner.chains
    }

    /// Also checkpoints every chain it appends to, by `policy`, into the stream and `db`.
    pub fn with_checkpoints(self, db: DatabaseConnection, policy: CheckpointPolicy) -> Self {
        self.rebuilt(
            self.inner.chains.clone(),
            self.inner.sealer.with_store(db, policy),
        )
    }

    /// The same writer with other chain states and checkpointing.
    fn rebuilt(&self, chains: AuditChains, sealer: Sealer) -> Self {
        Self {
            inner: Arc::new(Inner {
                js: self.inner.js.clone(),
                timeout: self.inner.timeout,
                vault: self.inner.vault.clone(),
                chains,
                sealer,
            }),
        }
    }

    pub(super) fn js(&self) -> &jetstream::Context {
        &self.inner.js
    }

    /// The NATS connection the log publishes on (for announcements that go with an
    /// audited change, such as a token revocation).
    pub fn client(&self) -> async_nats::Client {
        self.inner.js.client()
    }

    pub(super) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Stores `event` as the next link of `audit.credential.<user_id>`; returns the stream
    /// sequence. Any failure (no stream, no server, a timeout) is an error: fail closed.
    #[tracing::instrument(name = "audit.publish", skip_all, fields(otel.kind = "producer", messaging.system = "nats", messaging.operation.type = "send", messaging.operation.name = "publish", messaging.destination.name = %subjects::audit_credential(&event.user_id), messaging.message.id = %event.event_id, otel.status_code = tracing::field::Empty, error.type = tracing::field::Empty))]
    pub async fn record(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        self.record_chained(event)
            .await
            .inspect_err(|e| telemetry::record_failure(&tracing::Span::current(), e.kind()))
            .map_err(crate::metrics::audit_publish_failed)
    }

    async fn record_chained(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        let payload = Encoding::MsgPack.encode(event)?;
        let subject = subjects::audit_credential(&event.user_id);
        let chain = self.inner.chains.get(&subject);
        let append = self.append_locked(&subject, &event.event_id, &payload, &chain);
        let (tip, due) = match tokio::time::timeout(self.inner.timeout, append).await {
            Ok(result) => result?,
            Err(_) => return Err(self.timed_out(&chain).await),
        };
        crate::metrics::audit_stream_available(true);
        if let Some(cp) = due {
            self.inner.sealer.spawn_seal(chain, cp);
        }
        Ok(tip.seq)
    }

    /// Appends under the chain's lock; returns the new tip and a checkpoint now due. A
    /// failure drops the cached tip.
    async fn append_locked(
        &self,
        subject: &str,
        event_id: &str,
        payload: &bytes::Bytes,
        chain: &SharedChain,
    ) -> Result<(Tip, Option<Checkpoint>), AuditError> {
        let mut state = chain.lock().await;
        match self.append(subject, event_id, payload, &mut state).await {
            Ok((tip, fresh)) => {
                state.no_responders = false;
                // Only a checkpointing writer tracks what to seal (an idle chain with
                // nothing unsealed may be dropped from the map).
                if fresh && self.inner.sealer.checkpointing() {
                    state.appended(tip);
                }
                let due = self.inner.sealer.after_append(subject, chain, &mut state);
                Ok((tip, due))
            }
            Err(error) => {
                state.tip = None;
                Err(error)
            }
        }
    }

    /// The append did not finish within the timeout: drops the (maybe stale) tip and says
    /// why, "stream unavailable" when nothing but "no responders" came back.
    async fn timed_out(&self, chain: &SharedChain) -> AuditError {
        // The lock was released with a tip that may be stale: drop it.
        let mut state = chain.lock().await;
        state.tip = None;
        if std::mem::take(&mut state.no_responders) {
            return AuditError::StreamUnavailable(format!(
                "the {} stream did not answer (no responders for {:?}): it does not exist, has no reachable leader, or JetStream is down",
                subjects::AUDIT_STREAM,
                self.inner.timeout
            ));
        }
        AuditError::Timeout(self.inner.timeout)
    }

    /// Appends one link, re-reading the tip after each lost race, and retrying what a
    /// leader change produces ([`pinnacle_runtime::jetstream::classify`]) until the caller's timeout.
    /// Returns the new tip, and whether this append stored it (not a de-duplicated retry).
    async fn append(
        &self,
        subject: &str,
        event_id: &str,
        payload: &bytes::Bytes,
        state: &mut ChainState,
    ) -> Result<(Tip, bool), AuditError> {
        let mut retries = Retries::new();
        loop {
            let Some(tip) = self.known_tip(subject, state, &mut retries).await? else {
                continue;
            };
            let link = Link::next(&self.inner.vault, subject, &tip, payload)
                .map_err(|e| AuditError::Publish(e.to_string()))?;
            let ack = match self
                .publish_link(subject, event_id, payload, &tip, &link)
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(ack) if ack.duplicate => {
                    // A retry of an event already stored (same event id): JetStream kept the
                    // first copy, so our computed link is not the tip (and not ours to seal).
                    // Re-read next time.
                    state.tip = None;
                    return Ok((
                        Tip {
                            seq: ack.sequence,
                            ..tip
                        },
                        false,
                    ));
                }
                Ok(PublishAck { sequence, .. }) => {
                    let tip = link.tip_at(sequence);
                    state.tip = Some(tip);
                    return Ok((tip, true));
                }
                Err(e) => self.retry_after(&e, state, &mut retries).await?,
            }
        }
    }

    /// The tip to chain after: the cached one, else the stored one. `None` after a pause
    /// when no leader answered (try again).
    async fn known_tip(
        &self,
        subject: &str,
        state: &ChainState,
        retries: &mut Retries,
    ) -> Result<Option<Tip>, AuditError> {
        if let Some(tip) = state.tip {
            return Ok(Some(tip));
        }
        match tip::read_tip(&self.inner.js, subject).await {
            Ok(tip) => Ok(Some(tip)),
            Err(TipError::Leaderless(error)) => {
                tracing::debug!(%error, "audit tip unreadable; retrying");
                retries.pause().await;
                Ok(None)
            }
            Err(TipError::Refused(error)) => Err(error),
        }
    }

    /// Publishes `link` after `tip`, expecting `tip` to be the subject's last message.
    async fn publish_link(
        &self,
        subject: &str,
        event_id: &str,
        payload: &bytes::Bytes,
        tip: &Tip,
        link: &Link,
    ) -> Result<PublishAckFuture, PublishError> {
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::NATS_MSG_ID, event_id);
        hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
        hdrs.insert(
            headers::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            tip.seq.to_string().as_str(),
        );
        link.write_headers(&mut hdrs);
        telemetry::inject_context(&mut hdrs);
        self.inner
            .js
            .publish_with_headers(subject.to_string(), hdrs, payload.clone())
            .await
    }

    /// After a failed publish: `Ok` to try again (the tip dropped, after a pause for a
    /// leader change), or the error when it is final.
    async fn retry_after(
        &self,
        e: &PublishError,
        state: &mut ChainState,
        retries: &mut Retries,
    ) -> Result<(), AuditError> {
        match pinnacle_runtime::jetstream::classify(e) {
            // Another writer appended, or a new stream leader does not know our
            // view: read the stored tip and chain after it.
            Retry::Reread if retries.races < MAX_RACES => {
                retries.races += 1;
                self.inner.chains.lost_race();
                state.tip = None;
                state.no_responders = false;
            }
            // No leader or no ack for now: the event may or may not be stored, so
            // re-read the tip (the event id makes a stored copy a duplicate). "No
            // responders" is also what a missing stream looks like: remembered, so
            // a timeout after nothing but that says "audit stream unavailable".
            Retry::Later => {
                tracing::debug!(error = %e, "audit append not acknowledged; retrying");
                state.tip = None;
                state.no_responders = e.kind() == PublishErrorKind::StreamNotFound;
                retries.pause().await;
            }
            Retry::Reread | Retry::Never => return Err(AuditError::Publish(e.to_string())),
        }
        Ok(())
    }

    /// Checkpoints every chain this writer appended to since its last checkpoint, now
    /// (graceful shutdown calls it); returns how many it stored. A failure is returned and
    /// the chain stays pending.
    pub async fn checkpoint_now(&self) -> Result<usize, AuditError> {
        self.inner.sealer.checkpoint_now(&self.inner.chains).await
    }

    /// Publishes `cp` to `audit.checkpoint.<user>` (waiting for the ack) and stores it in
    /// the database, when this writer has one.
    pub async fn publish_checkpoint(&self, cp: &Checkpoint) -> Result<(), AuditError> {
        self.inner.sealer.publish(cp).await
    }
}
