//! The `events` verb: a page of the user's own order events, read from the `ORDER_EVENTS`
//! stream by the order worker on the user's behalf.
//!
//! Traders never create JetStream consumers themselves: a push consumer may deliver to any
//! subject its creator names, whatever that creator may publish (nats-server does not check
//! the deliver subject), so a trader's consumer could write into other subjects, the audit
//! trail among them. The worker reads the stream instead and answers in pages, each
//! event with its stream sequence, so a client resumes exactly where it stopped.

use serde::{Deserialize, Serialize};

use super::order::OrderEvent;
use crate::error::{ErrorBody, ErrorCode};

/// Events per page when the request names no `limit`.
pub const DEFAULT_EVENTS_PAGE: u32 = 100;
/// The most events one page may hold.
pub const MAX_EVENTS_PAGE: u32 = 500;
/// The latest `since_ms` taken, 2262-04-11T23:47:16.854Z: JetStream keeps times in
/// nanoseconds in a signed 64-bit number, and reads a later start time as none at all.
pub const MAX_SINCE_MS: i64 = i64::MAX / 1_000_000;
/// The largest `after` taken: stream sequences are signed 64-bit numbers on the wire.
pub const MAX_AFTER: u64 = i64::MAX as u64;
/// The longest `stream` taken: what [`EventPage::stream`] holds is far shorter.
pub const MAX_STREAM_LEN: usize = 64;

/// A request for one page of the user's order events, oldest first. With neither `after`
/// nor `since_ms`, from the oldest event the stream keeps (seven days).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// Only events stored after this stream sequence: the `last_sequence` of the page
    /// before (0: from the first).
    #[serde(default)]
    pub after: Option<u64>,
    /// Only events stored at or after this time, milliseconds since the Unix epoch. Not
    /// together with `after`.
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// At most this many events (1 to [`MAX_EVENTS_PAGE`], default
    /// [`DEFAULT_EVENTS_PAGE`]).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `stream` of the page `after` came from: when the stream is no longer that
    /// one (it was re-created, its sequences starting again at 1), the page is read from
    /// the new stream's first event and marked `rewound`. Only with `after`.
    #[serde(default)]
    pub stream: Option<String>,
}

/// Where a page starts, once the request is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsStart {
    /// After this stream sequence (0: from the first event kept), counted in the stream
    /// named, when one is.
    After(u64, Option<String>),
    /// At this time, milliseconds since the Unix epoch.
    Since(i64),
}

impl EventsRequest {
    /// Where the page starts and how many events it may hold, or `INVALID_REQUEST`.
    pub fn validate(&self) -> Result<(EventsStart, u32), ErrorBody> {
        let invalid = |m: String| Err(ErrorBody::new(ErrorCode::InvalidRequest, m));
        let limit = self.limit.unwrap_or(DEFAULT_EVENTS_PAGE);
        if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
            return invalid(format!("limit must be 1 to {MAX_EVENTS_PAGE}, got {limit}"));
        }
        if let Some(stream) = &self.stream {
            if self.after.is_none() {
                return invalid("stream goes with after, the position it counts".into());
            }
            if stream.is_empty()
                || stream.len() > MAX_STREAM_LEN
                || !stream.bytes().all(|b| b.is_ascii_graphic())
            {
                return invalid(format!(
                    "stream must be the `stream` of an earlier page (1 to {MAX_STREAM_LEN} \
                     visible ASCII characters)"
                ));
            }
        }
        let start = match (self.after, self.since_ms) {
            (Some(_), Some(_)) => return invalid("send after or since_ms, not both".into()),
            (_, Some(since)) if !(0..=MAX_SINCE_MS).contains(&since) => {
                return invalid(format!(
                    "since_ms must be milliseconds since the Unix epoch, 0 to {MAX_SINCE_MS}, got {since}"
                ))
            }
            (_, Some(since)) => EventsStart::Since(since),
            (Some(after), None) if after > MAX_AFTER => {
                return invalid(format!("after must be 0 to {MAX_AFTER}, got {after}"))
            }
            (after, None) => EventsStart::After(after.unwrap_or(0), self.stream.clone()),
        };
        Ok((start, limit))
    }
}

/// One stored order event and where the stream holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event's sequence in `ORDER_EVENTS`: increasing, not contiguous (the stream
    /// holds every user's events).
    pub sequence: u64,
    /// The W3C trace context the event was published with, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event, as published on `events.orders.<user_id>`.
    pub event: OrderEvent,
}

/// The reply to `events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// The events, oldest first.
    pub events: Vec<StoredEvent>,
    /// Send this as `after` to read on: the last event's sequence, or the request's start
    /// when the page is empty.
    pub last_sequence: u64,
    /// Events stored after this page when it was read (0: caught up).
    pub pending: u64,
    /// Which `ORDER_EVENTS` the sequences count in (its creation time, in nanoseconds
    /// since the Unix epoch, as text; opaque to clients): send it back as `stream` with
    /// `after`.
    pub stream: String,
    /// The stream the request's `after` counted in is gone: the request named another
    /// `stream`, or (without one) its `after` lay beyond the stream's last sequence. The
    /// stream was re-created since (its sequences started again at 1), so this page is
    /// read from the new stream's first event instead, and `last_sequence` is a position
    /// in the new stream.
    #[serde(default)]
    pub rewound: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(after: Option<u64>, since_ms: Option<i64>, limit: Option<u32>) -> EventsRequest {
        EventsRequest {
            after,
            since_ms,
            limit,
            stream: None,
        }
    }

    fn resuming(after: u64, stream: &str) -> EventsRequest {
        EventsRequest {
            stream: Some(stream.to_string()),
            ..request(Some(after), None, None)
        }
    }

    #[test]
    fn a_request_is_checked_into_a_start_and_a_limit() {
        assert_eq!(
            EventsRequest::default().validate(),
            Ok((EventsStart::After(0, None), DEFAULT_EVENTS_PAGE))
        );
        assert_eq!(
            request(Some(7), None, Some(MAX_EVENTS_PAGE)).validate(),
            Ok((EventsStart::After(7, None), MAX_EVENTS_PAGE))
        );
        assert_eq!(
            resuming(7, "1796623200123456789").validate(),
            Ok((
                EventsStart::After(7, Some("1796623200123456789".into())),
                DEFAULT_EVENTS_PAGE
            ))
        );
        assert_eq!(
            request(None, Some(MAX_SINCE_MS), Some(1)).validate(),
            Ok((EventsStart::Since(MAX_SINCE_MS), 1))
        );
        for refused in [
            request(Some(1), Some(1), None),
            request(None, None, Some(0)),
            request(None, None, Some(MAX_EVENTS_PAGE + 1)),
            request(None, Some(-1), None),
            request(None, Some(MAX_SINCE_MS + 1), None),
            request(None, Some(i64::MIN), None),
            request(Some(MAX_AFTER + 1), None, None),
            EventsRequest {
                stream: Some("1".into()),
                ..request(None, Some(1), None)
            },
            EventsRequest {
                stream: Some("1".into()),
                ..request(None, None, None)
            },
            resuming(1, ""),
            resuming(1, "a b"),
            resuming(1, &"9".repeat(MAX_STREAM_LEN + 1)),
        ] {
            let error = refused.validate().expect_err("refused");
            assert_eq!(error.code, ErrorCode::InvalidRequest, "{refused:?}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_rather_than_ignored() {
        let decoded: Result<EventsRequest, _> =
            serde_json::from_str(r#"{"deliver_subject": "audit.x"}"#);
        assert!(decoded.is_err());
    }
}
