//! How the stack's services are run and stopped: the shutdown bound and grace, the
//! watchdog, and joining the service tasks.

use std::time::Duration;

use anyhow::Context as _;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::supervise::Run;
use tokio::task::JoinSet;

/// After the stop signal, how long the services get to finish what they hold (answer the
/// requests they took, drain the outbox, seal the audit chain, flush) before they are
/// abandoned, as a crash would leave them (docs/CONFIGURATION.md, "Stopping").
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// The documented bound: a `pinnacle serve` or `pinnacle dev` process exits at most this
/// long after SIGTERM or Ctrl-C, whatever the state of NATS or the database.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// A service task's result, tagged with its name.
pub type ServiceResult = (&'static str, anyhow::Result<()>);

/// Resolves when `signal` does, and from then on holds the process to [`SHUTDOWN_BOUND`]:
/// a watchdog thread ends it (status 1, saying so) if it is still running by then, so no
/// stuck flush, connection or exporter can keep it alive.
pub async fn bounded_stop(signal: impl std::future::Future<Output = ()>) {
    signal.await;
    tracing::info!(
        grace_s = SHUTDOWN_GRACE.as_secs(),
        bound_s = SHUTDOWN_BOUND.as_secs(),
        "stopping"
    );
    arm_watchdog(SHUTDOWN_BOUND);
}

/// Ends the process `bound` from now unless it has exited by itself.
fn arm_watchdog(bound: Duration) {
    let spawned = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            std::thread::sleep(bound);
            eprintln!(
                "error: still running {} s after the stop signal; exiting with work unfinished",
                bound.as_secs()
            );
            std::process::exit(1);
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start the shutdown watchdog");
    }
}

/// Waits for every task in `tasks` for up to [`SHUTDOWN_GRACE`], then aborts the rest;
/// the names of the services that stopped with an error, and an error when some had to be
/// abandoned.
pub(super) async fn join_within_grace(tasks: &mut JoinSet<ServiceResult>) -> anyhow::Result<()> {
    let mut first_error = None;
    let joined = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(e))) => {
                    tracing::error!(service = name, error = %e, "service failed during shutdown");
                    first_error.get_or_insert(e.context(name));
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    first_error.get_or_insert(anyhow::anyhow!("a service panicked: {e}"));
                }
            }
        }
    })
    .await;
    if joined.is_err() {
        let left = tasks.len();
        tasks.abort_all();
        tracing::error!(
            services = left,
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "services did not stop within the grace; abandoned (as after a crash)"
        );
        return Err(anyhow::anyhow!(
            "{left} service(s) did not stop within {} s of the stop signal",
            SHUTDOWN_GRACE.as_secs()
        ));
    }
    first_error.map_or(Ok(()), Err)
}

/// Runs an incarnation's parts until the first one stops, then stops the others; the
/// first one's result, or an error if it stopped on its own.
pub(super) fn first_to_stop(
    mut parts: JoinSet<ServiceResult>,
    stop: Shutdown,
) -> Run<anyhow::Error> {
    Box::pin(async move {
        let first = match parts.join_next().await {
            Some(Ok((name, result))) if stop.is_cancelled() => result.context(name),
            Some(Ok((name, Ok(())))) => Err(anyhow::anyhow!("{name} stopped unexpectedly")),
            Some(Ok((name, Err(error)))) => Err(error.context(format!("{name} failed"))),
            Some(Err(error)) => Err(anyhow::anyhow!("a service task panicked: {error}")),
            None => Ok(()),
        };
        stop.cancel();
        while parts.join_next().await.is_some() {}
        first
    })
}

/// A supervisor's result, with its panic resumed.
pub(super) fn joined(
    result: Result<anyhow::Result<()>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match result {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(anyhow::anyhow!("supervisor stopped: {error}")),
    }
}
