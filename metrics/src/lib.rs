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
    Encoder as _, Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Registry, TextEncoder,
};

use pinnacle_protocol::error::ErrorCode;
use pinnacle_protocol::subjects::verbs;

mod families;

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
    ("pinnacle_orders_found_after_not_at_broker_total", WORKER),
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

/// Every metric family, registered once in the process-wide registry that `/metrics` renders.
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
    /// set at scrape time from [`Metrics::last_tick_ms`] (see [`Metrics::record_ticks`]).
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
    /// `pinnacle_orders_found_after_not_at_broker_total`: orders settled as `NOT_AT_BROKER`
    /// that the broker's order-update stream reported afterwards (they reached the broker
    /// after their worker's lease and grace had passed). Alert on any increase.
    pub orders_found_after_not_at_broker: IntCounter,
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
mod tests;
