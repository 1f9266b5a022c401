//! Many links of one chain in flight: what a chain's state records about links sent and not
//! yet acknowledged, how the next append is planned after them, and how an ack or a
//! refusal updates the state (see [`super`]'s module docs, "Many events in flight").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_nats::jetstream::publish::PublishAck;

use super::chains::{ChainState, InFlight, SharedChain};
use crate::chain::{Link, Tip};

/// What an append does next, decided under the chain's lock.
#[derive(Debug)]
pub(super) enum Plan {
    /// Send the link after `tip`; `after` is the in-flight predecessor's event id when the
    /// link is pipelined (chained after a link not yet acknowledged).
    Send { tip: Tip, after: Option<String> },
    /// Another writer's link is in flight, or another writer waits its turn: wait until a
    /// link resolves, then plan again.
    Wait,
    /// Nothing known: read the stored tip.
    Reread,
}

/// A link sent: what its ack is checked against.
#[derive(Debug)]
pub(super) struct Sent {
    /// The link itself.
    pub(super) link: Link,
    /// The stream sequence the chain's state assumed it would get.
    pub(super) predicted: u64,
    /// Whether it was chained after a link not yet acknowledged.
    pub(super) pipelined: bool,
    /// Its number among the chain's sends.
    number: u64,
    /// The chain state's epoch when it was sent (a reset since makes its ack stale).
    epoch: u64,
}

impl ChainState {
    /// What an append by `writer` does next.
    pub(super) fn plan(&self, writer: u64) -> Plan {
        match (self.tip, &self.in_flight) {
            (None, _) => Plan::Reread,
            (Some(tip), None) => Plan::Send { tip, after: None },
            (Some(tip), Some(newest))
                if newest.writer == writer && self.waiting.load(Ordering::Acquire) == 0 =>
            {
                Plan::Send {
                    tip,
                    after: Some(newest.event_id.clone()),
                }
            }
            (Some(_), Some(_)) => Plan::Wait,
        }
    }

    /// The stored tip was read: chain after it.
    pub(super) fn reread(&mut self, tip: Tip) {
        self.tip = Some(tip);
        self.in_flight = None;
        self.epoch += 1;
    }

    /// Records `link`, sent by `writer` for `event_id` after the current tip; the tip now
    /// predicts it. `last_seen` is the highest stream sequence the process has seen acked.
    pub(super) fn sent(&mut self, link: Link, event_id: &str, writer: u64, last_seen: u64) -> Sent {
        let tip = self.tip.unwrap_or(Tip::EMPTY);
        let pipelined = self.in_flight.is_some();
        // Pipelined: the server stores it only right after its predecessor. Otherwise: after
        // the newest message the process knows of, if no other process wrote since.
        let predicted = if pipelined {
            tip.seq + 1
        } else {
            tip.seq.max(last_seen) + 1
        };
        self.sent += 1;
        self.in_flight = Some(InFlight {
            event_id: event_id.to_string(),
            writer,
            number: self.sent,
        });
        self.tip = Some(link.tip_at(predicted));
        Sent {
            link,
            predicted,
            pipelined,
            number: self.sent,
            epoch: self.epoch,
        }
    }

    /// `sent` was stored (or was a duplicate): the tip follows the stored link when it is
    /// the newest. Returns whether the link landed elsewhere than predicted, which makes the
    /// server refuse every link chained after it.
    pub(super) fn acked(&mut self, sent: &Sent, ack: &PublishAck) -> bool {
        self.resolved.notify_waiters();
        if self.epoch != sent.epoch {
            return false;
        }
        if ack.duplicate {
            // The event was stored before (same event id): our link is not in the stream,
            // and neither will be anything chained after it.
            self.reset();
            return false;
        }
        let newest = self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.number == sent.number);
        if newest {
            self.tip = Some(sent.link.tip_at(ack.sequence));
            self.in_flight = None;
            return false;
        }
        if ack.sequence == sent.predicted {
            return false;
        }
        // The links chained after it expected it at `predicted`: the server refuses them.
        self.tip = Some(sent.link.tip_at(ack.sequence));
        self.in_flight = None;
        self.epoch += 1;
        true
    }

    /// `sent` (or a send that never left, `None`) failed: anything chained after it fails
    /// too, so the next append re-reads the stored tip.
    pub(super) fn failed(&mut self, sent: Option<&Sent>) {
        self.resolved.notify_waiters();
        if sent.is_none_or(|s| s.epoch == self.epoch) {
            self.reset();
        }
    }

    /// Forgets the tip and what is in flight: the next append re-reads the stored tip.
    pub(super) fn reset(&mut self) {
        self.tip = None;
        self.in_flight = None;
        self.epoch += 1;
        self.resolved.notify_waiters();
    }
}

/// A link whose ack is awaited: if the append is dropped before the ack is handled (the
/// caller gave up), the chain is reset in the background, since what was chained after
/// the link may be refused.
#[derive(Debug)]
pub(super) struct Unacked {
    /// The chain, until the ack is handled.
    chain: Option<SharedChain>,
    /// The epoch the link was sent in.
    epoch: u64,
}

impl Unacked {
    /// Guards `sent` on `chain`.
    pub(super) fn new(chain: &SharedChain, sent: &Sent) -> Self {
        Self {
            chain: Some(chain.clone()),
            epoch: sent.epoch,
        }
    }

    /// The ack was handled: nothing to do on drop.
    pub(super) fn handled(mut self) {
        self.chain = None;
    }
}

impl Drop for Unacked {
    fn drop(&mut self) {
        let (Some(chain), Ok(runtime)) = (self.chain.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let epoch = self.epoch;
        runtime.spawn(async move {
            let mut state = chain.lock().await;
            if state.epoch == epoch {
                state.reset();
            }
        });
    }
}

/// An append waiting for its turn on a chain: while any waits, no writer pipelines more
/// links on it, so a waiting writer is not starved by one that keeps the chain busy.
#[derive(Debug)]
pub(super) struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    /// Counts a waiter on `waiting` until dropped.
    pub(super) fn new(waiting: &Arc<AtomicUsize>) -> Self {
        waiting.fetch_add(1, Ordering::AcqRel);
        Self(waiting.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_vault::Vault;

    fn link(tip: &Tip) -> Link {
        Link::next(&Vault::new(1, &[7u8; 32]), "audit.credential.u", tip, b"e").expect("link")
    }

    fn ack(sequence: u64, duplicate: bool) -> PublishAck {
        serde_json::from_value(serde_json::json!({
            "stream": "AUDIT", "seq": sequence, "duplicate": duplicate
        }))
        .expect("ack")
    }

    /// A chain with a read tip at 10 and two links of writer 1 in flight.
    fn two_in_flight() -> (ChainState, Sent, Sent) {
        let mut state = ChainState::default();
        state.reread(Tip {
            seq: 10,
            ..Tip::EMPTY
        });
        let first = state.sent(link(&state.tip.expect("tip")), "a", 1, 10);
        assert!(matches!(state.plan(1), Plan::Send { after: Some(ref id), .. } if id == "a"));
        let second = state.sent(link(&state.tip.expect("tip")), "b", 1, 10);
        (state, first, second)
    }

    #[test]
    fn links_in_flight_predict_consecutive_sequences_for_their_writer_only() {
        let (state, first, second) = two_in_flight();
        assert_eq!((first.predicted, first.pipelined), (11, false));
        assert_eq!((second.predicted, second.pipelined), (12, true));
        assert_eq!(second.link.prev_seq, 11);
        assert_eq!(second.link.prev_hash, first.link.hash);
        // Another connection may not chain after an unacknowledged link.
        assert!(matches!(state.plan(2), Plan::Wait));
        let _waiting = Waiting::new(&state.waiting);
        assert!(
            matches!(state.plan(1), Plan::Wait),
            "a waiter stops pipelining"
        );
    }

    #[test]
    fn the_newest_ack_confirms_the_tip_and_an_older_one_keeps_the_prediction() {
        let (mut state, first, second) = two_in_flight();
        assert!(!state.acked(&first, &ack(11, false)));
        assert_eq!(state.tip.map(|t| t.seq), Some(12), "still predicting");
        assert!(!state.acked(&second, &ack(12, false)));
        assert_eq!(state.tip, Some(second.link.tip_at(12)));
        assert!(matches!(state.plan(2), Plan::Send { after: None, .. }));
    }

    #[test]
    fn a_misprediction_or_a_failure_drops_what_was_chained_after_it() {
        let (mut state, first, second) = two_in_flight();
        // Another process wrote at 11: the first link landed at 12, the second is refused.
        assert!(state.acked(&first, &ack(12, false)));
        assert_eq!(state.tip, Some(first.link.tip_at(12)));
        assert!(state.in_flight.is_none());
        // The second's refusal arrives from an older epoch: it keeps the healed tip.
        state.failed(Some(&second));
        assert_eq!(state.tip, Some(first.link.tip_at(12)));

        let (mut state, first, second) = two_in_flight();
        state.failed(Some(&first));
        assert!(matches!(state.plan(1), Plan::Reread));
        // An ack of the (refused-to-be) successor from before the reset changes nothing.
        assert!(!state.acked(&second, &ack(12, false)));
        assert!(state.tip.is_none());

        let (mut state, first, _) = two_in_flight();
        assert!(!state.acked(&first, &ack(9, true)), "a duplicate");
        assert!(matches!(state.plan(1), Plan::Reread));
    }
}
