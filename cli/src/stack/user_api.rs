//! The user API: its listening socket and login limits, and each incarnation's audit
//! writer and generation register, under supervision.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pinnacle_common::audit::{AuditChains, AuditLog};
use pinnacle_common::config::{AuditSettings, NatsSettings, UserApiSettings};
use pinnacle_common::crypto::Vault;
use pinnacle_common::health::Health;
use pinnacle_common::metrics::{metrics, Component};
use pinnacle_common::nats::{Connections, Intake};
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::supervise::{self, Policy, Run, Start};
use pinnacle_user_api::limits::Limits;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use tokio::task::JoinSet;

use super::connect::prepare_audit_stream;
use super::lifecycle::{joined, ServiceResult};

/// Starts the user API on `bind`, under supervision; returns the address it listens on.
///
/// The listening socket and the login limits outlive a rebuilt connection: each
/// incarnation serves a duplicate of the same socket, so the address never changes.
#[allow(clippy::too_many_arguments)]
pub async fn spawn_user_api(
    tasks: &mut JoinSet<ServiceResult>,
    nats_settings: &NatsSettings,
    db: DatabaseConnection,
    vault: Arc<Vault>,
    api: &UserApiSettings,
    (audit_timeout, audit_settings, chains): (Duration, AuditSettings, AuditChains),
    health: &Health,
    shutdown: Shutdown,
) -> anyhow::Result<SocketAddr> {
    metrics().enable(Component::UserApi);
    let bind = api.bind.as_str();
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the user API to {bind}"))?;
    let addr = listener.local_addr()?;
    let listener = listener.into_std()?;
    let shared = Shared {
        db,
        vault,
        admin_token: api.admin_token.clone(),
        limits: Arc::new(Limits::default()),
        health: health.clone(),
        chains,
        audit_timeout,
        audit_settings,
    };
    let start = move |connections: Connections, stop: Shutdown| -> Start<anyhow::Error> {
        let socket = listener.try_clone();
        Box::pin(
            shared
                .clone()
                .start(connections.main().clone(), socket, stop),
        )
    };
    let supervisor = supervise::supervise(
        "pinnacle-user-api",
        nats_settings.clone(),
        health.link("pinnacle-user-api"),
        // It takes no NATS requests: one connection.
        Policy {
            intake: Intake::Shared,
            ..Policy::default()
        },
        shutdown,
        start,
    )
    .await?;
    tasks.spawn(async move { ("user-api", joined(supervisor.await)) });
    Ok(addr)
}

/// What every incarnation of the user API shares.
#[derive(Clone)]
struct Shared {
    db: DatabaseConnection,
    vault: Arc<Vault>,
    admin_token: Option<SecretString>,
    limits: Arc<Limits>,
    health: Health,
    chains: AuditChains,
    audit_timeout: Duration,
    audit_settings: AuditSettings,
}

impl Shared {
    /// One incarnation on `client`, serving `socket` until `stop` fires.
    async fn start(
        self,
        client: async_nats::Client,
        socket: std::io::Result<std::net::TcpListener>,
        stop: Shutdown,
    ) -> anyhow::Result<Run<anyhow::Error>> {
        prepare_audit_stream(&client, &self.db, "pinnacle-user-api").await?;
        let listener = tokio::net::TcpListener::from_std(socket?)?;
        let register = pinnacle_common::keystore::Register::new(client.clone(), self.audit_timeout);
        let audit = AuditLog::new(client, self.audit_timeout, self.vault.clone())
            .with_checkpoints(self.db.clone(), self.audit_settings.policy())
            .with_chains(self.chains);
        let state = pinnacle_user_api::AppState {
            db: self.db,
            vault: self.vault,
            audit,
            register,
            admin_token: self.admin_token,
            limits: self.limits,
            health: self.health,
        };
        let run: Run<anyhow::Error> = Box::pin(async move {
            pinnacle_user_api::serve(listener, state, stop)
                .await
                .map_err(Into::into)
        });
        Ok(run)
    }
}
