//! Prometheus metrics: one process-wide registry holding every family Pinnacle exports,
//! and the `GET /metrics` endpoint served on `PINNACLE_METRICS_ADDR`.
//!
//! Labels only ever take values from small closed sets (a verb, an outcome, a broker, a
//! service name). A user id, order id, client code or symbol is never a label: label
//! values come from [`verb_label`], [`outcome_label`] and other `&'static str` constants.
//! `pinnacle dev` runs every service in one process, so it serves one endpoint for all of
//! them; `pinnacle serve <service>` serves one per process.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder as _, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::error::ErrorCode;
use crate::shutdown::Shutdown;
use crate::subjects::verbs;

/// Order latency buckets, seconds: dense from 100 µs to 10 ms (where a paper order
/// lands), then sparse up to a second (a live broker's round trip).
pub const ORDER_LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Every metric family, registered once in [`Metrics::registry`].
#[derive(Debug)]
pub struct Metrics {
    /// `pinnacle_order_latency_seconds{verb}`: request received → reply sent, in the worker.
    pub order_latency: HistogramVec,
    /// `pinnacle_orders_total{verb,outcome}`: order requests answered, by outcome.
    pub orders: IntCounterVec,
    /// `pinnacle_ticks_published_total`: ticks handed to NATS by the publisher.
    pub ticks_published: IntCounter,
    /// `pinnacle_feed_lag_seconds`: now − exchange timestamp of the last published tick.
    pub feed_lag: Gauge,
    /// `pinnacle_audit_publish_failures_total`: audit events JetStream did not store.
    pub audit_publish_failures: IntCounter,
    /// `pinnacle_audit_stream_available`: 1 while the AUDIT stream takes events, 0 once it
    /// is found missing (every credential access is then refused).
    pub audit_stream_available: IntGauge,
    /// `pinnacle_audit_checkpoint_failures_total`: checkpoints that could not be stored
    /// (retried; the chain stays unsealed meanwhile).
    pub audit_checkpoint_failures: IntCounter,
    /// `pinnacle_credential_decrypts_total{outcome}`: credential decrypts, `ok` or `failed`.
    pub credential_decrypts: IntCounterVec,
    /// `pinnacle_nats_reconnects_total{service}`: reconnections after a lost connection.
    pub nats_reconnects: IntCounterVec,
    /// `pinnacle_nats_rebuilds_total{service}`: connections rebuilt, with every
    /// subscription, after the async-nats connection handler died (see `supervise`).
    pub nats_rebuilds: IntCounterVec,
    /// `pinnacle_broker_requests_total{broker,operation,outcome}`: calls to a broker.
    pub broker_requests: IntCounterVec,
    /// `pinnacle_smartapi_rate_queued{bucket}`: SmartAPI requests waiting for their turn
    /// or their window, by rate-limit bucket (never by client code).
    pub smartapi_rate_queued: IntGaugeVec,
    /// `pinnacle_smartapi_rate_delayed_total{bucket}`: requests sent after waiting.
    pub smartapi_rate_delayed: IntCounterVec,
    /// `pinnacle_smartapi_rate_refused_total{bucket}`: requests refused `RATE_LIMITED`
    /// by Pinnacle's limiter (never sent).
    pub smartapi_rate_refused: IntCounterVec,
    /// `pinnacle_smartapi_rate_store_errors_total`: shared-window look-ups that failed
    /// (the request was limited by the process's own windows instead).
    pub smartapi_rate_store_errors: IntCounter,
    /// `pinnacle_smartapi_rate_store_seconds`: one shared-window look-up (KV read and
    /// compare-and-set).
    pub smartapi_rate_store_seconds: Histogram,
    /// The registry `/metrics` renders.
    registry: Registry,
}

/// The process-wide metrics, created and registered on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        // The definitions below are constants: failing here is a programming error.
        let registry = Registry::new();
        let order_latency = HistogramVec::new(
            HistogramOpts::new(
                "pinnacle_order_latency_seconds",
                "Order request latency in the worker, from receipt to reply, seconds",
            )
            .buckets(ORDER_LATENCY_BUCKETS.to_vec()),
            &["verb"],
        )
        .expect("valid histogram");
        let orders = IntCounterVec::new(
            Opts::new(
                "pinnacle_orders_total",
                "Order requests answered, by verb and outcome (ok, an order status, or an error code)",
            ),
            &["verb", "outcome"],
        )
        .expect("valid counter");
        let ticks_published = IntCounter::new(
            "pinnacle_ticks_published_total",
            "Ticks published on md.tick.*",
        )
        .expect("valid counter");
        let feed_lag = Gauge::new(
            "pinnacle_feed_lag_seconds",
            "Now minus the exchange timestamp of the last published tick, seconds",
        )
        .expect("valid gauge");
        let audit_publish_failures = IntCounter::new(
            "pinnacle_audit_publish_failures_total",
            "Audit events the audit stream did not acknowledge (the access was refused)",
        )
        .expect("valid counter");
        let audit_stream_available = IntGauge::new(
            "pinnacle_audit_stream_available",
            "1 while the AUDIT stream takes events, 0 once it was found missing (credential access refused)",
        )
        .expect("valid gauge");
        let audit_checkpoint_failures = IntCounter::new(
            "pinnacle_audit_checkpoint_failures_total",
            "Audit checkpoints that could not be stored (retried later)",
        )
        .expect("valid counter");
        let credential_decrypts = IntCounterVec::new(
            Opts::new(
                "pinnacle_credential_decrypts_total",
                "Broker credential decrypts, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid counter");
        let nats_reconnects = IntCounterVec::new(
            Opts::new(
                "pinnacle_nats_reconnects_total",
                "NATS reconnections after a lost connection, by service connection",
            ),
            &["service"],
        )
        .expect("valid counter");
        let nats_rebuilds = IntCounterVec::new(
            Opts::new(
                "pinnacle_nats_rebuilds_total",
                "NATS connections rebuilt after their connection handler died, by service",
            ),
            &["service"],
        )
        .expect("valid counter");
        let broker_requests = IntCounterVec::new(
            Opts::new(
                "pinnacle_broker_requests_total",
                "Calls to a broker, by broker, operation and outcome",
            ),
            &["broker", "operation", "outcome"],
        )
        .expect("valid counter");
        let smartapi_rate_queued = IntGaugeVec::new(
            Opts::new(
                "pinnacle_smartapi_rate_queued",
                "SmartAPI requests waiting for their rate-limit window, by bucket",
            ),
            &["bucket"],
        )
        .expect("valid gauge");
        let smartapi_rate_delayed = IntCounterVec::new(
            Opts::new(
                "pinnacle_smartapi_rate_delayed_total",
                "SmartAPI requests sent after waiting for their rate-limit window, by bucket",
            ),
            &["bucket"],
        )
        .expect("valid counter");
        let smartapi_rate_refused = IntCounterVec::new(
            Opts::new(
                "pinnacle_smartapi_rate_refused_total",
                "SmartAPI requests refused RATE_LIMITED by Pinnacle's limiter, by bucket",
            ),
            &["bucket"],
        )
        .expect("valid counter");
        let smartapi_rate_store_errors = IntCounter::new(
            "pinnacle_smartapi_rate_store_errors_total",
            "Shared SmartAPI rate-window look-ups that failed (limited per process instead)",
        )
        .expect("valid counter");
        let smartapi_rate_store_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "pinnacle_smartapi_rate_store_seconds",
                "One shared SmartAPI rate-window look-up (KV read and compare-and-set), seconds",
            )
            .buckets(ORDER_LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid histogram");
        for collector in [
            Box::new(order_latency.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(orders.clone()),
            Box::new(ticks_published.clone()),
            Box::new(feed_lag.clone()),
            Box::new(audit_publish_failures.clone()),
            Box::new(audit_stream_available.clone()),
            Box::new(audit_checkpoint_failures.clone()),
            Box::new(credential_decrypts.clone()),
            Box::new(nats_reconnects.clone()),
            Box::new(nats_rebuilds.clone()),
            Box::new(broker_requests.clone()),
            Box::new(smartapi_rate_queued.clone()),
            Box::new(smartapi_rate_delayed.clone()),
            Box::new(smartapi_rate_refused.clone()),
            Box::new(smartapi_rate_store_errors.clone()),
            Box::new(smartapi_rate_store_seconds.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        // Both outcomes exist from the start, so a rate over them is defined.
        for outcome in ["ok", "failed"] {
            credential_decrypts.with_label_values(&[outcome]);
        }
        Self {
            order_latency,
            orders,
            ticks_published,
            feed_lag,
            audit_publish_failures,
            audit_stream_available,
            audit_checkpoint_failures,
            credential_decrypts,
            nats_reconnects,
            nats_rebuilds,
            broker_requests,
            smartapi_rate_queued,
            smartapi_rate_delayed,
            smartapi_rate_refused,
            smartapi_rate_store_errors,
            smartapi_rate_store_seconds,
            registry,
        }
    }

    /// Moves the number of SmartAPI requests queued in `bucket` by `delta`.
    pub fn smartapi_rate_queued(&self, bucket: &'static str, delta: i64) {
        self.smartapi_rate_queued
            .with_label_values(&[bucket])
            .add(delta);
    }

    /// Records a SmartAPI request sent after waiting in `bucket`.
    pub fn smartapi_rate_delayed(&self, bucket: &'static str) {
        self.smartapi_rate_delayed
            .with_label_values(&[bucket])
            .inc();
    }

    /// Records a SmartAPI request refused by Pinnacle's limiter in `bucket`.
    pub fn smartapi_rate_refused(&self, bucket: &'static str) {
        self.smartapi_rate_refused
            .with_label_values(&[bucket])
            .inc();
    }

    /// Records a failed shared-window look-up.
    pub fn smartapi_rate_store_error(&self) {
        self.smartapi_rate_store_errors.inc();
    }

    /// Records one shared-window look-up's round trip.
    pub fn smartapi_rate_store_round_trip(&self, elapsed: Duration) {
        self.smartapi_rate_store_seconds
            .observe(elapsed.as_secs_f64());
    }

    /// Records one answered order request.
    pub fn order_answered(&self, verb: &str, elapsed: Duration, outcome: &str) {
        let verb = verb_label(verb);
        self.order_latency
            .with_label_values(&[verb])
            .observe(elapsed.as_secs_f64());
        self.orders.with_label_values(&[verb, outcome]).inc();
    }

    /// Records one broker call.
    pub fn broker_request(&self, broker: &'static str, operation: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.broker_requests
            .with_label_values(&[broker, operation, outcome])
            .inc();
    }

    /// Records one credential decrypt.
    pub fn credential_decrypt(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.credential_decrypts.with_label_values(&[outcome]).inc();
    }

    /// Everything in the registry, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "could not encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Counts a failed audit publish and passes the error on (one call where
/// `AuditLog::record` fails).
pub fn audit_publish_failed(error: crate::audit::AuditError) -> crate::audit::AuditError {
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
pub fn audit_checkpoint_failed(error: &crate::audit::AuditError) {
    metrics().audit_checkpoint_failures.inc();
    if error.is_stream_unavailable() {
        audit_stream_available(false);
    }
}

/// The verb as a label: one of `subjects::verbs::ALL`, or `other` (a subject is
/// caller-chosen, so an unknown verb must not create a new series).
pub fn verb_label(verb: &str) -> &'static str {
    verbs::ALL
        .iter()
        .find(|known| **known == verb)
        .copied()
        .unwrap_or("other")
}

/// An error code as an outcome label, in lower case (`broker_rejected`).
pub fn outcome_label(code: ErrorCode) -> String {
    code.as_str().to_ascii_lowercase()
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
    use super::*;

    #[test]
    fn unknown_verbs_share_one_label() {
        assert_eq!(verb_label("place"), "place");
        assert_eq!(verb_label("0193-some-user-chosen-text"), "other");
        assert_eq!(outcome_label(ErrorCode::BrokerRejected), "broker_rejected");
    }

    #[test]
    fn a_missing_audit_stream_clears_the_availability_gauge() {
        audit_stream_available(true);
        let error = audit_publish_failed(crate::audit::AuditError::stream_missing());
        assert!(
            error.to_string().starts_with("audit stream unavailable:"),
            "{error}"
        );
        assert_eq!(metrics().audit_stream_available.get(), 0);
        let _ = audit_publish_failed(crate::audit::AuditError::Timeout(Duration::from_secs(1)));
        assert_eq!(
            metrics().audit_stream_available.get(),
            0,
            "a timeout says nothing"
        );
        audit_stream_available(true);
        assert_eq!(metrics().audit_stream_available.get(), 1);
    }

    #[test]
    fn renders_every_family_in_text_format() {
        let m = metrics();
        m.order_answered("place", Duration::from_micros(300), "filled");
        m.ticks_published.inc();
        let text = m.render();
        for name in [
            "pinnacle_order_latency_seconds_bucket",
            "pinnacle_orders_total",
            "pinnacle_ticks_published_total",
            "pinnacle_feed_lag_seconds",
            "pinnacle_audit_publish_failures_total",
            "pinnacle_audit_stream_available",
            "pinnacle_audit_checkpoint_failures_total",
            "pinnacle_credential_decrypts_total",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("le=\"0.0001\""), "{text}");
    }
}
