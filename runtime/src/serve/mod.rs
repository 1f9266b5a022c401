//! Serving request-reply subjects: bounded concurrency, backpressure by capacity, and a
//! graceful drain that answers every request already received before returning.
//!
//! # Two ways to serve
//! - [`serve_requests`]: one plain subscription, a permit taken before a message is read.
//!   The client library still buffers what the server pushes, so this bounds the work
//!   started, not the requests held. For services whose requests are cheap (market data).
//! - [`Member`]: a *capacity-bounded queue-group member*. NATS core queue groups are
//!   push-based (the server picks a member at random per message) and async-nats drops
//!   what overflows a full subscription buffer (a slow consumer: silent loss), so neither
//!   a permit nor a small buffer stops a saturated member from being sent requests its
//!   idle peers could serve. A member instead subscribes in *grants*: each grant is a
//!   queue subscription followed at once by `UNSUB <sid> <n>`, and the server delivers at
//!   most `n` messages on it, then removes it from the group by itself (nats-server counts
//!   deliveries under the connection's lock and passes a message over-max to another
//!   member). async-nats ends the grant's stream after exactly those `n` messages, so
//!   nothing the server sent is dropped. A member opens grants only for room it has
//!   (held + outstanding grants ≤ [`Capacity::bound`]), and opens the next one as soon as
//!   that leaves [`Capacity::min_grant`] free, before the current ones run out. When its
//!   grants run out with less room than that, it has *left* the group: the server routes
//!   new requests only to members with capacity (or, with none, answers the requester
//!   "no responders" at once). It *rejoins* when it has drained to the low-water mark.
//!   Given who sent each request ([`Member::with_senders`]), a member at least half full
//!   refuses at once, through its handler ([`Admission::OverShare`]), a request whose
//!   sender already holds its share, so one sender's flood leaves room for the others.
//!   docs/ARCHITECTURE.md ("Readiness and backpressure") has the argument and the limits.
//!
//! # Layout
//! - `serve/requests.rs`: [`serve_requests`].
//! - `serve/member.rs`: [`Member`] and its [`QueueGroup`]: the grants and the serving loop.
//! - `serve/pressure.rs`: what a member may hold ([`Capacity`]) and what it did
//!   ([`Pressure`]).
//! - `serve/drain.rs`: the bounded drain at shutdown both share ([`DRAIN_WAIT`]).
//! - here: [`request_id`], the request id a reply carries, and [`reply_subject`], where
//!   (and whether) to answer, for every service.

mod drain;
mod member;
mod pressure;
mod requests;

pub use drain::DRAIN_WAIT;
pub use member::{Admission, GrantError, Member, QueueGroup, SenderOf};
pub use pressure::{Capacity, Pressure};
pub use requests::serve_requests;

/// The `Pinnacle-Request-Id` a service works under and echoes on its reply: the caller's
/// when it is a plain token ([`pinnacle_protocol::codec::request_id`]), otherwise a fresh
/// UUIDv7, so every reply carries one and a hostile id never reaches a log.
pub fn request_id(headers: Option<&async_nats::HeaderMap>) -> String {
    pinnacle_protocol::codec::request_id(headers)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// At most one warning a minute for requests whose reply subject is protected: anyone
/// who may publish on a service's subject can send them by the thousand
/// (docs/ARCHITECTURE.md, "Hostile headers").
static PROTECTED_REPLY: crate::throttle::Throttle =
    crate::throttle::Throttle::new(std::time::Duration::from_secs(60));

/// Where to answer `message`, or `None` when it must be dropped before anything is read
/// or touched: it has no reply subject (nobody could learn the outcome), or one in a
/// namespace Pinnacle never publishes a reply into
/// ([`pinnacle_protocol::subjects::is_safe_reply`]).
pub fn reply_subject(message: &async_nats::Message) -> Option<&async_nats::Subject> {
    match &message.reply {
        None => {
            tracing::debug!(subject = %message.subject, "ignoring a request without a reply subject");
            None
        }
        Some(reply_to) if !pinnacle_protocol::subjects::is_safe_reply(reply_to) => {
            match PROTECTED_REPLY.next(std::time::Instant::now()) {
                Some(more) => tracing::warn!(
                    subject = %message.subject,
                    reply_to = %reply_to,
                    more,
                    "ignoring a request whose reply subject is protected ({more} more since \
                     the last warning)"
                ),
                None => {
                    tracing::debug!(subject = %message.subject, reply_to = %reply_to, "ignoring a request whose reply subject is protected")
                }
            }
            None
        }
        Some(reply_to) => Some(reply_to),
    }
}
