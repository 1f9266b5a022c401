//! `GET /v1/users/{user_id}/audit/verify`: `pinnacle audit verify --user <id>` for one
//! user's own chain, answered by the user API so a trader (or the console) can check it
//! without the auditor's NATS login or the database.
//!
//! It reads the user's chain (`audit.credential.<id>`) and checkpoints
//! (`audit.checkpoint.<id>`) from the `AUDIT` stream, adds the checkpoints kept in the
//! database, and runs the same [`Verifier`] as the CLI: every link's HMAC, position and
//! back-references, every checkpoint, the sealing deadline; then the stream's own settings
//! (limits, deny flags), the user's broker-account rows against the generation register,
//! and the user's orders against their `order.place` events. The reply says only what is
//! wrong and where; it holds no event content beyond what the trail itself shows.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use futures::StreamExt as _;
use pinnacle_common::audit::checkpoint;
use pinnacle_common::audit::generations::check_accounts;
use pinnacle_common::audit::orders::{orders_without_audit, OrderRef};
use pinnacle_common::audit::stream_check;
use pinnacle_common::audit::verify::{CheckpointSource, Problem, Verifier};
use pinnacle_common::auth::SCOPE_READ;
use pinnacle_common::config::AuditSettings;
use pinnacle_common::entities::orders;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::subjects;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use crate::caller::Caller;
use crate::error::{check_user_id, ApiError};
use crate::state::AppState;

/// How long the stream may stay silent before the read is abandoned.
const IDLE: Duration = Duration::from_secs(5);

/// The verdict for one user's chain.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChainReport {
    /// Nothing is wrong: every check below passed.
    pub clean: bool,
    /// Events in the chain.
    pub events: u64,
    /// Distinct checkpoints compared with it.
    pub checkpoints: usize,
    /// The first bad stream sequence, if any.
    pub first_bad_seq: Option<u64>,
    /// Chain problems, in sequence order.
    pub problems: Vec<ChainProblem>,
    /// Problems with the AUDIT stream itself.
    pub stream_problems: Vec<String>,
    /// The user's orders checked against their audit events.
    pub orders_checked: usize,
    /// The user's orders with no audit event.
    pub orders_missing_audit: Vec<String>,
    /// The user's broker-account rows checked against the generation register.
    pub accounts_checked: usize,
    /// Rows older than the trail says was written (restored from an old copy).
    pub accounts_rolled_back: Vec<String>,
}

/// One problem: where and what.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChainProblem {
    /// The first stream sequence it makes bad.
    pub seq: u64,
    /// What is wrong (`bad_hash`, `missing`, `truncated`, …).
    pub kind: String,
    /// A human explanation.
    pub detail: String,
}

impl From<Problem> for ChainProblem {
    fn from(p: Problem) -> Self {
        let kind = serde_json::to_value(p.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Self {
            seq: p.seq,
            kind,
            detail: p.detail,
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%error, "audit verification could not read the stream");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::AuditUnavailable,
        "the audit log is unavailable",
    )
}

/// `GET /v1/users/{user_id}/audit/verify`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ChainReport>, ApiError> {
    let Path(user_id) = path?;
    caller.require_self_or_admin(&user_id, SCOPE_READ)?;
    check_user_id(&user_id)?;
    let chain = subjects::audit_credential(&user_id);
    let mut verifier = Verifier::new(&state.vault);
    let stored = checkpoint::load(&state.db, Some(&chain))
        .await
        .map_err(|e| ApiError::internal("reading audit checkpoints", e))?;
    for cp in stored {
        verifier.add_checkpoint(cp, CheckpointSource::Database);
    }
    let max_ms =
        i64::try_from(AuditSettings::default().max_unsealed().as_millis()).unwrap_or(i64::MAX);
    verifier.expect_sealed(chrono::Utc::now().timestamp_millis(), max_ms);
    let js = jetstream::new(state.audit.client());
    let stream = js
        .get_stream(subjects::AUDIT_STREAM)
        .await
        .map_err(unavailable)?;
    let stream_problems = {
        let info = stream.cached_info();
        stream_check::check(&info.config, &info.state)
    };
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subjects: vec![chain.clone(), subjects::audit_checkpoint(&user_id)],
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    if consumer.cached_info().num_pending > 0 {
        let mut messages = consumer.messages().await.map_err(unavailable)?;
        loop {
            let Ok(Some(message)) = tokio::time::timeout(IDLE, messages.next()).await else {
                return Err(unavailable("the audit stream stalled"));
            };
            let message = message.map_err(unavailable)?;
            let info = message.info().map_err(unavailable)?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            let stored_ms = i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).ok();
            verifier.push_stored(
                seq,
                message.subject.as_str(),
                message.headers.as_ref(),
                &message.payload,
                stored_ms,
            );
            if pending == 0 {
                break;
            }
        }
    }
    let accesses = verifier.take_accesses();
    let written = verifier.take_written();
    let report = verifier.finish();
    let accounts = check_accounts(&state.db, &js, Some(&user_id), &written)
        .await
        .map_err(unavailable)?;
    let rows: Vec<OrderRef> = orders::Entity::find()
        .filter(orders::Column::UserId.eq(user_id.as_str()))
        .all(&state.db)
        .await
        .map_err(|e| ApiError::internal("reading orders", e))?
        .into_iter()
        .map(|o| OrderRef {
            id: o.id,
            user_id: o.user_id,
            broker_account_id: o.broker_account_id,
            client_order_id: o.client_order_id,
            created_ms: o.created_at.timestamp_millis(),
        })
        .collect();
    let orders_missing_audit = orders_without_audit(&rows, &accesses);
    let stream_problems: Vec<String> = stream_problems.iter().map(|p| p.detail.clone()).collect();
    let accounts_rolled_back: Vec<String> = accounts
        .rolled_back
        .iter()
        .map(|row| row.account_id.clone())
        .collect();
    Ok(Json(ChainReport {
        clean: report.problems.is_empty()
            && stream_problems.is_empty()
            && orders_missing_audit.is_empty()
            && accounts_rolled_back.is_empty(),
        events: report.events,
        checkpoints: report.checkpoints,
        first_bad_seq: report.first_bad_seq,
        problems: report.problems.into_iter().map(Into::into).collect(),
        stream_problems,
        orders_checked: rows.len(),
        orders_missing_audit,
        accounts_checked: accounts.checked,
        accounts_rolled_back,
    }))
}
