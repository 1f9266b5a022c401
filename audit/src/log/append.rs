//! Appending one link with others of its chain in flight: plan and send under the chain's
//! lock, await the ack outside it, re-chain after a refusal (see [`super`]'s module docs,
//! "Many events in flight").

use std::time::Duration;

use async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::HeaderMap;
use tokio::sync::MutexGuard;

use super::chains::{ChainState, SharedChain};
use super::inflight::{Plan, Sent, Unacked, Waiting};
use super::tip::{self, TipError};
use super::AuditLog;
use crate::chain::{Link, Tip};
use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use pinnacle_protocol::codec::Encoding;
use pinnacle_protocol::subjects::headers;
use pinnacle_runtime::jetstream::Retry;
use pinnacle_runtime::telemetry;

/// How often one append may lose the race to another writer before giving up (within the
/// timeout either way).
const MAX_RACES: usize = 64;

/// The first pause after a failure a leader change produces; it doubles up to the maximum.
const LEADER_CHANGE_PAUSE: Duration = Duration::from_millis(25);
const LEADER_CHANGE_PAUSE_MAX: Duration = Duration::from_millis(400);

/// The retries of one append: races lost so far, and the pause after a leader change.
/// (Re-chaining after a link in flight landed elsewhere than predicted is not a lost race:
/// only the caller's timeout bounds it.)
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

/// What to do after a failed publish, when it is not final.
#[derive(Debug, PartialEq, Eq)]
enum Again {
    /// Plan again at once (the chain state was reset or healed).
    Now,
    /// Plan again after a pause (a leader change, probably).
    Later,
}

/// A link sent: what its ack is checked against, the ack to await, and the guard that
/// resets the chain if the append is dropped first.
type InFlightLink = (Sent, PublishAckFuture, Unacked);

impl AuditLog {
    /// Appends one link; returns its stream sequence and a checkpoint now due. A failure
    /// drops the chain's tip (and so what was chained after the link).
    pub(super) async fn append(
        &self,
        subject: &str,
        event_id: &str,
        payload: &bytes::Bytes,
        chain: &SharedChain,
    ) -> Result<(u64, Option<Checkpoint>), AuditError> {
        let mut retries = Retries::new();
        loop {
            let sending = self.send_next(subject, event_id, payload, chain, &mut retries);
            let (sent, ack, unacked) = match sending.await? {
                Ok(sent) => sent,
                Err(again) => {
                    if again == Again::Later {
                        retries.pause().await;
                    }
                    continue;
                }
            };
            let result = ack.await;
            let mut state = chain.lock().await;
            unacked.handled();
            let error = match result {
                Ok(ack) => return Ok(self.stored(subject, chain, &mut state, &sent, &ack)),
                Err(error) => error,
            };
            state.failed(Some(&sent));
            let again = self.after_failure(&error, sent.pipelined, &mut state, &mut retries)?;
            drop(state);
            if again == Again::Later {
                retries.pause().await;
            }
        }
    }

    /// Under the chain's lock: waits its turn, reads the tip if unknown, then computes and
    /// sends the next link. `Ok(Err(_))` after a publish that failed at once: plan again.
    async fn send_next(
        &self,
        subject: &str,
        event_id: &str,
        payload: &bytes::Bytes,
        chain: &SharedChain,
        retries: &mut Retries,
    ) -> Result<Result<InFlightLink, Again>, AuditError> {
        let mut state = chain.lock().await;
        loop {
            let (tip, after) = match state.plan(self.inner.writer) {
                Plan::Wait => {
                    state = wait_turn(chain, state).await;
                    continue;
                }
                Plan::Reread => {
                    match tip::read_tip(&self.inner.js, subject).await {
                        Ok(tip) => {
                            self.inner.chains.saw(tip.seq);
                            state.reread(tip);
                        }
                        Err(TipError::Leaderless(error)) => {
                            tracing::debug!(%error, "audit tip unreadable; retrying");
                            return Ok(Err(Again::Later));
                        }
                        Err(TipError::Refused(error)) => return Err(error),
                    }
                    continue;
                }
                Plan::Send { tip, after } => (tip, after),
            };
            let link = Link::next(&self.inner.vault, subject, &tip, payload)
                .map_err(|e| AuditError::Publish(e.to_string()))?;
            let publish =
                self.publish_link(subject, event_id, payload, &tip, after.as_deref(), &link);
            return match publish.await {
                Ok(ack) => {
                    let last_seen = self.inner.chains.last_seq();
                    let sent = state.sent(link, event_id, self.inner.writer, last_seen);
                    let unacked = Unacked::new(chain, &sent);
                    Ok(Ok((sent, ack, unacked)))
                }
                Err(error) => {
                    state.failed(None);
                    self.after_failure(&error, after.is_some(), &mut state, retries)
                        .map(Err)
                }
            };
        }
    }

    /// The link was stored (or was a duplicate of a stored event): moves the tip, tracks
    /// what to seal; returns the sequence and a checkpoint now due.
    fn stored(
        &self,
        subject: &str,
        chain: &SharedChain,
        state: &mut ChainState,
        sent: &Sent,
        ack: &PublishAck,
    ) -> (u64, Option<Checkpoint>) {
        self.inner.chains.saw(ack.sequence);
        if state.acked(sent, ack) {
            self.inner.chains.mispredicted();
        }
        state.no_responders = false;
        // Only a checkpointing writer tracks what to seal (an idle chain with nothing
        // unsealed may be dropped from the map); a duplicate is not ours to seal.
        if !ack.duplicate && self.inner.sealer.checkpointing() {
            state.appended(sent.link.tip_at(ack.sequence));
        }
        let due = self.inner.sealer.after_append(subject, chain, state);
        (ack.sequence, due)
    }

    /// Publishes `link` after `tip`, expecting `tip` to be the subject's last message and,
    /// when `after` is set (pipelined), the event `after` to be the stream's last message.
    async fn publish_link(
        &self,
        subject: &str,
        event_id: &str,
        payload: &bytes::Bytes,
        tip: &Tip,
        after: Option<&str>,
        link: &Link,
    ) -> Result<PublishAckFuture, PublishError> {
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::NATS_MSG_ID, event_id);
        hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
        hdrs.insert(
            headers::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            tip.seq.to_string().as_str(),
        );
        if let Some(after) = after {
            hdrs.insert(NATS_EXPECTED_LAST_MESSAGE_ID, after);
        }
        link.write_headers(&mut hdrs);
        telemetry::inject_context(&mut hdrs);
        self.inner
            .js
            .publish_with_headers(subject.to_string(), hdrs, payload.clone())
            .await
    }

    /// After a failed publish (the chain state already reset): how to try again, or the
    /// error when it is final.
    fn after_failure(
        &self,
        e: &PublishError,
        pipelined: bool,
        state: &mut ChainState,
        retries: &mut Retries,
    ) -> Result<Again, AuditError> {
        let retry = pinnacle_runtime::jetstream::classify(e);
        // A pipelined link is refused when its predecessor is not the stream's last message
        // at the predicted sequence (it landed elsewhere, or was refused): re-chain.
        if pipelined && (retry == Retry::Reread || e.kind() == PublishErrorKind::WrongLastMessageId)
        {
            state.no_responders = false;
            return Ok(Again::Now);
        }
        match retry {
            // Another writer appended, or a new stream leader does not know our
            // view: read the stored tip and chain after it.
            Retry::Reread if retries.races < MAX_RACES => {
                retries.races += 1;
                self.inner.chains.lost_race();
                state.no_responders = false;
                Ok(Again::Now)
            }
            // No leader or no ack for now: the event may or may not be stored, so
            // re-read the tip (the event id makes a stored copy a duplicate). "No
            // responders" is also what a missing stream looks like: remembered, so
            // a timeout after nothing but that says "audit stream unavailable".
            Retry::Later => {
                tracing::debug!(error = %e, "audit append not acknowledged; retrying");
                state.no_responders = e.kind() == PublishErrorKind::StreamNotFound;
                Ok(Again::Later)
            }
            Retry::Reread | Retry::Never => Err(AuditError::Publish(e.to_string())),
        }
    }
}

/// Releases the chain until a link in flight resolves (counted as waiting, so that no
/// writer pipelines more links meanwhile), then takes it again.
async fn wait_turn<'a>(
    chain: &'a SharedChain,
    state: MutexGuard<'a, ChainState>,
) -> MutexGuard<'a, ChainState> {
    let resolved = state.resolved.clone();
    let notified = resolved.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let waiting = Waiting::new(&state.waiting);
    drop(state);
    notified.await;
    let state = chain.lock().await;
    drop(waiting);
    state
}
