//! The audit counters of [`pinnacle_metrics`]'s one registry: here because they take an
//! [`AuditError`]. `pinnacle_common::metrics` re-exports them beside every other family.

use pinnacle_metrics::metrics;

use crate::error::AuditError;

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
