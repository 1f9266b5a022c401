//! `pinnacle keys …`: generate, add to a key file, status, rotate and retire master keys.
//!
//! Rotation runs against the database and the audit stream named by the environment
//! (`DATABASE_URL`, `NATS_*`) with the ring from `PINNACLE_MASTER_KEY*`; see
//! `docs/ARCHITECTURE.md` ("Keys") for the whole procedure.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use pinnacle_common::audit::AuditLog;
use pinnacle_common::config::{DatabaseSettings, NatsSettings, VaultSettings, WorkerSettings};
use pinnacle_common::crypto::{ring, Vault};
use pinnacle_common::keystore;
use secrecy::ExposeSecret;

use crate::table::{self, Shape};

async fn open() -> anyhow::Result<(sea_orm::DatabaseConnection, Vault)> {
    let vault = Vault::from_settings(&VaultSettings::from_env()?)?;
    let db = crate::stack::cli_database(&DatabaseSettings::from_env()?).await?;
    crate::stack::vault_ready(&db, &vault).await?;
    Ok((db, vault))
}

/// Appends a fresh key to the key file (created 0600 if missing); returns its id.
pub fn add_to_file(path: &Path) -> anyhow::Result<u32> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            let source = format!("{}", path.display());
            ring::parse_entries(&source, &text, '\n')?
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0)
        }
        Ok(_) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let id = existing + 1;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(
        file,
        "{id}:{}",
        Vault::generate_master_key().expose_secret()
    )?;
    Ok(id)
}

/// Prints the master keys: per key id its accounts and encryptions, and the current key;
/// a table, or the `GET /v1/keys` object with `json`.
pub async fn status(json: bool) -> anyhow::Result<()> {
    let (db, vault) = open().await?;
    let view = keystore::overview(&db, &vault).await?;
    if json {
        crate::output::line(&serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let columns = &["key_id", "fingerprint", "rows", "encryptions", "retired"];
    let keys = serde_json::json!({ "keys": view.keys });
    crate::output::text_out(&format!(
        "current key {}; at most {} encryptions per key\n{}",
        view.current_key_id,
        view.max_encryptions_per_key,
        table::render(&keys, Shape::List("keys", columns)),
    ));
    Ok(())
}

/// Rewraps every data key under the current key and prints the report.
pub async fn rotate() -> anyhow::Result<()> {
    let (db, vault) = open().await?;
    let nats = crate::stack::nats(&NatsSettings::from_env()?, "pinnacle-keys").await?;
    pinnacle_common::audit::prepare_stream(&async_nats::jetstream::new(nats.clone()), &db)
        .await
        .context("the audit stream")?;
    let worker = WorkerSettings::from_env()?;
    let timeout = Duration::from_millis(worker.audit_timeout_ms);
    let vault = std::sync::Arc::new(vault);
    let audit = AuditLog::new(nats, timeout, vault.clone())
        .with_checkpoints(db.clone(), worker.audit.policy());
    let mut progress = None;
    let report = keystore::rotate_reporting(&db, &vault, &audit, |done, total| {
        progress
            .get_or_insert_with(|| {
                crate::progress::Progress::new("key rotation", "accounts", total)
            })
            .update(done);
    })
    .await?;
    if let Some(progress) = progress.as_mut() {
        progress.finish(report.rewrapped + report.failed.len() as u64);
    }
    // Seal every chain the rotation appended to before the process exits.
    audit
        .checkpoint_now()
        .await
        .context("checkpointing the audit chains")?;
    println!("{}", serde_json::to_string(&report)?);
    anyhow::ensure!(
        report.failed.is_empty(),
        "{} account(s) could not be rewrapped",
        report.failed.len()
    );
    Ok(())
}

/// Retires `key_id`, refused while rows still use it.
pub async fn retire(key_id: u32) -> anyhow::Result<()> {
    let (db, vault) = open().await?;
    keystore::retire(&db, &vault, key_id).await?;
    println!("master key {key_id} retired");
    Ok(())
}

/// `pinnacle keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key for PINNACLE_MASTER_KEY.
    Generate,
    /// Append a new random key to a key file (PINNACLE_MASTER_KEY_FILE format).
    Add {
        /// The key file; created with mode 0600 if missing.
        #[arg(long, env = "PINNACLE_MASTER_KEY_FILE")]
        file: PathBuf,
    },
    /// Show, per master key id, how many accounts it wraps and how many encryptions it made.
    Status {
        /// Print the `GET /v1/keys` JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rewrap every data key under the current master key, online.
    Rotate,
    /// Retire a master key; refused while any account still uses it.
    Retire {
        /// The key id.
        key_id: u32,
    },
}

/// Runs one `pinnacle keys` verb.
pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate => {
            println!("{}", Vault::generate_master_key().expose_secret());
            Ok(())
        }
        KeysCommand::Add { file } => {
            let id = add_to_file(&file)?;
            println!("added master key {id} to {}", file.display());
            Ok(())
        }
        KeysCommand::Status { json } => status(json).await,
        KeysCommand::Rotate => rotate().await,
        KeysCommand::Retire { key_id } => retire(key_id).await,
    }
}
