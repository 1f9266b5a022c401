//! Registering every metric family: one table of names, help texts, buckets and labels,
//! read once when the process-wide [`Metrics`] is first used. `Metrics::new` stays one
//! long function on purpose: it is that table, read and reviewed next to
//! [`crate::FAMILIES`]; splitting it would scatter one table.

use std::sync::atomic::{AtomicI64, AtomicU8};

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use super::{Metrics, EVENT_LAG_BUCKETS, ORDER_LATENCY_BUCKETS};

impl Metrics {
    #[allow(clippy::expect_used)]
    pub(crate) fn new() -> Self {
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
        let order_errors = IntCounterVec::new(
            Opts::new(
                "pinnacle_order_errors_total",
                "Order requests answered with an error, by verb and error code",
            ),
            &["verb", "code"],
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
        let orders_found_after_not_at_broker = IntCounter::new(
            "pinnacle_orders_found_after_not_at_broker_total",
            "Orders settled as NOT_AT_BROKER that the broker reported afterwards (a request that reached it after its worker's lease and grace had passed): check the account at the broker",
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
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "pinnacle_queue_depth",
                "Requests received by a queue-group member and waiting for a free slot",
            ),
            &["service"],
        )
        .expect("valid gauge");
        let queue_group_changes = IntCounterVec::new(
            Opts::new(
                "pinnacle_queue_group_changes_total",
                "Times a queue-group member left its group at capacity or rejoined it",
            ),
            &["service", "change"],
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
        let order_outbox_backlog = IntGauge::new(
            "pinnacle_order_outbox_backlog",
            "Order events committed but not yet stored in ORDER_EVENTS (outbox rows)",
        )
        .expect("valid gauge");
        let order_event_lag = Histogram::with_opts(
            HistogramOpts::new(
                "pinnacle_order_event_lag_seconds",
                "Order state change committed to its event stored in ORDER_EVENTS, seconds",
            )
            .buckets(EVENT_LAG_BUCKETS.to_vec()),
        )
        .expect("valid histogram");
        for collector in [
            Box::new(order_latency.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(orders.clone()),
            Box::new(order_errors.clone()),
            Box::new(ticks_published.clone()),
            Box::new(feed_lag.clone()),
            Box::new(audit_publish_failures.clone()),
            Box::new(audit_stream_available.clone()),
            Box::new(audit_checkpoint_failures.clone()),
            Box::new(credential_decrypts.clone()),
            Box::new(orders_found_after_not_at_broker.clone()),
            Box::new(nats_reconnects.clone()),
            Box::new(queue_depth.clone()),
            Box::new(queue_group_changes.clone()),
            Box::new(nats_rebuilds.clone()),
            Box::new(broker_requests.clone()),
            Box::new(smartapi_rate_queued.clone()),
            Box::new(smartapi_rate_delayed.clone()),
            Box::new(smartapi_rate_refused.clone()),
            Box::new(smartapi_rate_store_errors.clone()),
            Box::new(smartapi_rate_store_seconds.clone()),
            Box::new(order_outbox_backlog.clone()),
            Box::new(order_event_lag.clone()),
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
            order_errors,
            ticks_published,
            feed_lag,
            audit_publish_failures,
            audit_stream_available,
            audit_checkpoint_failures,
            credential_decrypts,
            orders_found_after_not_at_broker,
            nats_reconnects,
            queue_depth,
            queue_group_changes,
            nats_rebuilds,
            broker_requests,
            smartapi_rate_queued,
            smartapi_rate_delayed,
            smartapi_rate_refused,
            smartapi_rate_store_errors,
            smartapi_rate_store_seconds,
            order_outbox_backlog,
            order_event_lag,
            last_tick_ms: AtomicI64::new(0),
            publisher_started_ms: AtomicI64::new(0),
            enabled: AtomicU8::new(0),
            registry,
        }
    }
}
