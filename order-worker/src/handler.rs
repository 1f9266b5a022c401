//! One order request, end to end.
//!
//! authenticate (token ↔ subject user) → decode and validate → idempotent replay →
//! choose the account → **audit, wait for the ack** → decrypt → insert (unique key) →
//! broker → persist → reply. Every path ends in exactly one reply.

use async_nats::{HeaderMap, Message};
use pinnacle_common::auth::{self, AuthError, SCOPE_TRADE};
use pinnacle_common::codec::{self, Encoding};
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{AuditEvent, AuditOutcome, OrderReply, OrderRequest, Reply};
use pinnacle_common::subjects::{self, headers, verbs};
use pinnacle_common::{telemetry, tokens};
use tracing::Instrument;

use crate::credentials::{self, AccountError};
use crate::service::Worker;
use crate::store::{self, Inserted};

/// The longest `Pinnacle-Request-Id` kept; a longer or empty one is replaced by a UUIDv7.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Handles one message and publishes its reply.
pub async fn handle(worker: &Worker, message: Message) {
    let encoding = Encoding::from_headers(message.headers.as_ref());
    let request_id = codec::header(message.headers.as_ref(), headers::REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!(
        "order.request",
        otel.kind = "server",
        messaging.system = "nats",
        messaging.operation = "process",
        messaging.destination.name = %message.subject,
        request_id = %request_id,
        client_order_id = tracing::field::Empty,
        error.code = tracing::field::Empty,
    );
    telemetry::set_parent_from(&span, message.headers.as_ref());
    async {
        let outcome = process(worker, &message, &request_id).await;
        if let Err(error) = &outcome {
            tracing::Span::current().record("error.code", error.code.as_str());
            tracing::info!(code = %error.code, message = %error.message, "order request failed");
        }
        reply(worker, &message, encoding, &request_id, outcome).await;
    }
    .instrument(span)
    .await;
}

async fn reply(
    worker: &Worker,
    message: &Message,
    encoding: Encoding,
    request_id: &str,
    outcome: Result<OrderReply, ErrorBody>,
) {
    let Some(reply_to) = message.reply.clone() else {
        tracing::warn!("order request without a reply subject; nothing to answer");
        return;
    };
    let mut hdrs = HeaderMap::new();
    hdrs.insert(headers::CONTENT_TYPE, encoding.content_type());
    hdrs.insert(headers::REQUEST_ID, request_id);
    let body = match outcome {
        Ok(order) => Reply::success(order),
        Err(error) => {
            hdrs.insert(headers::ERROR_CODE, error.code.as_str());
            Reply::failure(error)
        }
    };
    let payload = match encoding.encode(&body) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(%error, "could not encode reply");
            return;
        }
    };
    if let Err(error) = worker
        .client
        .publish_with_headers(reply_to, hdrs, payload)
        .await
    {
        tracing::warn!(%error, "could not publish reply");
    }
}

fn internal(context: &str, error: impl std::fmt::Display) -> ErrorBody {
    tracing::error!(%error, context, "internal error");
    ErrorBody::new(
        ErrorCode::Internal,
        format!("internal error while {context}"),
    )
}

async fn process(
    worker: &Worker,
    message: &Message,
    request_id: &str,
) -> Result<OrderReply, ErrorBody> {
    if message.payload.len() > worker.settings.max_payload {
        return Err(ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "payload is {} bytes; the limit is {}",
                message.payload.len(),
                worker.settings.max_payload
            ),
        ));
    }
    let (subject_user, verb) = subjects::parse_order(&message.subject).ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::UnknownVerb,
            "subject must be orders.<user_id>.<verb>",
        )
    })?;
    if verb != verbs::PLACE {
        return Err(ErrorBody::new(
            ErrorCode::UnknownVerb,
            format!("unknown verb {verb:?}; served: {}", verbs::PLACE),
        ));
    }

    // Who is asking, and may they act on this subject?
    let bearer = codec::header(message.headers.as_ref(), headers::AUTHORIZATION)
        .and_then(tokens::from_bearer);
    let principal = auth::authenticate(&worker.db, worker.vault.token_pepper(), bearer)
        .await
        .map_err(|e| match e {
            AuthError::Store(db) => internal("checking the API token", db),
            other => ErrorBody::new(ErrorCode::Unauthenticated, other.to_string()),
        })?;
    if principal.user_id != subject_user {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            "the API token does not belong to the user in the subject",
        ));
    }
    if !principal.has_scope(SCOPE_TRADE) {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            "the API token lacks the trade scope",
        ));
    }

    let encoding = Encoding::from_headers(message.headers.as_ref());
    let request: OrderRequest = encoding
        .decode(&message.payload)
        .map_err(|e| ErrorBody::new(ErrorCode::BadPayload, e.to_string()))?;
    request.validate(worker.settings.max_quantity)?;
    tracing::Span::current().record("client_order_id", request.client_order_id.as_str());

    // A retry of a known order is answered from the database, without touching credentials.
    if let Some(existing) = store::find(&worker.db, &principal.user_id, &request.client_order_id)
        .await
        .map_err(|e| internal("looking up the order", e))?
    {
        return store::reply_for(&existing);
    }

    let account =
        credentials::load_account(&worker.db, &principal.user_id, request.account.as_deref())
            .await
            .map_err(|e| match e {
                AccountError::NotFound(m) => ErrorBody::new(ErrorCode::NoBrokerAccount, m),
                AccountError::Db(db) => internal("loading the broker account", db),
            })?;
    let broker = worker.brokers.get(account.broker.as_str()).ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::BrokerRejected,
            format!("broker {:?} is not enabled on this worker", account.broker),
        )
    })?;

    // Audit before access: the event must be stored before anything is decrypted.
    let mut event = AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        ts_ms: chrono::Utc::now().timestamp_millis(),
        actor: principal.user_id.clone(),
        token_id: Some(principal.token_id.clone()),
        user_id: account.user_id.clone(),
        broker_account_id: account.id.clone(),
        fields: account.fields_set().into_iter().map(String::from).collect(),
        purpose: "order.place".into(),
        request_id: request_id.to_string(),
        trace_id: telemetry::current_trace_id(),
        outcome: AuditOutcome::Authorized,
    };
    worker.audit.record(&event).await.map_err(|e| {
        tracing::warn!(error = %e, "audit unavailable; refusing the order");
        ErrorBody::new(
            ErrorCode::AuditUnavailable,
            "the audit log is unavailable, so credentials were not accessed",
        )
    })?;
    let creds = match credentials::decrypt(&worker.vault, &account) {
        Ok(creds) => creds,
        Err(error) => {
            event.event_id = uuid::Uuid::now_v7().to_string();
            event.outcome = AuditOutcome::DecryptFailed;
            if let Err(audit_error) = worker.audit.record(&event).await {
                tracing::warn!(error = %audit_error, "could not audit the failed decrypt");
            }
            return Err(ErrorBody::new(
                ErrorCode::CredentialUnavailable,
                error.to_string(),
            ));
        }
    };

    let order = match store::insert_new(&worker.db, &principal.user_id, &account.id, &request)
        .await
        .map_err(|e| internal("storing the order", e))?
    {
        Inserted::Existing(existing) => return store::reply_for(&existing),
        Inserted::Created(order) => order,
    };
    let placed = broker
        .place_order(&creds, &order.id, &request)
        .instrument(tracing::info_span!(
            "broker.place_order",
            broker = broker.name()
        ))
        .await;
    drop(creds);
    let stored = match placed {
        Ok(outcome) => store::record_outcome(&worker.db, order, &outcome).await,
        Err(error) => {
            let body = broker_error(&error);
            store::record_rejection(&worker.db, order, &body).await
        }
    }
    .map_err(|e| internal("recording the broker outcome", e))?;
    tracing::info!(order_id = %stored.id, status = %stored.status, "order handled");
    store::reply_for(&stored)
}

fn broker_error(error: &pinnacle_common::broker::BrokerError) -> ErrorBody {
    use pinnacle_common::broker::BrokerError as E;
    let code = match error {
        E::UnknownSymbol { .. } => ErrorCode::UnknownSymbol,
        E::Rejected(_) | E::Credentials(_) | E::Unavailable(_) => ErrorCode::BrokerRejected,
    };
    ErrorBody::new(code, error.to_string())
}
