//! `pinnacle nats …`: operating the NATS cluster without the `nats` CLI.
//!
//! - `passwd` hashes a password (read from standard input) with bcrypt, for
//!   `passwords.conf`.
//! - `add-trader` renders `trader.conf.tmpl` for one Pinnacle user id with a bcrypt hash of
//!   a password read from standard input, and inserts it into `auth.conf` before the
//!   `# END TRADERS` marker (what `nats/add-trader.sh` does with a hash made elsewhere).
//! - `streams apply` creates the streams defined in `nats/streams/*.json` that do not
//!   exist, and updates the ones whose live config differs from their definition, through
//!   the JetStream API as the connecting user (the admin, on the shipped permissions).
//!
//! Passwords never appear in arguments (shell history, `ps`), logs or errors.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

/// bcrypt's cost for new hashes: nats-server checks one per connection.
pub const DEFAULT_COST: u32 = 11;

/// What went wrong in a `pinnacle nats` verb.
#[derive(Debug, thiserror::Error)]
pub enum NatsAdminError {
    /// The password read from standard input is empty.
    #[error("no password on standard input")]
    NoPassword,
    /// bcrypt refused (a cost outside 4–31).
    #[error("could not hash the password: {0}")]
    Hash(String),
    /// The user id is not a lower-case UUID (it becomes a subject token and a user name).
    #[error("`{0}` is not a lower-case UUID (the trader's id from the user API)")]
    BadUserId(String),
    /// The auth file has no `# END TRADERS` marker to insert before.
    #[error("{0}: no `# END TRADERS` marker")]
    NoMarker(PathBuf),
    /// The trader is already in the auth file.
    #[error("{user} is already in {file}")]
    Exists {
        /// The user id.
        user: String,
        /// The auth file.
        file: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stream definition is not a JSON object with a `name`.
    #[error("{0}: not a stream definition (a JSON object with a name)")]
    BadDefinition(PathBuf),
    /// The JetStream API refused or did not answer.
    #[error("stream {stream}: {reason}")]
    Api {
        /// The stream.
        stream: String,
        /// The server's error or the transport failure.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NatsAdminError + '_ {
    move |source| NatsAdminError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads one line from `input` as a password (the line break is not part of it).
pub fn read_password(input: impl BufRead) -> Result<secrecy::SecretString, NatsAdminError> {
    let line = input
        .lines()
        .next()
        .transpose()
        .map_err(io(Path::new("standard input")))?
        .unwrap_or_default();
    if line.is_empty() {
        return Err(NatsAdminError::NoPassword);
    }
    Ok(line.into())
}

/// A bcrypt hash of `password` at `cost`, in the `$2b$` form nats-server reads.
pub fn hash(password: &secrecy::SecretString, cost: u32) -> Result<String, NatsAdminError> {
    use secrecy::ExposeSecret as _;
    bcrypt::hash(password.expose_secret(), cost).map_err(|e| NatsAdminError::Hash(e.to_string()))
}

fn is_lower_uuid(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

/// Adds trader `user_id` with `password_hash` to `auth_file`, rendering the
/// `trader.conf.tmpl` next to it. Reload the servers afterwards (SIGHUP).
pub fn add_trader(
    auth_file: &Path,
    user_id: &str,
    password_hash: &str,
) -> Result<(), NatsAdminError> {
    if !is_lower_uuid(user_id) {
        return Err(NatsAdminError::BadUserId(user_id.to_string()));
    }
    let template_path = auth_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("trader.conf.tmpl");
    let template = std::fs::read_to_string(&template_path).map_err(io(&template_path))?;
    let auth = std::fs::read_to_string(auth_file).map_err(io(auth_file))?;
    if auth.contains(&format!("user: \"{user_id}\"")) {
        return Err(NatsAdminError::Exists {
            user: user_id.to_string(),
            file: auth_file.to_path_buf(),
        });
    }
    let entry = template
        .replace("@USER_ID@", user_id)
        .replace("@PASSWORD_HASH@", password_hash);
    let mut out = String::with_capacity(auth.len() + entry.len());
    let mut inserted = false;
    for line in auth.split_inclusive('\n') {
        if !inserted && line.trim_start().starts_with("# END TRADERS") {
            out.push_str(&entry);
            if !entry.ends_with('\n') {
                out.push('\n');
            }
            inserted = true;
        }
        out.push_str(line);
    }
    if !inserted {
        return Err(NatsAdminError::NoMarker(auth_file.to_path_buf()));
    }
    // Write beside it and rename, so a server reloading meanwhile never reads half a file.
    let tmp = auth_file.with_extension("conf.tmp");
    std::fs::write(&tmp, out).map_err(io(&tmp))?;
    std::fs::rename(&tmp, auth_file).map_err(io(auth_file))
}

/// What `streams apply` did to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// It did not exist and was created.
    Created,
    /// Its live config matched the definition.
    Unchanged,
    /// These fields differed and were updated.
    Updated(Vec<String>),
}

/// The fields of `definition` whose value differs in the live `config`.
fn drift(definition: &serde_json::Map<String, Value>, config: &Value) -> Vec<String> {
    definition
        .iter()
        .filter(|(key, want)| config.get(key.as_str()) != Some(*want))
        .map(|(key, _)| key.clone())
        .collect()
}

async fn api(
    client: &async_nats::Client,
    stream: &str,
    subject: String,
    body: Vec<u8>,
) -> Result<Value, NatsAdminError> {
    let failed = |reason: String| NatsAdminError::Api {
        stream: stream.to_string(),
        reason,
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject, body.into()),
    )
    .await
    .map_err(|_| failed("no answer within 10 s".into()))?
    .map_err(|e| failed(e.to_string()))?;
    serde_json::from_slice(&reply.payload).map_err(|e| failed(e.to_string()))
}

/// Creates or updates one stream from its definition file.
pub async fn apply_stream(
    client: &async_nats::Client,
    path: &Path,
) -> Result<(String, Applied), NatsAdminError> {
    let text = std::fs::read(path).map_err(io(path))?;
    let definition: serde_json::Map<String, Value> = serde_json::from_slice(&text)
        .map_err(|_| NatsAdminError::BadDefinition(path.to_path_buf()))?;
    let name = definition
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && !n.contains(['.', '*', '>', ' ']))
        .ok_or_else(|| NatsAdminError::BadDefinition(path.to_path_buf()))?
        .to_string();
    let info = api(
        client,
        &name,
        format!("$JS.API.STREAM.INFO.{name}"),
        Vec::new(),
    )
    .await?;
    let refused = |reply: &Value| {
        reply.get("error").map(|e| NatsAdminError::Api {
            stream: name.clone(),
            reason: e["description"].as_str().unwrap_or("refused").to_string(),
        })
    };
    let missing = info["error"]["err_code"].as_u64() == Some(10059);
    if missing {
        let reply = api(client, &name, format!("$JS.API.STREAM.CREATE.{name}"), text).await?;
        return match refused(&reply) {
            Some(error) => Err(error),
            None => Ok((name, Applied::Created)),
        };
    }
    if let Some(error) = refused(&info) {
        return Err(error);
    }
    let changed = drift(&definition, &info["config"]);
    if changed.is_empty() {
        return Ok((name, Applied::Unchanged));
    }
    if name == pinnacle_common::subjects::AUDIT_STREAM {
        // Nobody may update AUDIT (nats/auth.conf): say why instead of waiting for a reply
        // the permissions never let through.
        return Err(NatsAdminError::Api {
            stream: name,
            reason: format!(
                "differs in {}; AUDIT cannot be updated (denied to every user): see docs/AUDIT.md, \"Changing AUDIT: break glass\"",
                changed.join(", ")
            ),
        });
    }
    let reply = api(client, &name, format!("$JS.API.STREAM.UPDATE.{name}"), text).await?;
    match refused(&reply) {
        Some(error) => Err(error),
        None => Ok((name, Applied::Updated(changed))),
    }
}

/// Every `*.json` in `dir`, in name order.
pub fn definitions(dir: &Path) -> Result<Vec<PathBuf>, NatsAdminError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// `pinnacle nats …`.
#[derive(Debug, Subcommand)]
pub enum NatsCommand {
    /// Print a bcrypt hash of the password on standard input (one line), for
    /// passwords.conf.
    Passwd {
        /// bcrypt cost (4–31); nats-server checks one hash per connection.
        #[arg(long, default_value_t = DEFAULT_COST)]
        cost: u32,
    },
    /// Add a trader to auth.conf with a password read from standard input, then reload
    /// the servers (`kill -HUP`): no restart, no dropped connections.
    AddTrader {
        /// The trader's Pinnacle user id (a lower-case UUID), also their NATS user name.
        user_id: String,
        /// Read the trader's NATS password from standard input (one line); required, so
        /// that it never sits in shell history or the process list.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The auth file; `trader.conf.tmpl` must be next to it.
        #[arg(long, default_value = "nats/auth.conf")]
        auth_file: PathBuf,
        /// bcrypt cost (4–31).
        #[arg(long, default_value_t = DEFAULT_COST)]
        cost: u32,
    },
    /// JetStream streams.
    Streams {
        #[command(subcommand)]
        command: StreamsCommand,
    },
}

/// `pinnacle nats streams …`.
#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// Create every stream defined in DIR that does not exist, and update those whose
    /// live config differs (NATS_URL, NATS_USER/NATS_PASSWORD: the admin).
    Apply {
        /// The directory of stream definitions (JetStream API JSON).
        #[arg(long, default_value = "nats/streams")]
        dir: PathBuf,
    },
}

/// Runs one `pinnacle nats` verb.
pub async fn run(command: NatsCommand) -> anyhow::Result<()> {
    match command {
        NatsCommand::Passwd { cost } => {
            let password = read_password(std::io::stdin().lock())?;
            println!("{}", hash(&password, cost)?);
        }
        NatsCommand::AddTrader {
            user_id,
            password_stdin: _,
            auth_file,
            cost,
        } => {
            let password = read_password(std::io::stdin().lock())?;
            add_trader(&auth_file, &user_id, &hash(&password, cost)?)?;
            eprintln!(
                "added {user_id} to {}; reload the servers (kill -HUP <nats-server pid>)",
                auth_file.display()
            );
        }
        NatsCommand::Streams {
            command: StreamsCommand::Apply { dir },
        } => apply_streams(&dir).await?,
    }
    Ok(())
}

/// `pinnacle nats streams apply`: applies every definition in `dir`, one line each.
async fn apply_streams(dir: &Path) -> anyhow::Result<()> {
    let settings = pinnacle_common::config::NatsSettings::from_env()?;
    let client = pinnacle_common::nats::connect(&settings, "pinnacle-nats-admin").await?;
    let mut failed = 0;
    for path in definitions(dir)? {
        match apply_stream(&client, &path).await {
            Ok((name, Applied::Created)) => println!("{name}: created"),
            Ok((name, Applied::Unchanged)) => println!("{name}: unchanged"),
            Ok((name, Applied::Updated(fields))) => {
                println!("{name}: updated {}", fields.join(", "))
            }
            Err(error) => {
                eprintln!("{}: {error}", path.display());
                failed += 1;
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} stream definition(s) not applied");
    Ok(())
}

#[cfg(test)]
mod tests;
