//! The market-data request-reply service on `md.req.<verb>`: last value, snapshot,
//! candles, symbol search and lookup, market status.
//!
//! It registers with the NATS micro services API as [`SERVICE_NAME`] (`$SRV.PING`,
//! `$SRV.INFO`, `$SRV.STATS`, one endpoint per verb with its own statistics), and each
//! request is handled in an `md.request` server span that continues the caller's
//! `traceparent`.
//!
//! Replies follow the workspace convention: `{"ok":true,"result":…}` or
//! `{"ok":false,"error":{code,message}}` with a `Pinnacle-Error` header, MessagePack
//! unless the request says `Content-Type: application/json`. Market data is public: no
//! token is read, and no per-user credential is ever touched.
//!
//! # Layout
//! - `endpoints`: the service name, one micro endpoint per verb, [`discovery`].
//! - `state`: [`MdService`], everything the service reads.
//! - `handle`: one request → one reply (span, checks, envelope, statistics).
//! - `verbs`: each verb from request to result.

mod endpoints;
mod handle;
mod state;
mod verbs;

use std::sync::Arc;

use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::{serve, subjects};

pub use endpoints::{discovery, ENDPOINTS, SERVICE_NAME};
pub use handle::handle;
pub use state::MdService;
pub use verbs::{SOURCE_ANGEL_ONE, SOURCE_SIMULATED};

/// Requests handled at once.
const CONCURRENCY: usize = 64;

/// The service could not start.
#[derive(Debug, thiserror::Error)]
#[error("could not subscribe to {subject}: {reason}")]
pub struct ServiceError {
    /// The subject.
    pub subject: &'static str,
    /// Why.
    pub reason: String,
}

/// Serves `md.req.>` in the `md-service` queue group until `shutdown` fires.
pub async fn run(service: Arc<MdService>, shutdown: Shutdown) -> Result<(), ServiceError> {
    let (ready, _) = tokio::sync::oneshot::channel();
    run_with_ready(service, shutdown, ready).await
}

/// [`run`], reporting on `ready` once the subscription is in place (or failed).
pub async fn run_with_ready(
    service: Arc<MdService>,
    shutdown: Shutdown,
    ready: tokio::sync::oneshot::Sender<Result<(), ServiceError>>,
) -> Result<(), ServiceError> {
    let subscribed = service
        .client
        .queue_subscribe(subjects::MD_REQUEST_ALL, subjects::MD_QUEUE.into())
        .await
        .map_err(|e| ServiceError {
            subject: subjects::MD_REQUEST_ALL,
            reason: e.to_string(),
        });
    let discovery = match subscribed {
        Ok(subscription) => service
            .micro
            .serve(service.client.clone(), shutdown.clone())
            .await
            .map(|task| (subscription, task))
            .map_err(|e| ServiceError {
                subject: "$SRV.>",
                reason: e.to_string(),
            }),
        Err(error) => Err(error),
    };
    let (subscription, discovery) = match discovery {
        Ok((subscription, discovery)) => {
            // Make sure the server has the subscriptions before anyone relies on them.
            let _ = service.client.flush().await;
            let _ = ready.send(Ok(()));
            (subscription, discovery)
        }
        Err(error) => {
            let _ = ready.send(Err(ServiceError {
                subject: error.subject,
                reason: error.reason.clone(),
            }));
            return Err(error);
        }
    };
    tracing::info!(
        subject = subjects::MD_REQUEST_ALL,
        "market-data service started"
    );
    let handler_service = service.clone();
    serve::serve_requests(subscription, CONCURRENCY, shutdown, move |message| {
        let service = handler_service.clone();
        async move { handle(&service, message).await }
    })
    .await;
    // Requests have stopped (shutdown, or the connection closed): so does discovery.
    discovery.abort();
    let _ = discovery.await;
    // With NATS gone a flush would wait for ever.
    let _ = tokio::time::timeout(crate::SHUTDOWN_FLUSH, service.client.flush()).await;
    tracing::info!("market-data service stopped");
    Ok(())
}
