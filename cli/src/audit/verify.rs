//! `pinnacle audit verify`: every chain link and checkpoint, the stream's settings,
//! sealing, broker-account rows against the generation register, and orders against their
//! audit events.

use std::time::Duration;

use async_nats::jetstream;
use pinnacle_common::audit::checkpoint;
use pinnacle_common::audit::generations::{check_accounts, AccountCheckError};
use pinnacle_common::audit::orders::{self as audit_orders, orders_without_audit};
use pinnacle_common::audit::reader::{ReadError, StreamReader};
use pinnacle_common::audit::stream_check::{self, StreamProblem};
use pinnacle_common::audit::verify::{CheckpointSource, Report, Verifier};
use pinnacle_common::crypto::Vault;
use pinnacle_common::subjects;
use sea_orm::DatabaseConnection;

use super::error::{nats, AuditCliError};

/// What `verify` checks.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The stream to read (AUDIT, or a copy).
    pub stream: String,
    /// Only this user's chain (and checkpoints, and orders).
    pub user: Option<String>,
    /// Also check that every order has its audit event.
    pub check_orders: bool,
    /// Give up when the stream yields nothing for this long.
    pub idle: Duration,
    /// Report a chain whose last link is older than this and covered by no checkpoint
    /// (`None`: don't). Default: `PINNACLE_AUDIT_CHECKPOINT_SECS` +
    /// `PINNACLE_AUDIT_SEAL_GRACE_SECS` (10 + 50 s).
    pub max_unsealed: Option<Duration>,
    /// Print progress on standard error while reading a long stream.
    pub progress: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            stream: subjects::AUDIT_STREAM.to_string(),
            user: None,
            check_orders: true,
            idle: Duration::from_secs(10),
            max_unsealed: Some(pinnacle_common::config::AuditSettings::default().max_unsealed()),
            progress: false,
        }
    }
}

/// Reads every chain and checkpoint of `options.stream`, plus the checkpoints and orders in
/// `db`, and reports what is wrong.
pub async fn verify(
    client: async_nats::Client,
    db: Option<&DatabaseConnection>,
    vault: &Vault,
    options: &VerifyOptions,
) -> Result<Report, AuditCliError> {
    let mut verifier = Verifier::new(vault);
    let chain_subject = options.user.as_deref().map(subjects::audit_credential);
    if let Some(db) = db {
        for cp in checkpoint::load(db, chain_subject.as_deref()).await? {
            verifier.add_checkpoint(cp, CheckpointSource::Database);
        }
    }
    let js = jetstream::new(client);
    let Some(stream) = find_stream(&js, &options.stream).await? else {
        // Nothing to read; the checkpoints alone show what was lost.
        let mut report = verifier.finish();
        report.stream_problems = vec![StreamProblem::missing(&options.stream)];
        return Ok(report);
    };
    let stream_problems = {
        let info = stream.cached_info();
        stream_check::check(&info.config, &info.state)
    };
    if let Some(max) = options.max_unsealed {
        let max_ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
        verifier.expect_sealed(chrono::Utc::now().timestamp_millis(), max_ms);
    }
    read_stream(&stream, options, &mut verifier).await?;
    let accesses = verifier.take_accesses();
    let written = verifier.take_written();
    let mut report = verifier.finish();
    report.stream_problems = stream_problems;
    if let Some(db) = db {
        let accounts = check_accounts(db, &js, options.user.as_deref(), &written)
            .await
            .map_err(|e| match e {
                AccountCheckError::Db(db) => AuditCliError::Db(db),
                AccountCheckError::Register(register) => nats(register),
            })?;
        report.accounts_checked = accounts.checked;
        report.accounts_rolled_back = accounts.rolled_back;
        report.generation_register_missing = accounts.register_missing;
        if options.check_orders {
            let rows = audit_orders::load(db, options.user.as_deref()).await?;
            report.orders_checked = rows.len();
            report.orders_missing_audit = orders_without_audit(&rows, &accesses);
        }
    }
    Ok(report)
}

/// The stream named `name`, or `None` when it does not exist.
async fn find_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<jetstream::stream::Stream>, AuditCliError> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(js)
                if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(nats(e)),
        },
    }
}

/// Feeds the chains (one user's, or all) and checkpoints in `stream` to `verifier`, with
/// progress on standard error when asked.
async fn read_stream(
    stream: &jetstream::stream::Stream,
    options: &VerifyOptions,
    verifier: &mut Verifier<'_>,
) -> Result<(), AuditCliError> {
    let filter_subjects = match &options.user {
        Some(user) => vec![
            subjects::audit_credential(user),
            subjects::audit_checkpoint(user),
        ],
        None => vec![subjects::AUDIT_ALL.to_string()],
    };
    let reader = StreamReader::open(stream, filter_subjects)
        .await
        .map_err(read_error)?;
    let total = reader.total();
    let mut progress = (options.progress && total > 0)
        .then(|| crate::progress::Progress::new("audit verify", "messages", total));
    reader
        .read_into(verifier, options.idle, |pending| {
            if let Some(progress) = progress.as_mut() {
                progress.update(total.saturating_sub(pending));
                if pending == 0 {
                    progress.finish(total);
                }
            }
        })
        .await
        .map_err(read_error)
}

fn read_error(e: ReadError) -> AuditCliError {
    match e {
        ReadError::Stalled(last) => AuditCliError::Stalled(last),
        other => nats(other),
    }
}

/// `pinnacle audit verify`: connects with `NATS_*`, `DATABASE_URL` (optional: without it,
/// no stored checkpoints and no order check) and the master key ring; prints the report
/// and fails when anything is wrong.
pub async fn verify_command(options: &VerifyOptions, json: bool) -> anyhow::Result<()> {
    use pinnacle_common::config::{DatabaseSettings, NatsSettings, VaultSettings};

    let vault = Vault::from_settings(&VaultSettings::from_env()?)?;
    let client = crate::stack::nats(&NatsSettings::from_env()?, "pinnacle-audit-verify").await?;
    let db = match DatabaseSettings::from_env() {
        Ok(settings) => Some(crate::stack::cli_connect(&settings).await?),
        Err(_) => {
            eprintln!("DATABASE_URL is not set: stored checkpoints and orders are not checked");
            None
        }
    };
    let report = verify(client, db.as_ref(), &vault, options).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    anyhow::ensure!(report.is_clean(), "the audit log failed verification");
    Ok(())
}
