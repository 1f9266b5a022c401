//! Prometheus metrics: [`pinnacle_metrics`] (every family, the one registry, rendering),
//! re-exported here whole, plus the `GET /metrics` endpoint served on
//! `PINNACLE_METRICS_ADDR` (axum). The audit counters, which take an `AuditError`, are
//! `pinnacle_audit::metrics`'s (`pinnacle_common::metrics` re-exports both).

use std::net::SocketAddr;

pub use pinnacle_metrics::*;

use crate::shutdown::Shutdown;

/// The metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("could not serve metrics on {addr}: {source}")]
pub struct MetricsError {
    /// The address asked for.
    pub addr: String,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Serves `GET /metrics`, and `GET /healthz` and `GET /readyz` from `health`, on `addr`
/// until `shutdown` fires; returns the bound address (useful with port 0). This is the
/// only HTTP listener of the publisher and the order worker.
pub async fn serve(
    addr: &str,
    health: &crate::health::Health,
    shutdown: Shutdown,
) -> Result<SocketAddr, MetricsError> {
    let fail = |source| MetricsError {
        addr: addr.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    // Register the families before the first scrape.
    let _ = metrics();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics().render(),
                )
            }),
        )
        .merge(health.routes());
    tokio::spawn(async move {
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(error) = server.await {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
    tracing::info!(addr = %bound, "serving Prometheus metrics on /metrics");
    Ok(bound)
}
