//! A writer's checkpointing: [`Sealer`] signs a checkpoint of the links a writer appended
//! and stores it in the stream (`audit.checkpoint.<user>`) and, when the writer has one, the
//! `audit_checkpoints` table.
//!
//! A checkpoint is due after `every_events` of the writer's appends to a chain, or `every`
//! after the first unsealed append (a timer per chain), or at a graceful stop
//! ([`Sealer::checkpoint_now`]). One that cannot be stored is kept pending and retried
//! `every` later.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use sea_orm::DatabaseConnection;

use super::chains::{AuditChains, ChainState, SharedChain};
use crate::chain::Tip;
use crate::checkpoint::{self, Checkpoint, CheckpointPolicy};
use crate::error::AuditError;
use pinnacle_protocol::codec::Encoding;
use pinnacle_protocol::subjects::{self, headers};
use pinnacle_store::writes::Writer;
use pinnacle_vault::Vault;

/// Where checkpoints go besides the stream.
#[derive(Debug, Clone)]
struct Store {
    /// The `audit_checkpoints` table's database, written through the process's writer.
    db: Writer,
    /// When to checkpoint.
    policy: CheckpointPolicy,
}

/// Signs and stores one writer's checkpoints. Cloning shares it (a timer task holds one).
#[derive(Debug, Clone)]
pub(super) struct Sealer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// JetStream context on the writer's connection.
    js: jetstream::Context,
    /// How long storing a checkpoint may take.
    timeout: Duration,
    /// The checkpoint key.
    vault: Arc<Vault>,
    /// Checkpointing on appends, when the writer has a database.
    store: Option<Store>,
}

impl Sealer {
    /// A sealer that publishes checkpoints on request only (no database, no policy).
    pub(super) fn new(js: jetstream::Context, timeout: Duration, vault: Arc<Vault>) -> Self {
        Self {
            inner: Arc::new(Inner {
                js,
                timeout,
                vault,
                store: None,
            }),
        }
    }

    /// The same sealer, also checkpointing appends by `policy` into the stream and `db`.
    pub(super) fn with_store(&self, db: DatabaseConnection, policy: CheckpointPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                js: self.inner.js.clone(),
                timeout: self.inner.timeout,
                vault: self.inner.vault.clone(),
                store: Some(Store {
                    db: Writer::new(&db),
                    policy,
                }),
            }),
        }
    }

    /// Whether appends are checkpointed (only then does a writer track what to seal).
    pub(super) fn checkpointing(&self) -> bool {
        self.inner.store.is_some()
    }

    /// After an append: a signed checkpoint when `every_events` of this writer's links are
    /// unsealed, otherwise the chain's timer is armed (if it is not already).
    pub(super) fn after_append(
        &self,
        subject: &str,
        chain: &SharedChain,
        state: &mut ChainState,
    ) -> Option<Checkpoint> {
        let policy = self.inner.store.as_ref()?.policy;
        state.unsealed?;
        if state.since_checkpoint >= policy.every_events.max(1) {
            return self.sign(subject, state);
        }
        self.arm_timer(subject, chain, state, policy.every);
        None
    }

    /// Stores `cp` in a task of its own (see [`Sealer::seal`]).
    pub(super) fn spawn_seal(&self, chain: SharedChain, cp: Checkpoint) {
        let sealer = self.clone();
        tokio::spawn(async move { sealer.seal(&chain, cp).await });
    }

    /// Starts the chain's timer: `after` from now it checkpoints whatever is unsealed.
    fn arm_timer(
        &self,
        subject: &str,
        chain: &SharedChain,
        state: &mut ChainState,
        after: Duration,
    ) {
        if state.timer_armed {
            return;
        }
        state.timer_armed = true;
        let (sealer, chain, subject) = (self.clone(), chain.clone(), subject.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let cp = {
                let mut state = chain.lock().await;
                state.timer_armed = false;
                sealer.sign(&subject, &mut state)
            };
            if let Some(cp) = cp {
                sealer.seal(&chain, cp).await;
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
    async fn seal(&self, chain: &SharedChain, cp: Checkpoint) {
        let Err(error) = self.publish(&cp).await else {
            return;
        };
        crate::metrics::audit_checkpoint_failed(&error);
        tracing::warn!(subject = %cp.subject, %error, "audit checkpoint not stored; retrying");
        let Some(policy) = self.inner.store.as_ref().map(|s| s.policy) else {
            return;
        };
        let mut state = chain.lock().await;
        state.restore_unsealed(sealed_tip(&cp));
        self.arm_timer(&cp.subject, chain, &mut state, policy.every);
    }

    /// Checkpoints every chain of `chains` appended to since its last checkpoint, now
    /// (graceful shutdown calls it); returns how many it stored. A failure is returned and
    /// the chain stays pending.
    pub(super) async fn checkpoint_now(&self, chains: &AuditChains) -> Result<usize, AuditError> {
        let mut stored = 0;
        for (subject, chain) in chains.all() {
            let cp = self.sign(&subject, &mut *chain.lock().await);
            if let Some(cp) = cp {
                if let Err(error) = self.publish(&cp).await {
                    chain.lock().await.restore_unsealed(sealed_tip(&cp));
                    return Err(error);
                }
                stored += 1;
            }
        }
        Ok(stored)
    }

    /// Publishes `cp` to `audit.checkpoint.<user>` (waiting for the ack) and stores it in
    /// the database, when there is one.
    pub(super) async fn publish(&self, cp: &Checkpoint) -> Result<(), AuditError> {
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
        if let Some(store) = &self.inner.store {
            checkpoint::store(&store.db, cp)
                .await
                .map_err(|e| AuditError::Checkpoint(e.to_string()))?;
        }
        Ok(())
    }
}

/// The link `cp` covers, as a chain's tip.
fn sealed_tip(cp: &Checkpoint) -> Tip {
    Tip {
        seq: cp.seq,
        position: cp.position,
        hash: cp.hash_bytes(),
    }
}
