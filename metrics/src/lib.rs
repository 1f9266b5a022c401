//! Prometheus metrics: one process-wide registry ([`metrics`]) holding every family
//! Pinnacle exports, rendered in the text exposition format ([`Metrics::render`]).
//!
//! A crate of its own so that a library low in the stack (the SmartAPI client counts its
//! rate-limit waits here) records metrics without linking a database or an HTTP server:
//! it depends on `prometheus` and `pinnacle-protocol` only. The `GET /metrics` endpoint
//! (axum) and the audit counters (which take an `AuditError`) stay in
//! `pinnacle_common::metrics`, which re-exports this whole crate under that path.
//!
//! Labels only ever take values from small closed sets (a verb, an outcome, a broker, a
//! service name). A user id, order id, client code or symbol is never a label: label
//! values come from [`verb_label`], [`outcome_label`] and other `&'static str` constants.
//!
//! # Whose families a process exports
//! Every family belongs to the components that produce it ([`FAMILIES`]). A process
//! [`Metrics::enable`]s the components it runs, and `/metrics` renders only their
//! families: `pinnacle serve order-worker` exports no publisher family (a
//! `pinnacle_feed_lag_seconds 0` there would make `max(pinnacle_feed_lag_seconds)` read
//! healthy while the publisher is down). `pinnacle dev` runs every component in one
//! process, so it enables and exports all of them.
//!
//! # Feed lag at scrape time
//! `pinnacle_feed_lag_seconds` is computed when `/metrics` is rendered, from the exchange
//! timestamp of the newest published tick (or the publisher's start, before any tick), so
//! it grows while no tick arrives.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder as _, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use pinnacle_protocol::error::ErrorCode;
use pinnacle_protocol::subjects::verbs;

/// Order latency buckets, seconds: dense from 100 µs to 10 ms (where a paper order
/// lands), then sparse up to a second (a live broker's round trip).
pub const ORDER_LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Order-event lag buckets, seconds: a healthy relay stores an event within milliseconds;
/// an outage holds events in the outbox for seconds to minutes.
pub const EVENT_LAG_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// A component whose metric families a process exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The market-data publisher (`pinnacle serve publisher`).
    Publisher,
    /// The order worker (`pinnacle serve order-worker`).
    OrderWorker,
    /// The user API (`pinnacle serve user-api`).
    UserApi,
}

impl Component {
    /// Every component.
    pub const ALL: [Component; 3] = [Self::Publisher, Self::OrderWorker, Self::UserApi];

    /// This component's bit in [`Metrics::enabled`].
    const fn bit(self) -> u8 {
        match self {
            Self::Publisher => 1,
            Self::OrderWorker => 2,
            Self::UserApi => 4,
        }
    }
}

/// Families every component exports: each has its own NATS connection.
const EVERY: &[Component] = &Component::ALL;
/// Families of the services that write audit events.
const AUDITING: &[Component] = &[Component::OrderWorker, Component::UserApi];
const PUBLISHER: &[Component] = &[Component::Publisher];
const WORKER: &[Component] = &[Component::OrderWorker];
/// Families of the components that call SmartAPI: the worker (orders) and the publisher
/// (the platform session's candles).
const SMARTAPI: &[Component] = &[Component::Publisher, Component::OrderWorker];

/// Every family Pinnacle registers and the components that export it (a unit test checks
/// that the registry and this table agree).
pub const FAMILIES: &[(&str, &[Component])] = &[
    ("pinnacle_order_latency_seconds", WORKER),
    ("pinnacle_orders_total", WORKER),
    ("pinnacle_order_errors_total", WORKER),
    ("pinnacle_ticks_published_total", PUBLISHER),
    ("pinnacle_feed_lag_seconds", PUBLISHER),
    ("pinnacle_audit_publish_failures_total", AUDITING),
    ("pinnacle_audit_stream_available", AUDITING),
    ("pinnacle_audit_checkpoint_failures_total", AUDITING),
    ("pinnacle_credential_decrypts_total", WORKER),
    ("pinnacle_nats_reconnects_total", EVERY),
    ("pinnacle_nats_rebuilds_total", EVERY),
    ("pinnacle_broker_requests_total", WORKER),
    ("pinnacle_smartapi_rate_queued", SMARTAPI),
    ("pinnacle_smartapi_rate_delayed_total", SMARTAPI),
    ("pinnacle_smartapi_rate_refused_total", SMARTAPI),
    ("pinnacle_smartapi_rate_store_errors_total", SMARTAPI),
    ("pinnacle_smartapi_rate_store_seconds", SMARTAPI),
    ("pinnacle_order_outbox_backlog", WORKER),
    ("pinnacle_order_event_lag_seconds", WORKER),
    ("pinnacle_queue_depth", WORKER),
    ("pinnacle_queue_group_changes_total", WORKER),
];

/// Every metric family, registered once in [`Metrics::registry`].
#[derive(Debug)]
pub struct Metrics {
    /// `pinnacle_order_latency_seconds{verb}`: request received → reply sent, in the worker.
    pub order_latency: HistogramVec,
    /// `pinnacle_orders_total{verb,outcome}`: order requests answered, by outcome.
    pub orders: IntCounterVec,
    /// `pinnacle_order_errors_total{verb,code}`: order requests answered with an error, by
    /// its code (lower case); the failures of `orders`, for a panel of error codes.
    pub order_errors: IntCounterVec,
    /// `pinnacle_ticks_published_total`: ticks handed to NATS by the publisher.
    pub ticks_published: IntCounter,
    /// `pinnacle_feed_lag_seconds`: now − exchange timestamp of the newest published tick,
    /// set at scrape time from [`Metrics::last_tick_ms`] (see [`Metrics::record_tick`]).
    feed_lag: Gauge,
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
    /// `pinnacle_queue_depth{service}`: requests a queue-group member has received and
    /// not yet started (waiting for a free slot; see `serve::Member`).
    pub queue_depth: IntGaugeVec,
    /// `pinnacle_queue_group_changes_total{service,change}`: times a member left its queue
    /// group at capacity (`left`) and came back (`rejoined`).
    pub queue_group_changes: IntCounterVec,
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
    /// `pinnacle_order_outbox_backlog`: order events committed but not yet stored in
    /// `ORDER_EVENTS` (rows in `order_outbox`), as the worker's relay last counted them.
    pub order_outbox_backlog: IntGauge,
    /// `pinnacle_order_event_lag_seconds`: a state change committed → its event
    /// acknowledged by `ORDER_EVENTS`.
    pub order_event_lag: Histogram,
    /// Exchange timestamp (ms since the epoch) of the newest published tick; 0 before
    /// the first. Feed lag is computed from it at scrape time, so it grows while no tick
    /// arrives.
    last_tick_ms: AtomicI64,
    /// When the publisher was enabled here (ms since the epoch); 0 while no publisher
    /// runs here. Before the first tick the lag counts from it.
    publisher_started_ms: AtomicI64,
    /// The [`Component`]s this process runs (bits): only their families are rendered.
    enabled: AtomicU8,
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

    /// Declares that this process runs `component`: its families are exported from now on.
    /// Enabling the publisher starts the feed-lag clock (the lag before the first tick is
    /// the time since this call).
    pub fn enable(&self, component: Component) {
        if component == Component::Publisher {
            let now = chrono::Utc::now().timestamp_millis();
            let _ = self.publisher_started_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        self.enabled.fetch_or(component.bit(), Ordering::Relaxed);
    }

    /// Whether this process exports `component`'s families.
    pub fn is_enabled(&self, component: Component) -> bool {
        self.enabled.load(Ordering::Relaxed) & component.bit() != 0
    }

    /// Records ticks published with exchange timestamp up to `ts_ms` (ms since the epoch).
    pub fn record_ticks(&self, count: u64, ts_ms: i64) {
        self.ticks_published.inc_by(count);
        self.last_tick_ms.fetch_max(ts_ms, Ordering::Relaxed);
    }

    /// The feed lag now, in seconds: now − the newest tick's exchange timestamp (or the
    /// publisher's start before any tick); `None` while no publisher runs here.
    pub fn feed_lag_seconds(&self) -> Option<f64> {
        let started = self.publisher_started_ms.load(Ordering::Relaxed);
        let last = match self.last_tick_ms.load(Ordering::Relaxed) {
            0 => started,
            tick => tick,
        };
        (started != 0).then(|| {
            let lag_ms = chrono::Utc::now().timestamp_millis() - last;
            lag_ms.max(0) as f64 / 1000.0
        })
    }

    /// Records one order event stored in `ORDER_EVENTS`, committed at `created_at_ms`.
    pub fn order_event_stored(&self, created_at_ms: i64) {
        let lag_ms = chrono::Utc::now().timestamp_millis() - created_at_ms;
        self.order_event_lag.observe(lag_ms.max(0) as f64 / 1000.0);
    }

    /// Creates every SmartAPI rate series of `buckets` at 0, so the dashboard's panels
    /// have data (zero) before the first request waits.
    pub fn smartapi_rate_buckets(&self, buckets: &[&'static str]) {
        for bucket in buckets {
            self.smartapi_rate_queued.with_label_values(&[bucket]);
            self.smartapi_rate_delayed.with_label_values(&[bucket]);
            self.smartapi_rate_refused.with_label_values(&[bucket]);
        }
    }

    /// Records an order request answered with the error `code` (a label from
    /// [`outcome_label`]).
    pub fn order_failed(&self, verb: &str, code: &str) {
        self.order_errors
            .with_label_values(&[verb_label(verb), code])
            .inc();
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

    /// The families of the enabled components, in the Prometheus text exposition format
    /// (feed lag computed now).
    pub fn render(&self) -> String {
        if let Some(lag) = self.feed_lag_seconds() {
            self.feed_lag.set(lag);
        }
        let enabled = self.enabled.load(Ordering::Relaxed);
        let families: Vec<_> = self
            .registry
            .gather()
            .into_iter()
            .filter(|family| {
                owners(family.name())
                    .iter()
                    .any(|component| enabled & component.bit() != 0)
            })
            .collect();
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(%error, "could not encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The components that export the family `name` (none for a name not in [`FAMILIES`]).
pub fn owners(name: &str) -> &'static [Component] {
    FAMILIES
        .iter()
        .find(|(family, _)| *family == name)
        .map_or(&[], |(_, owners)| *owners)
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
    fn renders_every_family_in_text_format() {
        let m = Metrics::new();
        for component in Component::ALL {
            m.enable(component);
        }
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

    /// The names `/metrics` renders (`_bucket`/`_sum`/`_count` folded into their family).
    fn family_names(text: &str) -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// Gives every labelled family one series, so the registry gathers it.
    fn touch_all(m: &Metrics) {
        m.order_answered("place", Duration::from_micros(300), "filled");
        m.order_failed("place", "unauthenticated");
        m.nats_reconnects.with_label_values(&["pinnacle-test"]);
        m.nats_rebuilds.with_label_values(&["pinnacle-test"]);
        m.queue_depth.with_label_values(&["pinnacle-test"]);
        m.queue_group_changes
            .with_label_values(&["pinnacle-test", "left"]);
        m.broker_request("paper", "place_order", true);
        m.smartapi_rate_buckets(&["orders"]);
    }

    #[test]
    fn the_ownership_table_names_every_registered_family() {
        let m = Metrics::new();
        touch_all(&m);
        let registered: std::collections::BTreeSet<String> = m
            .registry
            .gather()
            .iter()
            .map(|family| family.name().to_string())
            .collect();
        let listed: std::collections::BTreeSet<String> =
            FAMILIES.iter().map(|(name, _)| name.to_string()).collect();
        assert_eq!(registered, listed);
        assert!(FAMILIES.iter().all(|(_, owners)| !owners.is_empty()));
    }

    #[test]
    fn a_process_exports_only_its_components_families() {
        let m = Metrics::new();
        touch_all(&m);
        assert!(family_names(&m.render()).is_empty(), "nothing enabled");
        m.enable(Component::OrderWorker);
        // A tick seen in this process (it never happens in a worker) must not leak out.
        m.record_ticks(1, chrono::Utc::now().timestamp_millis());
        let worker = family_names(&m.render());
        for (name, owners) in FAMILIES {
            assert_eq!(
                worker.contains(*name),
                owners.contains(&Component::OrderWorker),
                "{name} in a worker: {worker:?}"
            );
        }
        assert!(!worker.contains("pinnacle_feed_lag_seconds"));
        assert!(!worker.contains("pinnacle_ticks_published_total"));

        let publisher = Metrics::new();
        touch_all(&publisher);
        publisher.enable(Component::Publisher);
        let names = family_names(&publisher.render());
        for family in [
            "pinnacle_feed_lag_seconds",
            "pinnacle_ticks_published_total",
            "pinnacle_nats_reconnects_total",
            "pinnacle_smartapi_rate_refused_total",
        ] {
            assert!(names.contains(family), "{family} in a publisher: {names:?}");
        }
        for family in [
            "pinnacle_orders_total",
            "pinnacle_credential_decrypts_total",
            "pinnacle_audit_publish_failures_total",
            "pinnacle_order_outbox_backlog",
        ] {
            assert!(
                !names.contains(family),
                "{family} in a publisher: {names:?}"
            );
        }

        // `pinnacle dev`: every component, every family.
        for component in Component::ALL {
            m.enable(component);
        }
        assert_eq!(family_names(&m.render()).len(), FAMILIES.len());
    }

    /// The value of the unlabelled sample `name` in `text`.
    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn feed_lag_is_computed_at_scrape_time() {
        let m = Metrics::new();
        assert_eq!(m.feed_lag_seconds(), None, "no publisher, no lag");
        m.enable(Component::Publisher);
        let at_start = m.feed_lag_seconds().expect("the clock started");
        assert!((0.0..1.0).contains(&at_start), "{at_start}");
        // The newest tick is 5 s old: the lag says so without another tick.
        let now = chrono::Utc::now().timestamp_millis();
        m.record_ticks(3, now - 5_000);
        let lag = value(&m.render(), "pinnacle_feed_lag_seconds");
        assert!((5.0..6.0).contains(&lag), "{lag}");
        // An older tick (another symbol's) does not move it back.
        m.record_ticks(1, now - 60_000);
        assert!(m.feed_lag_seconds().is_some_and(|lag| lag < 6.0));
        // It grows while nothing is published.
        m.last_tick_ms.store(now - 30_000, Ordering::Relaxed);
        let later = value(&m.render(), "pinnacle_feed_lag_seconds");
        assert!((30.0..31.0).contains(&later), "{later}");
        assert_eq!(value(&m.render(), "pinnacle_ticks_published_total"), 4.0);
    }
}
