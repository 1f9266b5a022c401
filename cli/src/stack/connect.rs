//! What a service opens before it starts: the database (migrated), the key ring's record
//! in it, NATS, the AUDIT stream and the `/metrics` endpoint; and the command-line verbs'
//! bounded variants.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use pinnacle_common::audit;
use pinnacle_common::config::{DatabaseSettings, MetricsSettings, NatsSettings};
use pinnacle_common::crypto::Vault;
use pinnacle_common::health::Health;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_migrations::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;

/// Opens the database and applies every pending migration.
///
/// Services started together on a fresh database race to apply the migrations; the loser
/// of a race (a table or index "already exists", a lock) tries again, and then finds them
/// applied.
pub async fn database(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let db = pinnacle_common::db::connect(settings)
        .await
        .context("opening the database")?;
    migrated(db).await
}

/// `db` once every pending migration is applied (see [`database`]).
async fn migrated(db: DatabaseConnection) -> anyhow::Result<DatabaseConnection> {
    let mut attempt = 1;
    loop {
        match Migrator::up(&db, None).await {
            Ok(()) => return Ok(db),
            Err(error) if attempt < MIGRATION_ATTEMPTS => {
                tracing::warn!(%error, attempt, "applying migrations failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * attempt as u64)).await;
                attempt += 1;
            }
            Err(error) => return Err(error).context("applying migrations"),
        }
    }
}

/// [`database`] for a service: a database that cannot be reached yet (connection refused or
/// timed out, a host name that does not resolve yet, the server starting up or out of
/// connection slots: [`may_pass`](pinnacle_common::db::may_pass)) is waited for, with a
/// warning each attempt and a backoff of 250 ms doubling to 5 s, for as long as it takes:
/// a service started before its database (a host booting, `docker compose up`) comes up
/// when the database does, instead of exiting. `/readyz` says "starting" meanwhile, and a
/// stop ends the wait (`serve` races the start against it). Any other failure (a wrong
/// password, a database that does not exist, a bad URL) is a setting to fix, and fails the
/// start at once.
pub async fn service_database(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let url = pinnacle_common::config::redact_url(&settings.database_url);
    let mut pause = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        let opened = match pinnacle_common::db::reach(settings).await {
            Ok(()) => pinnacle_common::db::connect(settings).await,
            Err(error) => Err(error),
        };
        match opened {
            Ok(db) => return migrated(db).await,
            Err(error) if pinnacle_common::db::may_pass(&error) => {
                tracing::warn!(
                    database = %url,
                    %error,
                    attempt,
                    retry_in_ms = pause.as_millis() as u64,
                    "waiting for the database"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("opening the database at {url}"))
            }
        }
    }
}

/// How long a command-line verb waits for its database before it says so.
const CLI_DATABASE_WAIT: Duration = Duration::from_secs(5);

/// [`database`] for a command-line verb: a database that does not answer within 5 s is an
/// error that names it (password redacted) and says where the setting comes from, instead
/// of a silent wait (services keep [`database`]'s longer patience).
pub async fn cli_database(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    within_cli_wait(settings, database(settings)).await
}

/// [`cli_database`] without applying migrations, for verbs that only read (`audit verify`
/// may run against a restored copy).
pub async fn cli_connect(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let connect = async {
        pinnacle_common::db::connect(settings)
            .await
            .context("opening the database")
    };
    within_cli_wait(settings, connect).await
}

async fn within_cli_wait(
    settings: &DatabaseSettings,
    open: impl std::future::Future<Output = anyhow::Result<DatabaseConnection>>,
) -> anyhow::Result<DatabaseConnection> {
    let url = pinnacle_common::config::redact_url(&settings.database_url);
    match tokio::time::timeout(CLI_DATABASE_WAIT, open).await {
        Ok(db) => db.with_context(|| {
            format!("the database at {url} (DATABASE_URL, or --env-file .pinnacle/dev.env)")
        }),
        Err(_) => anyhow::bail!(
            "the database at {url} did not answer within {} s; is it running? (set \
             DATABASE_URL, or pass --env-file .pinnacle/dev.env)",
            CLI_DATABASE_WAIT.as_secs()
        ),
    }
}

/// How often a service tries to apply the migrations before it gives up.
const MIGRATION_ATTEMPTS: u32 = 8;

/// Records the ring's keys in the database and loads which are retired; fails on a
/// ring whose key material differs from what the database knows under the same id.
pub async fn vault_ready(db: &DatabaseConnection, vault: &Vault) -> anyhow::Result<()> {
    pinnacle_common::keystore::sync_ring(db, vault)
        .await
        .context("checking the master key ring against the database")
}

/// Connects to NATS (for the one-shot commands; it creates no stream: `audit verify` must
/// see a missing AUDIT, not an empty new one).
pub async fn nats(settings: &NatsSettings, name: &str) -> anyhow::Result<async_nats::Client> {
    Ok(pinnacle_common::nats::connect(settings, name).await?)
}

/// A service's start-up check of the AUDIT stream ([`audit::prepare_stream`]). A missing
/// AUDIT that held history is logged and the service starts anyway: every credential access
/// is then refused with `AUDIT_UNAVAILABLE` ("audit stream unavailable: …") until an
/// operator restores it. Any other failure (NATS, the database) fails the start.
pub async fn prepare_audit_stream(
    client: &async_nats::Client,
    db: &DatabaseConnection,
    service: &str,
) -> anyhow::Result<()> {
    match audit::prepare_stream(&async_nats::jetstream::new(client.clone()), db).await {
        Ok(audit::Prepared::Found) => Ok(()),
        Ok(audit::Prepared::Created) => {
            tracing::info!(
                service,
                "created the audit stream (nothing was audited before)"
            );
            Ok(())
        }
        Err(error) if error.is_stream_unavailable() => {
            tracing::error!(
                service,
                %error,
                "audit stream unavailable: refusing every credential access until it is restored"
            );
            Ok(())
        }
        Err(error) => Err(error).context("preparing the audit stream"),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `settings.addr` until `shutdown` fires;
/// `None` when unset.
pub async fn serve_metrics(
    settings: &MetricsSettings,
    health: &Health,
    shutdown: Shutdown,
) -> anyhow::Result<Option<SocketAddr>> {
    match &settings.addr {
        Some(addr) => Ok(Some(
            pinnacle_common::metrics::serve(addr, health, shutdown).await?,
        )),
        None => Ok(None),
    }
}
