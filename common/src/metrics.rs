//! Prometheus metrics: `pinnacle_runtime::metrics` (every family of `pinnacle_metrics`, the
//! one registry, and the `GET /metrics` endpoint) and the audit counters of
//! `pinnacle_audit::metrics`, under one path.

pub use pinnacle_audit::metrics::{
    audit_checkpoint_failed, audit_publish_failed, audit_stream_available,
};
pub use pinnacle_runtime::metrics::*;
