//! The AUDIT stream's own guarantees, as `pinnacle audit verify` checks them from the
//! stream's info: no limit that discards history (`max_msgs`, `max_bytes`, `max_age`,
//! `max_msgs_per_subject`), message delete, purge, rollup and per-message TTL refused, and a
//! history that starts at sequence 1 with no gap.
//!
//! These catch a shortened stream even where no checkpoint does: `$JS.API.STREAM.UPDATE`
//! with `max_msgs: 10` discards the oldest messages at once, which leaves the first sequence
//! above 1 for as long as the stream exists, even after the limit is removed again.

use async_nats::jetstream::stream;
use serde::Serialize;

/// What is wrong with the stream itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamProblemKind {
    /// The stream does not exist.
    Missing,
    /// A limit that discards old messages is set.
    Limit,
    /// `deny_delete` is off: single messages can be deleted.
    DeleteAllowed,
    /// `deny_purge` is off: the stream can be purged.
    PurgeAllowed,
    /// `allow_rollup_hdrs` is on: a rollup message replaces earlier ones.
    RollupAllowed,
    /// `allow_msg_ttl` is on: messages can carry their own expiry.
    TtlAllowed,
    /// Messages are gone: the first sequence is not 1, or there are gaps.
    HistoryDiscarded,
}

/// One problem with the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamProblem {
    /// What is wrong.
    pub kind: StreamProblemKind,
    /// A human explanation.
    pub detail: String,
}

impl StreamProblem {
    fn new(kind: StreamProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The stream is missing.
    pub fn missing(name: &str) -> Self {
        Self::new(
            StreamProblemKind::Missing,
            format!(
                "stream {name} does not exist: its history is lost (restore it: docs/AUDIT.md, \"When AUDIT is missing\")"
            ),
        )
    }
}

/// Checks a stream's config and state; empty when it keeps its history intact.
pub fn check(config: &stream::Config, state: &stream::State) -> Vec<StreamProblem> {
    let mut out = limit_problems(config);
    out.extend(flag_problems(config));
    out.extend(history_problem(state));
    out
}

/// Every limit that discards old messages.
fn limit_problems(config: &stream::Config) -> Vec<StreamProblem> {
    let limits = [
        (
            "max_msgs",
            config.max_messages > 0,
            config.max_messages.to_string(),
        ),
        (
            "max_bytes",
            config.max_bytes > 0,
            config.max_bytes.to_string(),
        ),
        (
            "max_age",
            !config.max_age.is_zero(),
            format!("{:?}", config.max_age),
        ),
        (
            "max_msgs_per_subject",
            config.max_messages_per_subject > 0,
            config.max_messages_per_subject.to_string(),
        ),
    ];
    limits
        .into_iter()
        .filter(|(_, set, _)| *set)
        .map(|(name, _, value)| {
            StreamProblem::new(
                StreamProblemKind::Limit,
                format!("{name} is {value}: the stream discards history (it must be unlimited)"),
            )
        })
        .collect()
}

/// Every flag that lets a message be removed or replaced: delete, purge, rollup, TTL.
fn flag_problems(config: &stream::Config) -> Vec<StreamProblem> {
    use StreamProblemKind as K;
    let flags = [
        (
            !config.deny_delete,
            K::DeleteAllowed,
            "deny_delete is off: single messages can be deleted",
        ),
        (
            !config.deny_purge,
            K::PurgeAllowed,
            "deny_purge is off: the stream can be purged",
        ),
        (
            config.allow_rollup,
            K::RollupAllowed,
            "allow_rollup_hdrs is on: a rollup message would replace earlier ones",
        ),
        (
            config.allow_message_ttl,
            K::TtlAllowed,
            "allow_msg_ttl is on: messages can expire",
        ),
    ];
    flags
        .into_iter()
        .filter(|(set, _, _)| *set)
        .map(|(_, kind, detail)| StreamProblem::new(kind, detail))
        .collect()
}

/// Messages gone from the history: a first sequence above 1, or fewer messages than
/// sequences.
fn history_problem(state: &stream::State) -> Option<StreamProblem> {
    if state.last_sequence > 0 && state.first_sequence != 1 {
        Some(StreamProblem::new(
            StreamProblemKind::HistoryDiscarded,
            format!(
                "the stream's first sequence is {} of {}: sequences 1..={} are gone (a limit, a purge or a re-created stream)",
                state.first_sequence,
                state.last_sequence,
                state.first_sequence.saturating_sub(1)
            ),
        ))
    } else if state.last_sequence > 0 && state.messages != state.last_sequence {
        Some(StreamProblem::new(
            StreamProblemKind::HistoryDiscarded,
            format!(
                "{} of sequences 1..={} are gone (deleted messages)",
                state.last_sequence.saturating_sub(state.messages),
                state.last_sequence
            ),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(first: u64, last: u64, messages: u64) -> stream::State {
        serde_json::from_value(serde_json::json!({
            "messages": messages, "bytes": 0, "first_seq": first,
            "first_ts": "2026-01-01T00:00:00Z", "last_seq": last,
            "last_ts": "2026-01-01T00:00:00Z", "consumer_count": 0
        }))
        .expect("state")
    }

    fn kinds(problems: &[StreamProblem]) -> Vec<StreamProblemKind> {
        problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn the_shipped_definition_is_clean_and_every_weakening_is_reported() {
        let good = crate::stream::stream_config(3);
        assert!(check(&good, &state(1, 106, 106)).is_empty());
        assert!(
            check(&good, &state(0, 0, 0)).is_empty(),
            "an empty new stream"
        );
        let weakened = stream::Config {
            max_messages: 10,
            max_bytes: 1 << 20,
            max_age: std::time::Duration::from_secs(3600),
            max_messages_per_subject: 5,
            deny_delete: false,
            deny_purge: false,
            allow_rollup: true,
            allow_message_ttl: true,
            ..good.clone()
        };
        use StreamProblemKind as K;
        assert_eq!(
            kinds(&check(&weakened, &state(1, 5, 5))),
            [
                K::Limit,
                K::Limit,
                K::Limit,
                K::Limit,
                K::DeleteAllowed,
                K::PurgeAllowed,
                K::RollupAllowed,
                K::TtlAllowed
            ]
        );
        // 106 → 11 messages by max_msgs: the first sequence says so even without limits.
        let shortened = check(&good, &state(96, 106, 11));
        assert_eq!(kinds(&shortened), [K::HistoryDiscarded]);
        assert!(shortened[0].detail.contains("1..=95"), "{shortened:?}");
        // Everything expired or purged; and a gap inside.
        assert_eq!(
            kinds(&check(&good, &state(107, 106, 0))),
            [K::HistoryDiscarded]
        );
        assert_eq!(
            kinds(&check(&good, &state(1, 106, 104))),
            [K::HistoryDiscarded]
        );
    }
}
