//! `GET /v1/users/{user_id}/audit/verify`: `pinnacle audit verify --user <id>` for one
//! user's own chain, answered by the user API so a trader (or the console) can check it
//! without the auditor's NATS login or the database.
//!
//! It reads the user's chain (`audit.credential.<id>`) and checkpoints
//! (`audit.checkpoint.<id>`) from the `AUDIT` stream, adds the checkpoints kept in the
//! database, and runs the same [`Verifier`] as the CLI, fed by the same reader
//! (`pinnacle_common::audit::reader`): every link's HMAC, position and
//! back-references, every checkpoint, the sealing deadline; then the stream's own settings
//! (limits, deny flags), the user's broker-account rows against the generation register,
//! and the user's orders against their `order.place` events. The reply says only what is
//! wrong and where; it holds no event content beyond what the trail itself shows.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use pinnacle_common::audit::checkpoint;
use pinnacle_common::audit::generations::{check_accounts, WrittenGenerations};
use pinnacle_common::audit::orders::{self as audit_orders, orders_without_audit, Access};
use pinnacle_common::audit::reader::{ReadError, StreamReader};
use pinnacle_common::audit::stream_check;
use pinnacle_common::audit::verify::{CheckpointSource, Problem, Report, Verifier};
use pinnacle_common::auth::SCOPE_READ;
use pinnacle_common::config::AuditSettings;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::subjects;
use serde::{Deserialize, Serialize};

use crate::caller::Caller;
use crate::error::{check_user_id, ApiError};
use crate::lookup::find_chain_owner;
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

/// What reading the chain from the stream found, before the database checks.
struct ChainRead {
    report: Report,
    stream_problems: Vec<String>,
    accesses: HashMap<(String, String), Vec<Access>>,
    written: WrittenGenerations,
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
    find_chain_owner(&state.db, &user_id).await?;
    let js = jetstream::new(state.audit.client());
    let read = read_chain(&state, &js, &user_id).await?;
    let accounts = check_accounts(&state.db, &js, Some(&user_id), &read.written)
        .await
        .map_err(unavailable)?;
    let rows = audit_orders::load(&state.db, Some(&user_id))
        .await
        .map_err(|e| ApiError::internal("reading orders", e))?;
    let orders_missing_audit = orders_without_audit(&rows, &read.accesses);
    let accounts_rolled_back: Vec<String> = accounts
        .rolled_back
        .iter()
        .map(|row| row.account_id.clone())
        .collect();
    let report = read.report;
    Ok(Json(ChainReport {
        clean: report.problems.is_empty()
            && read.stream_problems.is_empty()
            && orders_missing_audit.is_empty()
            && accounts_rolled_back.is_empty(),
        events: report.events,
        checkpoints: report.checkpoints,
        first_bad_seq: report.first_bad_seq,
        problems: report.problems.into_iter().map(Into::into).collect(),
        stream_problems: read.stream_problems,
        orders_checked: rows.len(),
        orders_missing_audit,
        accounts_checked: accounts.checked,
        accounts_rolled_back,
    }))
}

/// Runs the verifier over `user_id`'s chain and checkpoints, from the stream and the
/// database, and checks the stream's own settings.
async fn read_chain(
    state: &AppState,
    js: &jetstream::Context,
    user_id: &str,
) -> Result<ChainRead, ApiError> {
    let chain = subjects::audit_credential(user_id);
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
    let stream = js
        .get_stream(subjects::AUDIT_STREAM)
        .await
        .map_err(unavailable)?;
    let stream_problems = {
        let info = stream.cached_info();
        stream_check::check(&info.config, &info.state)
    };
    let filter_subjects = vec![chain, subjects::audit_checkpoint(user_id)];
    let reader = StreamReader::open(&stream, filter_subjects)
        .await
        .map_err(unavailable)?;
    reader
        .read_into(&mut verifier, IDLE, |_| {})
        .await
        .map_err(|e| match e {
            ReadError::Stalled(_) => unavailable("the audit stream stalled"),
            other => unavailable(other),
        })?;
    Ok(ChainRead {
        accesses: verifier.take_accesses(),
        written: verifier.take_written(),
        report: verifier.finish(),
        stream_problems: stream_problems.iter().map(|p| p.detail.clone()).collect(),
    })
}
