//! One `service.name` per component, even when several share a process (`pinnacle dev`).
//!
//! A tracer provider carries one resource, so one provider per component: [`RoutingTracer`]
//! is the tracer behind the OpenTelemetry layer and starts each span with the tracer of the
//! component that owns it:
//!
//! 1. a span created in a component's crate (its `tracing` target starts with
//!    `pinnacle_order_worker`, `pinnacle_publisher` or `pinnacle_user_api`) is that
//!    component's;
//! 2. any other span (database, audit, SmartAPI, all created in shared crates) belongs to
//!    the component of its in-process parent span;
//! 3. a span with neither (a root in a shared crate, or a child of a remote parent) goes to
//!    the process's default provider.
//!
//! Rule 2 needs the owner of a parent that is still open: owners are kept in a map from span
//! id, filled when a span starts and emptied when it ends (by [`Forget`], a span processor
//! on every component provider).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{SpanBuilder, SpanId, TraceContextExt, Tracer};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracer, SpanData, SpanProcessor};

/// A Pinnacle component with a service name of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// The market-data publisher and its request service.
    Publisher,
    /// The order worker.
    OrderWorker,
    /// The user API.
    UserApi,
}

impl Component {
    /// Every component, in the order `pinnacle dev` starts them.
    pub const ALL: [Component; 3] = [Self::OrderWorker, Self::Publisher, Self::UserApi];

    /// Its default `service.name`.
    pub fn service_name(self) -> &'static str {
        match self {
            Self::Publisher => "pinnacle-publisher",
            Self::OrderWorker => "pinnacle-order-worker",
            Self::UserApi => "pinnacle-user-api",
        }
    }

    /// The crate (as a `tracing` target prefix) whose spans are this component's.
    fn crate_target(self) -> &'static str {
        match self {
            Self::Publisher => "pinnacle_publisher",
            Self::OrderWorker => "pinnacle_order_worker",
            Self::UserApi => "pinnacle_user_api",
        }
    }

    /// The component whose crate a `tracing` target (a module path) lies in.
    pub fn of_target(target: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| {
            target
                .strip_prefix(c.crate_target())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
    }
}

/// Which component started each open span.
type Owners = Arc<Mutex<HashMap<SpanId, usize>>>;

/// Starts every span with its component's tracer (see the module docs).
#[derive(Clone, Debug)]
pub struct RoutingTracer {
    /// The process's own provider: spans no component owns.
    default: SdkTracer,
    /// One tracer per component that has its own provider; empty when the process runs one
    /// service (then every span is the default's).
    components: Arc<Vec<(Component, SdkTracer)>>,
    /// The owner (an index into `components`) of each open span of a component.
    owners: Owners,
}

impl RoutingTracer {
    /// A tracer that sends everything to `default`.
    pub fn single(default: SdkTracer) -> Self {
        Self {
            default,
            components: Arc::new(Vec::new()),
            owners: Owners::default(),
        }
    }

    /// A tracer with one tracer per component; `owners` is shared with the [`Forget`]
    /// processor of each component's provider.
    pub(super) fn routed(
        default: SdkTracer,
        components: Vec<(Component, SdkTracer)>,
        owners: Owners,
    ) -> Self {
        Self {
            default,
            components: Arc::new(components),
            owners,
        }
    }

    /// The map [`Forget`] and [`RoutingTracer::routed`] share.
    pub(super) fn new_owners() -> Owners {
        Owners::default()
    }

    /// The index of the component that owns a span about to start.
    fn owner(&self, builder: &SpanBuilder, parent_cx: &Context) -> Option<usize> {
        let target = builder
            .attributes
            .iter()
            .flatten()
            .find(|kv| kv.key.as_str() == "target")
            .map(|kv| kv.value.as_str());
        if let Some(component) = target.and_then(|t| Component::of_target(&t)) {
            return self.components.iter().position(|(c, _)| *c == component);
        }
        let parent = parent_cx.span();
        let parent = parent.span_context();
        if !parent.is_valid() || parent.is_remote() {
            return None;
        }
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.get(&parent.span_id()).copied()
    }
}

impl Tracer for RoutingTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        if self.components.is_empty() {
            return self.default.build_with_context(builder, parent_cx);
        }
        match self.owner(&builder, parent_cx) {
            Some(index) => {
                let span = self.components[index]
                    .1
                    .build_with_context(builder, parent_cx);
                // Only a recording span reaches `Forget::on_end`, so only it is remembered.
                if opentelemetry::trace::Span::is_recording(&span) {
                    let id = opentelemetry::trace::Span::span_context(&span).span_id();
                    let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
                    owners.insert(id, index);
                }
                span
            }
            None => self.default.build_with_context(builder, parent_cx),
        }
    }
}

/// Forgets a span's owner once it ended (a processor on every component's provider).
#[derive(Debug)]
pub(super) struct Forget(pub(super) Owners);

impl SpanProcessor for Forget {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let mut owners = self.0.lock().unwrap_or_else(|e| e.into_inner());
        owners.remove(&span.span_context.span_id());
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Component;

    #[test]
    fn a_target_belongs_to_the_crate_it_names_exactly() {
        assert_eq!(
            Component::of_target("pinnacle_order_worker::handler"),
            Some(Component::OrderWorker)
        );
        assert_eq!(
            Component::of_target("pinnacle_user_api"),
            Some(Component::UserApi)
        );
        assert_eq!(
            Component::of_target("pinnacle_publisher::service"),
            Some(Component::Publisher)
        );
        for shared in [
            "pinnacle_common::db",
            "pinnacle_smartapi::rest",
            "pinnacle_publisherx::a",
        ] {
            assert_eq!(Component::of_target(shared), None, "{shared}");
        }
    }
}
