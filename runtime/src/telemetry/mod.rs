//! Telemetry: `tracing` always, OpenTelemetry OTLP export when configured, and W3C trace
//! context carried in NATS headers.
//!
//! Every span gets an OpenTelemetry trace id, even with no exporter, so `traceparent`
//! propagates and audit events can name their trace. Spans are exported over OTLP/HTTP
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set; the standard `OTEL_*` variables configure the exporter.
//!
//! Each component exports under its own `service.name` ([`Services`]; [`services`] routes
//! the spans of `pinnacle dev`, where components share a process). Trace context travels
//! in NATS headers ([`inject_context`], [`set_parent_from`]), HTTP headers
//! ([`set_parent_from_http`]) and stored rows ([`current_traceparent`]).

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod services;

pub use services::{Component, RoutingTracer};

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("telemetry setup failed: {0}")]
pub struct TelemetryError(String);

/// Flushes and shuts the exporters down when dropped. Keep it alive for the process.
#[derive(Debug)]
pub struct TelemetryGuard {
    providers: Vec<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        for provider in &self.providers {
            let _ = provider.shutdown();
        }
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// Which `service.name` the spans of a process carry.
#[derive(Clone, Copy, Debug)]
pub enum Services {
    /// One service per process (`pinnacle serve <service>`, the operator verbs): every span
    /// carries this name, unless `OTEL_SERVICE_NAME` names the process otherwise.
    One(&'static str),
    /// Every component in one process (`pinnacle dev`): each component's spans carry its
    /// own [`Component::service_name`]; the rest (the process's own setup) carry this name,
    /// or `OTEL_SERVICE_NAME` when it is set.
    Components(&'static str),
}

/// Builds a tracer provider, with an OTLP/HTTP exporter when one is configured. With
/// `overridable`, `OTEL_SERVICE_NAME` (read by the SDK's resource detectors) wins over
/// `service_name`.
fn provider(
    service_name: &str,
    overridable: bool,
    forget: Option<services::Forget>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|s| !s.trim().is_empty());
    let mut resource = Resource::builder();
    if !(named && overridable) {
        resource = resource.with_service_name(service_name.to_string());
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
    if let Some(forget) = forget {
        builder = builder.with_span_processor(forget);
    }
    if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| TelemetryError(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Builds the providers `services` needs (the default one first) and the tracer that
/// routes each span to its component's provider.
pub fn tracer(
    services: Services,
) -> Result<(RoutingTracer, Vec<SdkTracerProvider>), TelemetryError> {
    match services {
        Services::One(name) => {
            let default = provider(name, true, None)?;
            let tracer = RoutingTracer::single(default.tracer(name));
            Ok((tracer, vec![default]))
        }
        Services::Components(name) => {
            let default = provider(name, true, None)?;
            let owners = RoutingTracer::new_owners();
            let mut providers = vec![default.clone()];
            let mut tracers = Vec::new();
            for component in Component::ALL {
                let own = provider(
                    component.service_name(),
                    false,
                    Some(services::Forget(owners.clone())),
                )?;
                tracers.push((component, own.tracer(component.service_name())));
                providers.push(own);
            }
            let tracer = RoutingTracer::routed(default.tracer(name), tracers, owners);
            Ok((tracer, providers))
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filtering (default `info`), human or JSON
/// lines on stderr (`PINNACLE_LOG_FORMAT=json`), and the OpenTelemetry layer, exporting
/// under the service names `services` gives.
pub fn init(services: Services) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (tracer, providers) = tracer(services)?;
    if let Some(default) = providers.first() {
        opentelemetry::global::set_tracer_provider(default.clone());
    }
    // async-nats logs message headers (bearer tokens) at trace level: cap it at info,
    // whatever RUST_LOG says.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            "async_nats=info"
                .parse()
                .map_err(|e| TelemetryError(format!("{e}")))?,
        );
    let json = std::env::var("PINNACLE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        // Colour only on a terminal: a log file or a pipe gets plain text.
        use std::io::IsTerminal as _;
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|e| TelemetryError(e.to_string()))?;
    Ok(TelemetryGuard { providers })
}

/// Writes into NATS headers, skipping empty values: an empty `tracestate` is never sent.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.insert(key, value.as_str());
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Reads W3C trace context from HTTP request headers.
struct HttpExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's W3C trace context into `headers`: `traceparent`, and
/// `tracestate` only when it is not empty.
pub fn inject_context(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the context `extractor` carries, if it carries a valid one.
fn set_parent_from_extractor(span: &tracing::Span, extractor: &dyn Extractor) {
    let cx = TraceContextPropagator::new().extract(extractor);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` a child of the trace context carried in `headers`, if there is one.
pub fn set_parent_from(span: &tracing::Span, headers: Option<&HeaderMap>) {
    if let Some(headers) = headers {
        set_parent_from_extractor(span, &HeaderExtractor(headers));
    }
}

/// Makes `span` a child of the trace context in an HTTP request's headers, if there is one.
pub fn set_parent_from_http(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    set_parent_from_extractor(span, &HttpExtractor(headers));
}

/// The current span's trace id as 32 hex characters, when it has a valid one.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The current span's context as a W3C `traceparent` value, when it has a valid one (for
/// work done later on the request's behalf, such as an outbox row).
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of a stored `traceparent` value, if it is a valid one.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    let carrier =
        std::collections::HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    set_parent_from_extractor(span, &carrier);
}

/// Marks `span` failed: status `ERROR` and `error.type` = the protocol's error code
/// (`UNKNOWN_SYMBOL`, `UNAUTHENTICATED`, …). The span must declare both fields
/// (`otel.status_code` and `error.type`, as `tracing::field::Empty`).
pub fn record_failure(span: &tracing::Span, error_type: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error_type);
}

/// Whether NATS headers carry a trace context (a sampled tick does; most do not).
pub fn is_traced(headers: Option<&HeaderMap>) -> bool {
    headers.is_some_and(|h| h.get(TRACEPARENT).is_some())
}

/// A consumer span (`md.tick.process`) for a tick that carries a trace context (a sampled
/// tick), as a child of the publisher's producer span; [`tracing::Span::none`] for the
/// untraced majority. A macro, so the span belongs to the crate (the component) that
/// consumes the tick.
#[macro_export]
macro_rules! tick_consumer_span {
    ($message:expr) => {{
        let message: &async_nats::Message = $message;
        if $crate::telemetry::is_traced(message.headers.as_ref()) {
            let span = tracing::info_span!(
                "md.tick.process",
                otel.kind = "consumer",
                messaging.system = "nats",
                messaging.operation.type = "process",
                messaging.operation.name = "process",
                messaging.destination.name = %message.subject,
            );
            $crate::telemetry::set_parent_from(&span, message.headers.as_ref());
            span
        } else {
            tracing::Span::none()
        }
    }};
}

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_tracestate_is_not_sent() {
        let mut headers = HeaderMap::new();
        HeaderInjector(&mut headers).set("tracestate", String::new());
        HeaderInjector(&mut headers).set(TRACEPARENT, "00-ab-cd-01".into());
        assert!(headers.get("tracestate").is_none());
        assert_eq!(
            headers.get(TRACEPARENT).map(|v| v.as_str()),
            Some("00-ab-cd-01")
        );
    }
}
