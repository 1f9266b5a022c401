//! Prometheus metrics: [`pinnacle_metrics`] (every family, the one registry, rendering),
//! re-exported here whole, plus what needs this crate's types: the audit counters (they
//! take an [`AuditError`]) and the `GET /metrics` endpoint served on
//! `PINNACLE_METRICS_ADDR` (axum).

use std::net::SocketAddr;

pub use pinnacle_metrics::*;

use crate::audit::AuditError;
use crate::shutdown::Shutdown;

/// Counts a failed audit publish and passes the error on (one call where
/// `AuditLog::record` fails).
pub fn audit_publish_failed(error: AuditError) -> AuditError {
    metrics().audit_publish_failures.inc();
    if error.is_stream_unavailable() {
        audit_stream_available(false);
    }
    error
}

/// Sets `pinnacle_audit_stream_available`.
pub fn audit_stream_available(available: bool) {
    metrics().audit_stream_available.set(i64::from(available));
}

/// Counts a checkpoint that could not be stored.
pub fn audit_checkpoint_failed(error: &AuditError) {
    metrics().audit_checkpoint_failures.inc();
    if error.is_stream_unavailable() {
        audit_stream_available(false);
    }
}

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_missing_audit_stream_clears_the_availability_gauge() {
        audit_stream_available(true);
        let error = audit_publish_failed(AuditError::stream_missing());
        assert!(
            error.to_string().starts_with("audit stream unavailable:"),
            "{error}"
        );
        assert_eq!(metrics().audit_stream_available.get(), 0);
        let _ = audit_publish_failed(AuditError::Timeout(Duration::from_secs(1)));
        assert_eq!(
            metrics().audit_stream_available.get(),
            0,
            "a timeout says nothing"
        );
        audit_stream_available(true);
        assert_eq!(metrics().audit_stream_available.get(), 1);
    }
}
