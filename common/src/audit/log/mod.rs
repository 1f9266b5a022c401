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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream::LastRawMessageErrorKind};
use async_nats::HeaderMap;
use sea_orm::DatabaseConnection;

use super::chain::{Link, Tip};
use super::checkpoint::{self, Checkpoint, CheckpointPolicy};
use super::AuditError;
use crate::codec::Encoding;
use crate::crypto::Vault;
use crate::jetstream::Retry;
use crate::model::AuditEvent;
use crate::subjects::{self, headers};
use crate::telemetry;

/// How often one append may lose the race to another writer before giving up (within the
/// timeout either way).
const MAX_RACES: usize = 64;

/// The first pause after a failure a leader change produces; it doubles up to the maximum.
const LEADER_CHANGE_PAUSE: Duration = Duration::from_millis(25);
const LEADER_CHANGE_PAUSE_MAX: Duration = Duration::from_millis(400);

/// Why a chain's tip could not be read.
#[derive(Debug)]
enum TipError {
    /// No leader or no reply for now: retry within the append's timeout.
    Leaderless(String),
    /// Refused for good (no stream, a permission): fail the append.
    Refused(AuditError),
}

/// What a writer knows about one chain.
#[derive(Debug, Default)]
struct ChainState {
    /// The tip as of this writer's last append; `None` means "re-read from the stream".
    tip: Option<Tip>,
    /// The newest link this writer appended that none of its checkpoints covers yet (kept
    /// apart from `tip`, which an error clears, so a failed later append cannot leave an
    /// appended link unsealed).
    unsealed: Option<Tip>,
    /// Links this writer appended since it last checkpointed the chain.
    since_checkpoint: u64,
    /// Whether a timer task will checkpoint `unsealed` (one per chain at a time).
    timer_armed: bool,
    /// The last failed publish was "no responders": the stream is missing (or leaderless).
    /// An append that times out after that reports [`AuditError::StreamUnavailable`].
    no_responders: bool,
}

impl ChainState {
    /// Records a link this writer just appended (not a de-duplicated retry).
    fn appended(&mut self, tip: Tip) {
        self.unsealed = Some(tip);
        self.since_checkpoint += 1;
    }

    /// Takes the unsealed tip for a checkpoint, resetting the count.
    fn take_unsealed(&mut self) -> Option<Tip> {
        let tip = self.unsealed.take().filter(|t| t.position > 0)?;
        self.since_checkpoint = 0;
        Some(tip)
    }

    /// Puts back a tip whose checkpoint was not stored, unless a newer link is pending.
    fn restore_unsealed(&mut self, tip: Tip) {
        if self.unsealed.is_none_or(|u| u.position < tip.position) {
            self.unsealed = Some(tip);
        }
    }
}

/// How many chains an [`AuditChains`] keeps, idle ones included, by default.
pub const DEFAULT_MAX_CHAINS: usize = 10_000;

/// The chain states of one process, shared by all its audit writers (see the module docs).
/// Cloning shares them.
#[derive(Clone, Debug)]
pub struct AuditChains {
    inner: Arc<ChainsInner>,
}

#[derive(Debug)]
struct ChainsInner {
    /// Per-subject state behind a per-subject async lock.
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<ChainState>>>>,
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

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<ChainState>>>> {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state of `subject`'s chain, created when missing; drops idle chains first when
    /// the map is over its cap.
    fn get(&self, subject: &str) -> Arc<tokio::sync::Mutex<ChainState>> {
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
    fn all(&self) -> Vec<(String, Arc<tokio::sync::Mutex<ChainState>>)> {
        self.lock()
            .iter()
            .map(|(s, c)| (s.clone(), c.clone()))
            .collect()
    }
}

/// Where checkpoints go besides the stream.
#[derive(Debug, Clone)]
struct Checkpoints {
    /// The `audit_checkpoints` table's database.
    db: DatabaseConnection,
    /// When to checkpoint.
    policy: CheckpointPolicy,
}

#[derive(Debug)]
struct Inner {
    /// JetStream context on the service's connection.
    js: jetstream::Context,
    /// How long an append may take, races included, before failing closed.
    timeout: Duration,
    /// The audit-chain and checkpoint keys.
    vault: Arc<Vault>,
    /// The chain states, shared with the process's other writers.
    chains: AuditChains,
    /// Checkpointing, when this writer has a database.
    checkpoints: Option<Checkpoints>,
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
                js,
                timeout,
                vault,
                chains: AuditChains::default(),
                checkpoints: None,
            }),
        }
    }

    /// Shares `chains` (the process's) instead of its own: every component of a process
    /// should, so that they never race each other on one chain.
    pub fn with_chains(self, chains: AuditChains) -> Self {
        let inner = Inner {
            js: self.inner.js.clone(),
            timeout: self.inner.timeout,
            vault: self.inner.vault.clone(),
            chains,
            checkpoints: self.inner.checkpoints.clone(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The chain states this writer uses.
    pub fn chains(&self) -> &AuditChains {
        &self.inner.chains
    }

    /// Also checkpoints every chain it appends to, by `policy`, into the stream and `db`.
    pub fn with_checkpoints(self, db: DatabaseConnection, policy: CheckpointPolicy) -> Self {
        let inner = Inner {
            js: self.inner.js.clone(),
            timeout: self.inner.timeout,
            vault: self.inner.vault.clone(),
            chains: self.inner.chains.clone(),
            checkpoints: Some(Checkpoints { db, policy }),
        };
        Self {
            inner: Arc::new(inner),
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

    fn chain(&self, subject: &str) -> Arc<tokio::sync::Mutex<ChainState>> {
        self.inner.chains.get(subject)
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
        let chain = self.chain(&subject);
        let append = async {
            let mut state = chain.lock().await;
            let result = self
                .append(&subject, &event.event_id, &payload, &mut state)
                .await;
            match result {
                Ok((tip, fresh)) => {
                    state.no_responders = false;
                    // Only a checkpointing writer tracks what to seal (an idle chain with
                    // nothing unsealed may be dropped from the map).
                    if fresh && self.inner.checkpoints.is_some() {
                        state.appended(tip);
                    }
                    Ok((tip, self.after_append(&subject, &chain, &mut state)))
                }
                Err(error) => {
                    state.tip = None;
                    Err(error)
                }
            }
        };
        let (tip, due) = match tokio::time::timeout(self.inner.timeout, append).await {
            Ok(result) => result?,
            Err(_) => {
                // The lock was released with a tip that may be stale: drop it.
                let mut state = chain.lock().await;
                state.tip = None;
                if std::mem::take(&mut state.no_responders) {
                    return Err(AuditError::StreamUnavailable(format!(
                        "the {} stream does not exist or has no reachable leader (no responders for {:?})",
                        subjects::AUDIT_STREAM,
                        self.inner.timeout
                    )));
                }
                return Err(AuditError::Timeout(self.inner.timeout));
            }
        };
        crate::metrics::audit_stream_available(true);
        if let Some(cp) = due {
            let log = self.clone();
            tokio::spawn(async move { log.seal(&chain, cp).await });
        }
        Ok(tip.seq)
    }

    /// Appends one link, re-reading the tip after each lost race, and retrying what a
    /// leader change produces ([`crate::jetstream::classify`]) until the caller's timeout.
    async fn append(
        &self,
        subject: &str,
        event_id: &str,
        payload: &bytes::Bytes,
        state: &mut ChainState,
    ) -> Result<(Tip, bool), AuditError> {
        let mut races = 0;
        let mut pause = LEADER_CHANGE_PAUSE;
        loop {
            let tip = match state.tip {
                Some(tip) => tip,
                None => match self.read_tip(subject).await {
                    Ok(tip) => tip,
                    Err(TipError::Leaderless(error)) => {
                        tracing::debug!(%error, "audit tip unreadable; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(LEADER_CHANGE_PAUSE_MAX);
                        continue;
                    }
                    Err(TipError::Refused(error)) => return Err(error),
                },
            };
            let link = Link::next(&self.inner.vault, subject, &tip, payload)
                .map_err(|e| AuditError::Publish(e.to_string()))?;
            let mut hdrs = HeaderMap::new();
            hdrs.insert(headers::NATS_MSG_ID, event_id);
            hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
            hdrs.insert(
                headers::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                tip.seq.to_string().as_str(),
            );
            link.write_headers(&mut hdrs);
            telemetry::inject_context(&mut hdrs);
            let ack = match self
                .inner
                .js
                .publish_with_headers(subject.to_string(), hdrs, payload.clone())
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
                Ok(ack) => {
                    let tip = link.tip_at(ack.sequence);
                    state.tip = Some(tip);
                    return Ok((tip, true));
                }
                Err(e) => match crate::jetstream::classify(&e) {
                    // Another writer appended, or a new stream leader does not know our
                    // view: read the stored tip and chain after it.
                    Retry::Reread if races < MAX_RACES => {
                        races += 1;
                        self.inner
                            .chains
                            .inner
                            .races
                            .fetch_add(1, Ordering::Relaxed);
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
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(LEADER_CHANGE_PAUSE_MAX);
                    }
                    Retry::Reread | Retry::Never => return Err(AuditError::Publish(e.to_string())),
                },
            }
        }
    }

    /// The chain's tip as stored: the subject's last message, or empty.
    async fn read_tip(&self, subject: &str) -> Result<Tip, TipError> {
        let stream = self
            .inner
            .js
            .get_stream_no_info(subjects::AUDIT_STREAM)
            .await
            .map_err(|e| TipError::Refused(AuditError::read("looking up the stream", e)))?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(match Link::from_headers(Some(&message.headers)) {
                Ok(link) => link.tip_at(message.sequence),
                // The last message is not a link (written before chaining, or forged by a
                // publisher): start a new chain after it; `verify` reports the message.
                Err(_) => Tip {
                    seq: message.sequence,
                    ..Tip::EMPTY
                },
            }),
            Err(e) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => Ok(Tip::EMPTY),
                // The stream is gone: every access is refused until it is restored.
                LastRawMessageErrorKind::JetStream(api)
                    if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Err(TipError::Refused(AuditError::stream_missing()))
                }
                // A bad subject, a permission: a refusal.
                LastRawMessageErrorKind::JetStream(api)
                    if !crate::jetstream::is_leaderless(api.error_code()) =>
                {
                    Err(TipError::Refused(AuditError::read(
                        "reading a chain's last link",
                        e,
                    )))
                }
                LastRawMessageErrorKind::InvalidSubject => Err(TipError::Refused(
                    AuditError::read("reading a chain's last link", e),
                )),
                // No leader, no responder, no reply in time: an election, probably.
                LastRawMessageErrorKind::JetStream(_) | LastRawMessageErrorKind::Other => {
                    Err(TipError::Leaderless(e.to_string()))
                }
            },
        }
    }

    /// After an append: a signed checkpoint when `every_events` of this writer's links are
    /// unsealed, otherwise the chain's timer is armed (if it is not already).
    fn after_append(
        &self,
        subject: &str,
        chain: &Arc<tokio::sync::Mutex<ChainState>>,
        state: &mut ChainState,
    ) -> Option<Checkpoint> {
        let policy = self.inner.checkpoints.as_ref()?.policy;
        state.unsealed?;
        if state.since_checkpoint >= policy.every_events.max(1) {
            return self.sign(subject, state);
        }
        self.arm_timer(subject, chain, state, policy.every);
        None
    }

    /// Starts the chain's timer: `after` from now it checkpoints whatever is unsealed.
    fn arm_timer(
        &self,
        subject: &str,
        chain: &Arc<tokio::sync::Mutex<ChainState>>,
        state: &mut ChainState,
        after: Duration,
    ) {
        if state.timer_armed {
            return;
        }
        state.timer_armed = true;
        let (log, chain, subject) = (self.clone(), chain.clone(), subject.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let cp = {
                let mut state = chain.lock().await;
                state.timer_armed = false;
                log.sign(&subject, &mut state)
            };
            if let Some(cp) = cp {
                log.seal(&chain, cp).await;
            }
        });
    }

    /// Signs a checkpoint of the chain's unsealed tip, if any.
    fn sign(&self, subject: &str, state: &mut ChainState) -> Option<Checkpoint> {
        let tip = state.take_unsealed()?;
        let cp = Checkpoint::sign(
            &self.inner.vault,
            subject,
            &tip,
            chrono::Utc::now().timestamp_millis(),
        );
        if cp.is_none() {
            tracing::error!(%subject, "audit checkpoint key missing from the ring; chain not sealed");
        }
        cp
    }

    /// Stores `cp`; on failure logs, keeps its link pending and retries after `every`.
    async fn seal(&self, chain: &Arc<tokio::sync::Mutex<ChainState>>, cp: Checkpoint) {
        let Err(error) = self.publish_checkpoint(&cp).await else {
            return;
        };
        crate::metrics::audit_checkpoint_failed(&error);
        tracing::warn!(subject = %cp.subject, %error, "audit checkpoint not stored; retrying");
        let Some(policy) = self.inner.checkpoints.as_ref().map(|c| c.policy) else {
            return;
        };
        let mut state = chain.lock().await;
        state.restore_unsealed(Tip {
            seq: cp.seq,
            position: cp.position,
            hash: cp.hash_bytes(),
        });
        self.arm_timer(&cp.subject, chain, &mut state, policy.every);
    }

    /// Checkpoints every chain this writer appended to since its last checkpoint, now
    /// (graceful shutdown calls it); returns how many it stored. A failure is returned and
    /// the chain stays pending.
    pub async fn checkpoint_now(&self) -> Result<usize, AuditError> {
        let chains = self.inner.chains.all();
        let mut stored = 0;
        for (subject, chain) in chains {
            let cp = self.sign(&subject, &mut *chain.lock().await);
            if let Some(cp) = cp {
                if let Err(error) = self.publish_checkpoint(&cp).await {
                    chain.lock().await.restore_unsealed(Tip {
                        seq: cp.seq,
                        position: cp.position,
                        hash: cp.hash_bytes(),
                    });
                    return Err(error);
                }
                stored += 1;
            }
        }
        Ok(stored)
    }

    /// Publishes `cp` to `audit.checkpoint.<user>` (waiting for the ack) and stores it in
    /// the database, when this writer has one.
    pub async fn publish_checkpoint(&self, cp: &Checkpoint) -> Result<(), AuditError> {
        let subject = subjects::audit_checkpoint_of_chain(&cp.subject).ok_or_else(|| {
            AuditError::Publish(format!("{:?} is not a chain subject", cp.subject))
        })?;
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
        hdrs.insert(headers::AUDIT_KEY_ID, cp.key_id.to_string().as_str());
        let payload = Encoding::MsgPack.encode(cp)?;
        let publish = async {
            self.inner
                .js
                .publish_with_headers(subject, hdrs, payload)
                .await
                .map_err(AuditError::from_publish)?
                .await
                .map_err(AuditError::from_publish)
        };
        tokio::time::timeout(self.inner.timeout, publish)
            .await
            .map_err(|_| AuditError::Timeout(self.inner.timeout))??;
        if let Some(checkpoints) = &self.inner.checkpoints {
            checkpoint::store(&checkpoints.db, cp)
                .await
                .map_err(|e| AuditError::Checkpoint(e.to_string()))?;
        }
        Ok(())
    }
}
