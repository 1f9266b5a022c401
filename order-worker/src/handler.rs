//! One request, end to end: size and subject checks, authentication against the subject's
//! user and the verb's scope, decoding, then the engine's verb
//! ([`crate::engine::Engine`]), then exactly one reply. The only file that turns NATS
//! messages into engine calls.

use std::time::Duration;

use async_nats::{HeaderMap, Message};
use pinnacle_common::auth::{AuthError, Principal, SCOPE_READ, SCOPE_TRADE};
use pinnacle_common::codec::{self, Encoding};
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{
    EventPage, Funds, Holdings, OrderList, OrderReply, Positions, SquareOffReply, Trades,
};
use pinnacle_common::serve::Admission;
use pinnacle_common::subjects::{self, headers, verbs, OrderVerb};
use pinnacle_common::{metrics, telemetry, tokens};
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;

use crate::engine::deadline;
pub use crate::engine::errors::internal;
use crate::worker::Worker;

/// What a verb answers with.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// One order (place, modify, cancel, get).
    Order(OrderReply),
    /// Several (list).
    Orders(OrderList),
    /// Cash and margin.
    Funds(Funds),
    /// Net positions.
    Positions(Positions),
    /// Delivery holdings.
    Holdings(Holdings),
    /// The trade book.
    Trades(Trades),
    /// What a square-off did.
    SquareOff(SquareOffReply),
    /// A page of the user's order events.
    Events(EventPage),
}

/// An authenticated request's payload, ready for its verb.
#[derive(Debug)]
struct Payload<'a> {
    /// How the payload is encoded.
    encoding: Encoding,
    /// The payload.
    bytes: &'a [u8],
}

impl Payload<'_> {
    /// Decodes the payload, mapping failures to `BAD_PAYLOAD`.
    fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ErrorBody> {
        self.encoding
            .decode_request(self.bytes)
            .map_err(|e| ErrorBody::new(ErrorCode::BadPayload, e.to_string()))
    }

    /// [`Self::decode`], or the default for an empty payload (the optional filters of
    /// `list` and the portfolio verbs).
    fn decode_or_default<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, ErrorBody> {
        if self.bytes.is_empty() {
            Ok(T::default())
        } else {
            self.decode()
        }
    }
}

/// Handles one message and publishes its reply: a request over its sender's share
/// ([`Admission::OverShare`]) is refused `RATE_LIMITED` before anything else is read.
pub async fn handle(worker: &Worker, message: Message, admission: Admission) {
    // Nobody could learn the outcome, or it would go where no reply may: nothing is done,
    // no credential touched.
    if pinnacle_common::serve::reply_subject(&message).is_none() {
        return;
    }
    let encoding = Encoding::from_headers(message.headers.as_ref());
    let request_id = pinnacle_common::serve::request_id(message.headers.as_ref());
    let span = tracing::info_span!(
        "order.request",
        otel.kind = "server",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %message.subject,
        pinnacle.request_id = %request_id,
        pinnacle.client_order_id = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    telemetry::set_parent_from(&span, message.headers.as_ref());
    async {
        let started = std::time::Instant::now();
        let outcome = match admission {
            Admission::Admitted => process(worker, &message, encoding, &request_id).await,
            Admission::OverShare { held, share } => Err(over_share(held, share)),
        };
        if let Err(error) = &outcome {
            telemetry::record_failure(&tracing::Span::current(), error.code.as_str());
            // At debug, as the publisher does: anyone can provoke refusals by the thousand.
            // Each is on the span (`error.type`) and counted in the failure metrics, and an
            // INTERNAL one was logged as an error where it happened.
            tracing::debug!(code = %error.code, message = %error.message, "order request failed");
        }
        let verb = subjects::parse_order(&message.subject).map(|parsed| parsed.verb);
        if let Some(verb) = verb {
            let error = outcome.as_ref().err().map(|e| e.code.as_str());
            worker
                .micro()
                .record(verb.as_str(), started.elapsed(), error);
        }
        let outcome_label = outcome_label(verb, &outcome);
        let failed = outcome.is_err();
        reply(worker, &message, encoding, &request_id, outcome).await;
        let metrics = metrics::metrics();
        let verb = verb.map_or("other", OrderVerb::as_str);
        metrics.order_answered(verb, started.elapsed(), &outcome_label);
        if failed {
            metrics.order_failed(verb, &outcome_label);
        }
    }
    .instrument(span)
    .await;
}

/// The `outcome` label: the order's status (lower case) for `place`, `ok` for any other
/// success, the error code (lower case) for a failure.
fn outcome_label(verb: Option<OrderVerb>, outcome: &Result<Answer, ErrorBody>) -> String {
    match outcome {
        Ok(Answer::Order(order)) if verb == Some(OrderVerb::Place) => {
            order.status.as_str().to_ascii_lowercase()
        }
        Ok(_) => "ok".to_string(),
        Err(error) => metrics::outcome_label(error.code),
    }
}

async fn reply(
    worker: &Worker,
    message: &Message,
    encoding: Encoding,
    request_id: &str,
    outcome: Result<Answer, ErrorBody>,
) {
    let Some(reply_to) = message.reply.clone() else {
        tracing::warn!("order request without a reply subject; nothing to answer");
        return;
    };
    let mut hdrs = HeaderMap::new();
    hdrs.insert(headers::CONTENT_TYPE, encoding.content_type());
    hdrs.insert(headers::REQUEST_ID, request_id);
    let payload = match codec::encode_reply(encoding, outcome, &mut hdrs) {
        Ok((payload, _)) => payload,
        Err(error) => {
            tracing::error!(%error, "could not encode even an INTERNAL reply");
            return;
        }
    };
    // On the connection the request came in on: the server lets a service answer a
    // request only there (`allow_responses` in nats/auth.conf).
    if let Err(error) = worker
        .intake()
        .publish_with_headers(reply_to, hdrs, payload)
        .await
    {
        tracing::warn!(%error, "could not publish reply");
    }
}

/// The caller's `Pinnacle-Deadline` (ms since the epoch) as an instant on this machine's
/// clock, `None` without one. A deadline already passed is refused here: its caller has
/// given up, so it is answered at once, before the token is checked or any credential
/// touched. A malformed deadline, or more than one (in any spelling of the name), is
/// `INVALID_REQUEST`. One still ahead bounds the request up to its first credential access
/// ([`deadline::run`]).
pub fn check_deadline(headers: Option<&HeaderMap>) -> Result<Option<Instant>, ErrorBody> {
    let text = match codec::header_values(headers, headers::DEADLINE).as_slice() {
        [] => return Ok(None),
        [text] => *text,
        _ => {
            return Err(ErrorBody::new(
                ErrorCode::InvalidRequest,
                "send at most one Pinnacle-Deadline header",
            ))
        }
    };
    let deadline: i64 = text.trim().parse().map_err(|_| {
        ErrorBody::new(
            ErrorCode::InvalidRequest,
            "Pinnacle-Deadline must be milliseconds since the Unix epoch",
        )
    })?;
    let now = chrono::Utc::now().timestamp_millis();
    match u64::try_from(deadline.saturating_sub(now)) {
        // Beyond what the clock can hold (`i64::MAX`): as good as none.
        Ok(left) => Ok(Instant::now().checked_add(Duration::from_millis(left))),
        Err(_) => Err(ErrorBody::new(
            ErrorCode::DeadlineExceeded,
            format!(
                "the request's deadline passed {} ms before it was taken",
                now.saturating_sub(deadline)
            ),
        )),
    }
}

/// The bearer token of the request's one `Authorization` header (`None` if it has none).
/// Two of them (in any spelling of the name), a comma-joined value or odd whitespace is
/// `UNAUTHENTICATED`, before any token is looked up.
pub fn bearer_token(headers: Option<&HeaderMap>) -> Result<Option<&str>, ErrorBody> {
    let refuse = |message: &str| ErrorBody::new(ErrorCode::Unauthenticated, message);
    match codec::header_values(headers, headers::AUTHORIZATION).as_slice() {
        [] => Ok(None),
        [value] => tokens::from_bearer(value)
            .map(Some)
            .ok_or_else(|| refuse("expected Authorization: Bearer <token>")),
        _ => Err(refuse("send exactly one Authorization header")),
    }
}

async fn process(
    worker: &Worker,
    message: &Message,
    encoding: Encoding,
    request_id: &str,
) -> Result<Answer, ErrorBody> {
    if message.payload.len() > worker.settings().max_payload {
        return Err(ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "payload is {} bytes; the limit is {}",
                message.payload.len(),
                worker.settings().max_payload
            ),
        ));
    }
    codec::check_headers(message.headers.as_ref())
        .map_err(|e| ErrorBody::new(ErrorCode::BadPayload, e.to_string()))?;
    let deadline = check_deadline(message.headers.as_ref())?;
    let subject = subjects::parse_order(&message.subject).ok_or_else(unknown_verb)?;
    let scope = if subject.verb.is_trading() {
        SCOPE_TRADE
    } else {
        SCOPE_READ
    };
    let payload = Payload {
        encoding,
        bytes: &message.payload,
    };
    deadline::run(deadline, async {
        let principal = authenticate(worker, message.headers.as_ref(), &subject, scope).await?;
        dispatch(worker, subject.verb, &principal, request_id, &payload).await
    })
    .await
}

/// The refusal of a request whose sender already held `held` of this worker's requests
/// while it was at least half full: retryable, and nothing was read or touched.
fn over_share(held: usize, share: usize) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::RateLimited,
        format!(
            "too many requests in flight: this worker, at least half full, already holds \
             {held} of yours (at most {share} while it is); wait for replies before sending \
             more, then resend"
        ),
    )
}

/// The refusal of a subject that names no known verb.
fn unknown_verb() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownVerb,
        format!(
            "subject must be orders.<user_id>.<verb> with a verb of: {}",
            verbs::ALL.join(", ")
        ),
    )
}

/// Who is asking, and may they act on this subject with this scope?
async fn authenticate(
    worker: &Worker,
    headers: Option<&HeaderMap>,
    subject: &subjects::OrderSubject<'_>,
    scope: &str,
) -> Result<Principal, ErrorBody> {
    let bearer = bearer_token(headers)?;
    let principal = worker
        .tokens()
        .authenticate(worker.db(), worker.vault().token_pepper(), bearer)
        .await
        .map_err(|e| match e {
            AuthError::Store(db) => internal("checking the API token", db),
            other => ErrorBody::new(ErrorCode::Unauthenticated, other.to_string()),
        })?;
    // Byte for byte against the canonical spelling: `orders.~62….place` names nobody.
    if !subject.is_for(&principal.user_id) {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            "the API token does not belong to the user in the subject",
        ));
    }
    if !principal.has_scope(scope) {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            format!("the API token lacks the {scope} scope"),
        ));
    }
    Ok(principal)
}

/// Runs `verb` on the engine with the decoded payload.
async fn dispatch(
    worker: &Worker,
    verb: OrderVerb,
    principal: &Principal,
    request_id: &str,
    payload: &Payload<'_>,
) -> Result<Answer, ErrorBody> {
    let engine = worker.engine();
    let user_id = principal.user_id.as_str();
    match verb {
        OrderVerb::Place => {
            let order = payload.decode()?;
            let answer = engine.place(principal, request_id, order).await;
            answer.map(Answer::Order)
        }
        OrderVerb::Modify => {
            let change = payload.decode()?;
            let answer = engine.modify(principal, request_id, &change).await;
            answer.map(Answer::Order)
        }
        OrderVerb::Cancel => {
            let target = payload.decode()?;
            let answer = engine.cancel(principal, request_id, &target).await;
            answer.map(Answer::Order)
        }
        OrderVerb::Get => {
            let target = payload.decode()?;
            let answer = engine.get(user_id, &target).await;
            answer.map(Answer::Order)
        }
        OrderVerb::List => {
            let filter = payload.decode_or_default()?;
            let answer = engine.list(user_id, &filter).await;
            answer.map(Answer::Orders)
        }
        OrderVerb::Funds => {
            let query = payload.decode_or_default()?;
            let answer = engine.funds(principal, request_id, &query).await;
            answer.map(Answer::Funds)
        }
        OrderVerb::Positions => {
            let query = payload.decode_or_default()?;
            let answer = engine.positions(principal, request_id, &query).await;
            answer.map(Answer::Positions)
        }
        OrderVerb::Holdings => {
            let query = payload.decode_or_default()?;
            let answer = engine.holdings(principal, request_id, &query).await;
            answer.map(Answer::Holdings)
        }
        OrderVerb::Trades => {
            let query = payload.decode_or_default()?;
            let answer = engine.trades(principal, request_id, &query).await;
            answer.map(Answer::Trades)
        }
        OrderVerb::SquareOff => {
            let request = payload.decode_or_default()?;
            let answer = engine
                .square_off_account(principal, request_id, &request)
                .await;
            answer.map(Answer::SquareOff)
        }
        OrderVerb::Events => {
            let request = payload.decode_or_default()?;
            let answer = worker.history().page(user_id, &request).await;
            answer.map(Answer::Events)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_deadline(value: &str) -> HeaderMap {
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::DEADLINE, value);
        hdrs
    }

    #[test]
    fn a_deadline_is_read_onto_this_machines_clock_and_never_panics() {
        let now = chrono::Utc::now().timestamp_millis();
        let ahead = check_deadline(Some(&with_deadline(&(now + 2_000).to_string())))
            .expect("in time")
            .expect("a deadline");
        let left = ahead - Instant::now();
        assert!(
            left > Duration::from_millis(1_500) && left <= Duration::from_millis(2_000),
            "{left:?}"
        );
        assert_eq!(check_deadline(None), Ok(None));
        let unbounded = check_deadline(Some(&with_deadline(&i64::MAX.to_string())));
        assert!(unbounded.is_ok(), "{unbounded:?}");
        for past in [(now - 1).to_string(), "-1".into(), i64::MIN.to_string()] {
            let refused = check_deadline(Some(&with_deadline(&past))).expect_err(&past);
            assert_eq!(refused.code, ErrorCode::DeadlineExceeded, "{past}");
        }
        for malformed in ["tomorrow", "1.5", "", "99999999999999999999"] {
            let refused = check_deadline(Some(&with_deadline(malformed))).expect_err(malformed);
            assert_eq!(refused.code, ErrorCode::InvalidRequest, "{malformed:?}");
        }
        // Two deadlines, whichever comes first and however the second is spelt: refused,
        // not the first taken silently.
        let (future, past) = ((now + 60_000).to_string(), (now - 1).to_string());
        for (first, second) in [(&future, &past), (&past, &future)] {
            let mut hdrs = with_deadline(first);
            hdrs.append("pinnacle-deadline", second.as_str());
            let refused = check_deadline(Some(&hdrs)).expect_err("two deadlines");
            assert_eq!(refused.code, ErrorCode::InvalidRequest);
        }
    }
}
