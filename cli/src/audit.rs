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
//!
//! # Layout
//! - [`tail`](mod@tail): `audit tail`; [`verify`](mod@verify): `audit verify`; [`error`]: [`AuditCliError`].
//! - this file: the verbs' arguments and [`run`].

pub mod error;
pub mod tail;
pub mod verify;

use std::time::Duration;

use clap::Subcommand;

pub use error::AuditCliError;
pub use tail::{tail, tail_command, TailOptions};
pub use verify::{verify, verify_command, VerifyOptions};

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
