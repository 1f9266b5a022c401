//! A global subscriber that keeps every log line and span field in memory, so a test can
//! prove that no secret ever reached the logs or the spans.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut captured) = self.0.lock() {
            captured.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test binary) at `trace` level for Pinnacle's
/// crates, with span fields on every line and the OpenTelemetry layer, as in production.
pub fn install() {
    CAPTURED.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buffer.clone());
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        // Routed per component, as `pinnacle dev` does.
        let (tracer, _providers) = pinnacle_common::telemetry::tracer(
            pinnacle_common::telemetry::Services::Components("pinnacle-tests"),
        )
        .expect("tracer");
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info,pinnacle=trace,pinnacle_common=trace,pinnacle_store=trace,pinnacle_runtime=trace,pinnacle_audit=trace,pinnacle_order_worker=trace,pinnacle_user_api=trace,pinnacle_publisher=trace,pinnacle_cli=trace"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
                    .with_writer(move || sink.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .try_init();
        buffer
    });
}

/// Everything captured so far, as text.
pub fn captured() -> String {
    CAPTURED
        .get()
        .and_then(|b| {
            b.lock()
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_default()
}
