//! [`AuditLog`]: appends events to their chain and waits for JetStream's ack.
//!
//! One chain per `audit.credential.<user>` subject. Each append carries
//! `Nats-Expected-Last-Subject-Sequence` = the sequence of the link it follows, so JetStream
//! stores it only if no one else appended in between: any number of writers (workers, the
//! user API, key rotation) share a chain, serialised by the stream. The writer caches each
//! chain's tip (last sequence, position, hash) in memory and re-reads the subject's last
//! message only when the cache is empty or JetStream refuses a link. Within one process,
//! appends to one subject take a per-subject lock only to compute and send their link, so
//! they never race each other, and they do not wait for each other's acks.
//!
//! # Many events in flight
//!
//! A link hashes its predecessor's *stream* sequence (`prev_seq`), and the expected last
//! subject sequence is a stream sequence too: neither is known for a link whose ack has not
//! come back, and JetStream numbers the stream, not the subject (other users' links and
//! checkpoints share AUDIT). So a writer *predicts* it, and makes JetStream check the
//! prediction:
//!
//! - A link sent while no link of the chain is in flight follows the known tip as before
//!   (expected last subject sequence = the tip's real sequence), and is predicted to land
//!   right after the newest sequence this process has seen acked.
//! - A link sent while its predecessor is in flight (only by the same writer, on the same
//!   connection) is hashed with `prev_seq` = the predicted sequence `p` of that predecessor,
//!   and carries `Nats-Expected-Last-Subject-Sequence: p` **and**
//!   `Nats-Expected-Last-Msg-Id: <predecessor's event id>`. JetStream stores it only if the
//!   stream's last message is that very predecessor and the subject's last sequence is `p`:
//!   the predecessor was stored, at `p`, and nothing came after it, so the link's position,
//!   `prev_seq` and `prev_hash` are all right. It is then predicted at `p + 1`.
//! - The lock is released once the link is sent (a connection delivers its messages in
//!   order), and the ack awaited outside it. A caller's `Ok` is JetStream's ack of its own
//!   link, so the event is stored before anyone reads a credential.
//!
//! A wrong prediction (another process wrote to AUDIT in between) or any refusal fails
//! closed: JetStream refuses every link chained after the missing or misplaced one (its
//! expected last message id or sequence does not match, and never will: a prediction is
//! never above the real sequence, and sequences only grow). Their callers re-chain after
//! the known or re-read tip and publish again (same event id), until their timeout. A
//! re-chained link is sent only after everything chained on the old prediction was sent on
//! the same connection, so the server has refused those before it can store the new one.
//! An ack that comes back for a link sent before the tip was dropped (the state's `epoch`
//! moved) no longer moves the tip. Links of another writer of the same process (another
//! connection) wait until the chain has no link in flight, and while one waits no writer
//! pipelines more, so none is starved. [`AuditChains::mispredictions`] counts mispredicted
//! links, [`AuditChains::races`] lost races. The event id must be recorded by one caller
//! at a time (it is the deduplication key): a duplicate ack resets the chain's state.
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
//! - this file: [`AuditLog`], the writer: recording an event within the timeout.
//! - `log/append.rs`: appending one link: plan and send under the chain's lock, await the
//!   ack outside it, re-chain after a refusal.
//! - `log/inflight.rs`: the links of a chain in flight: planning the next one, predicting
//!   sequences, what an ack or a refusal changes.
//! - `log/chains.rs`: [`AuditChains`], the chain states a process's writers share.
//! - `log/sealing.rs`: the writer's checkpointing (when a checkpoint is due, signing it,
//!   storing it, retrying it).
//! - `log/tip.rs`: reading a chain's tip from the stream.

mod append;
mod chains;
mod inflight;
mod sealing;
mod tip;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use sea_orm::DatabaseConnection;

pub use chains::{AuditChains, DEFAULT_MAX_CHAINS};

use super::checkpoint::{Checkpoint, CheckpointPolicy};
use super::error::AuditError;
use chains::SharedChain;
use pinnacle_protocol::codec::Encoding;
use pinnacle_protocol::model::AuditEvent;
use pinnacle_protocol::subjects;
use pinnacle_runtime::telemetry;
use pinnacle_vault::Vault;
use sealing::Sealer;

/// Numbers writers: links of one writer share a connection, which keeps their order.
static WRITERS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
struct Inner {
    /// JetStream context on the service's connection.
    js: jetstream::Context,
    /// This writer's number: only its own links may be chained after its links in flight
    /// (they share `js`'s connection, so the server reads them in order).
    writer: u64,
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
                writer: WRITERS.fetch_add(1, Ordering::Relaxed),
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
                writer: self.inner.writer,
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
        let append = self.append(&subject, &event.event_id, &payload, &chain);
        let (seq, due) = match tokio::time::timeout(self.inner.timeout, append).await {
            Ok(result) => result?,
            Err(_) => return Err(self.timed_out(&chain).await),
        };
        crate::metrics::audit_stream_available(true);
        if let Some(cp) = due {
            self.inner.sealer.spawn_seal(chain, cp);
        }
        Ok(seq)
    }

    /// The append did not finish within the timeout: drops the (maybe stale) tip and says
    /// why, "stream unavailable" when nothing but "no responders" came back.
    async fn timed_out(&self, chain: &SharedChain) -> AuditError {
        // The lock was released with a tip that may be stale: drop it.
        let mut state = chain.lock().await;
        state.reset();
        if std::mem::take(&mut state.no_responders) {
            return AuditError::StreamUnavailable(format!(
                "the {} stream does not exist or has no reachable leader (no responders for {:?})",
                subjects::AUDIT_STREAM,
                self.inner.timeout
            ));
        }
        AuditError::Timeout(self.inner.timeout)
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
