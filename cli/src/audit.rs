//! `pinnacle audit tail` and `pinnacle audit verify`: audit-stream consumers.
//!
//! `tail` follows the AUDIT stream live through an ordered (ephemeral) consumer, filtered
//! to one user's chain subject when asked. `verify` checks the stream itself (limits, deny
//! flags, first sequence: `pinnacle_common::audit::stream_check`), reads every chain from
//! it (AUDIT by default, any stream with the same subjects with `--stream`), checks every
//! link and checkpoint with `pinnacle_common::audit::verify` (fed by `audit::reader`, the
//! loop the user API's per-user verify shares), adds the checkpoints kept in
//! the database, reports chains left unsealed past the deadline, checks that every order
//! has the audit event that must precede it, and that no broker account row is older than
//! the generation register (or the audit trail) says was written
//! (`pinnacle_common::audit::generations`). Neither creates a stream: a missing one is
//! reported. Both take explicit connections, so the tests call them as `main` does.

use std::io::Write;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use clap::Subcommand;
use futures::StreamExt as _;
use pinnacle_common::audit::checkpoint;
use pinnacle_common::audit::generations::{check_accounts, AccountCheckError};
use pinnacle_common::audit::orders::{self as audit_orders, orders_without_audit};
use pinnacle_common::audit::reader::{ReadError, StreamReader};
use pinnacle_common::audit::stream_check::{self, StreamProblem};
use pinnacle_common::audit::verify::{CheckpointSource, Report, Verifier};
use pinnacle_common::codec::Encoding;
use pinnacle_common::crypto::Vault;
use pinnacle_common::model::AuditEvent;
use pinnacle_common::subjects;
use sea_orm::DatabaseConnection;

/// Why a consumer could not run (problems found by `verify` are in its [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum AuditCliError {
    /// NATS or JetStream failed.
    #[error("audit stream: {0}")]
    Nats(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Writing the output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
    /// No message arrived for this long while reading a stream that should have more.
    #[error("audit stream stalled after seq {0}")]
    Stalled(u64),
}

fn nats(e: impl std::fmt::Display) -> AuditCliError {
    AuditCliError::Nats(e.to_string())
}

/// What `tail` shows.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Only this user's events (subject filter `audit.credential.<user>`).
    pub user: Option<String>,
    /// Start at this stream sequence; otherwise only events stored from now on.
    pub since_seq: Option<u64>,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Stop after this many events.
    pub count: Option<usize>,
}

/// Follows the audit stream, writing one line per event to `out`, until `count` events
/// (or forever).
pub async fn tail(
    client: async_nats::Client,
    stream: &str,
    options: &TailOptions,
    out: &mut (dyn Write + Send),
) -> Result<usize, AuditCliError> {
    let filter = match &options.user {
        Some(user) => subjects::audit_credential(user),
        None => subjects::AUDIT_CREDENTIAL_ALL.to_string(),
    };
    let deliver_policy = match options.since_seq {
        Some(seq) => DeliverPolicy::ByStartSequence {
            start_sequence: seq.max(1),
        },
        None => DeliverPolicy::New,
    };
    let consumer = jetstream::new(client)
        .get_stream(stream)
        .await
        .map_err(nats)?
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let mut messages = consumer.messages().await.map_err(nats)?;
    let mut shown = 0;
    while options.count.is_none_or(|count| shown < count) {
        let Some(message) = messages.next().await else {
            break;
        };
        let line = event_line(&message.map_err(nats)?, options.json)?;
        writeln!(out, "{line}")?;
        out.flush()?;
        shown += 1;
    }
    Ok(shown)
}

/// One message of the audit stream as `tail` prints it: text, or a JSON object.
fn event_line(message: &jetstream::Message, json: bool) -> Result<String, AuditCliError> {
    let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
    let event = Encoding::MsgPack.decode::<AuditEvent>(&message.payload);
    Ok(match (&event, json) {
        (Ok(event), true) => {
            let mut value = serde_json::to_value(event).map_err(std::io::Error::other)?;
            value["seq"] = seq.into();
            value["subject"] = message.subject.as_str().into();
            value.to_string()
        }
        (Ok(e), false) => format!(
            "{seq} {} user={} account={} actor={} purpose={} outcome={} request={} fields={}",
            chrono::DateTime::from_timestamp_millis(e.ts_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            e.user_id,
            e.broker_account_id,
            e.actor,
            e.purpose,
            e.outcome,
            e.request_id,
            e.fields.join(",")
        ),
        (Err(_), true) => serde_json::json!({ "seq": seq, "subject": message.subject.as_str(), "undecodable": true }).to_string(),
        (Err(_), false) => format!("{seq} {} (undecodable)", message.subject),
    })
}

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

/// `pinnacle audit tail`: connects with `NATS_*` settings and follows the stream on stdout.
pub async fn tail_command(stream: &str, options: &TailOptions) -> anyhow::Result<()> {
    use pinnacle_common::config::NatsSettings;
    let client = crate::stack::nats(&NatsSettings::from_env()?, "pinnacle-audit-tail").await?;
    let mut stdout = std::io::stdout();
    tail(client, stream, options, &mut stdout).await?;
    Ok(())
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

/// `pinnacle audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Follow audit events live (NATS_URL; as the `auditor` NATS user in production).
    Tail {
        /// Only this user's events.
        #[arg(long)]
        user: Option<String>,
        /// Start at this stream sequence (default: only new events).
        #[arg(long)]
        since_seq: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// The stream to read.
        #[arg(long, default_value = "AUDIT")]
        stream: String,
    },
    /// Check every chain link and checkpoint, and that every order has its audit event;
    /// exits non-zero on any problem (NATS_URL, DATABASE_URL, PINNACLE_MASTER_KEY*).
    Verify {
        /// Only this user's chain, checkpoints and orders.
        #[arg(long)]
        user: Option<String>,
        /// The stream to read (AUDIT, or a copy with the same subjects).
        #[arg(long, default_value = "AUDIT")]
        stream: String,
        /// Skip the orders-have-audit-events check.
        #[arg(long)]
        skip_orders: bool,
        /// Report a chain whose last link is older than this many seconds and covered by
        /// no checkpoint (default: PINNACLE_AUDIT_CHECKPOINT_SECS + PINNACLE_AUDIT_SEAL_GRACE_SECS).
        #[arg(long, conflicts_with = "skip_sealing")]
        max_unsealed_secs: Option<u64>,
        /// Don't check that chains are sealed by checkpoints (e.g. for an old backup).
        #[arg(long)]
        skip_sealing: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `pinnacle audit tail` or `pinnacle audit verify`.
pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Tail {
            user,
            since_seq,
            json,
            count,
            stream,
        } => {
            let options = TailOptions {
                user,
                since_seq,
                json,
                count,
            };
            tail_command(&stream, &options).await
        }
        AuditCommand::Verify {
            user,
            stream,
            skip_orders,
            max_unsealed_secs,
            skip_sealing,
            json,
        } => {
            let max_unsealed = match (skip_sealing, max_unsealed_secs) {
                (true, _) => None,
                (false, Some(secs)) => Some(Duration::from_secs(secs)),
                (false, None) => {
                    Some(pinnacle_common::config::AuditSettings::from_env()?.max_unsealed())
                }
            };
            let options = VerifyOptions {
                stream,
                user,
                check_orders: !skip_orders,
                max_unsealed,
                progress: true,
                ..Default::default()
            };
            verify_command(&options, json).await
        }
    }
}
