//! One request in, exactly one reply out: the `md.request` span, the size and header
//! checks, the verb, and the reply envelope (`{"ok":true,"result":…}` or
//! `{"ok":false,"error":…}` with a `Pinnacle-Error` header), with endpoint statistics.

use async_nats::{HeaderMap, Message};
use pinnacle_common::codec::{self, Encoding};
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::StatusRequest;
use pinnacle_common::subjects::{headers, md};
use pinnacle_common::telemetry;
use serde::{de::DeserializeOwned, Serialize};
use tracing::Instrument as _;

use super::endpoints::endpoint_of;
use super::state::MdService;
use super::verbs;

/// Handles one request and publishes exactly one reply, in an `md.request` server span
/// that continues the caller's `traceparent`, and counts it in the endpoint's statistics.
/// A request without a reply subject, or with one in a protected namespace, is dropped
/// before anything is read or asked of a broker (candles use the platform's Angel One
/// session).
pub async fn handle(service: &MdService, message: Message) {
    if pinnacle_common::serve::reply_subject(&message).is_none() {
        return;
    }
    let span = tracing::info_span!(
        "md.request",
        otel.kind = "server",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %message.subject,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    telemetry::set_parent_from(&span, message.headers.as_ref());
    async {
        let started = std::time::Instant::now();
        let error = dispatch(service, &message).await;
        if let Some(code) = error {
            telemetry::record_failure(&tracing::Span::current(), code.as_str());
        }
        if let Some(endpoint) = endpoint_of(&message.subject) {
            let error = error.map(ErrorCode::as_str);
            service.micro.record(endpoint, started.elapsed(), error);
        }
    }
    .instrument(span)
    .await;
}

/// Answers one request; the error code of the reply, if it was a failure.
async fn dispatch(service: &MdService, message: &Message) -> Option<ErrorCode> {
    let encoding = Encoding::from_headers(message.headers.as_ref());
    if let Err(error) = admit(service, message) {
        return respond::<()>(service, message, encoding, Err(error)).await;
    }
    let payload = &message.payload;
    match message.subject.as_str() {
        md::LAST => {
            let outcome = decode(encoding, payload).and_then(|r| verbs::last(service, &r));
            respond(service, message, encoding, outcome).await
        }
        md::SNAPSHOT => {
            let outcome =
                decode(encoding, payload).and_then(|r| verbs::snapshot(service, &r, encoding));
            respond(service, message, encoding, outcome).await
        }
        md::CANDLES => {
            let outcome = match decode(encoding, payload) {
                Ok(request) => verbs::candles(service, &request).await,
                Err(error) => Err(error),
            };
            respond(service, message, encoding, outcome).await
        }
        md::SYMBOLS_SEARCH => {
            let outcome = decode(encoding, payload).and_then(|r| verbs::search(service, &r));
            respond(service, message, encoding, outcome).await
        }
        md::SYMBOLS_LOOKUP => {
            let outcome = decode(encoding, payload).and_then(|r| verbs::lookup(service, &r));
            respond(service, message, encoding, outcome).await
        }
        md::STATUS => {
            // An empty body means "every exchange", so `nats req md.req.status ''` works.
            let outcome = if payload.is_empty() {
                Ok(StatusRequest::default())
            } else {
                decode(encoding, payload)
            }
            .and_then(|r| verbs::status(service, &r));
            respond(service, message, encoding, outcome).await
        }
        other => {
            let error = ErrorBody::new(
                ErrorCode::UnknownVerb,
                format!(
                    "no market-data verb {:?}",
                    other.chars().take(80).collect::<String>()
                ),
            );
            respond::<()>(service, message, encoding, Err(error)).await
        }
    }
}

/// Refuses a request whose body is over the limit (a snapshot's is larger: it lists up to
/// 1000 symbols) or whose headers are malformed, before its body is read.
fn admit(service: &MdService, message: &Message) -> Result<(), ErrorBody> {
    let limit = if message.subject.as_str() == md::SNAPSHOT {
        service.max_payload.max(crate::snapshot::MAX_REQUEST_BYTES)
    } else {
        service.max_payload
    };
    if message.payload.len() > limit {
        return Err(ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "payload is {} bytes; the limit is {limit}",
                message.payload.len(),
            ),
        ));
    }
    pinnacle_common::codec::check_headers(message.headers.as_ref())
        .map_err(|error| ErrorBody::new(ErrorCode::BadPayload, error.to_string()))
}

fn decode<T: DeserializeOwned>(encoding: Encoding, payload: &[u8]) -> Result<T, ErrorBody> {
    encoding
        .decode_request(payload)
        .map_err(|e| ErrorBody::new(ErrorCode::BadPayload, e.to_string()))
}

/// Publishes the reply; the error code it carried, if it was a failure.
async fn respond<T: Serialize>(
    service: &MdService,
    message: &Message,
    encoding: Encoding,
    outcome: Result<T, ErrorBody>,
) -> Option<ErrorCode> {
    let failed = outcome.as_ref().err().map(|e| e.code);
    let Some(reply_to) = message.reply.clone() else {
        return failed;
    };
    if !pinnacle_common::subjects::is_safe_reply(&reply_to) {
        tracing::warn!(reply_to = %reply_to, "refusing to reply into a protected subject");
        return failed;
    }
    let mut hdrs = HeaderMap::new();
    hdrs.insert(headers::CONTENT_TYPE, encoding.content_type());
    let request_id = pinnacle_common::serve::request_id(message.headers.as_ref());
    hdrs.insert(headers::REQUEST_ID, request_id.as_str());
    if let Err(error) = &outcome {
        tracing::debug!(code = %error.code, message = %error.message, subject = %message.subject, "market-data request failed");
    }
    let (payload, failed) = match codec::encode_reply(encoding, outcome, &mut hdrs) {
        Ok(encoded) => encoded,
        Err(_) => return Some(ErrorCode::Internal),
    };
    // On the connection the request came in on: the server lets a service answer a
    // request only there (`allow_responses` in nats/auth.conf).
    if let Err(error) = service
        .client
        .publish_with_headers(reply_to, hdrs, payload)
        .await
    {
        tracing::warn!(%error, "could not send a market-data reply");
    }
    failed
}
