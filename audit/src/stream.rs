//! The AUDIT stream's definition, and how a service finds or creates it at start-up.
//!
//! Services call [`prepare_stream`], which creates the stream only on a fresh install and
//! never re-creates one that held history; [`ensure_stream`] is for an operator's deliberate
//! re-creation and for tests. What `pinnacle audit verify` checks of the stream as it stands
//! is in [`super::stream_check`].

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::error::AuditError;
use pinnacle_protocol::subjects;

/// The stream definition: file storage, no message delete, no purge, no rollup.
pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: subjects::AUDIT_STREAM.to_string(),
        description: Some("Pinnacle credential-access audit trail".into()),
        subjects: vec![subjects::AUDIT_ALL.to_string()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: replicas,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Creates the audit stream if it does not exist; leaves an existing one untouched. For an
/// operator's deliberate re-creation and for tests: services call [`prepare_stream`], which
/// never re-creates a stream that held history.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<stream::Stream, AuditError> {
    js.get_or_create_stream(stream_config(1))
        .await
        .map_err(|e| AuditError::Publish(e.to_string()))
}

/// What a service found when it prepared the audit stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// AUDIT exists (left untouched).
    Found,
    /// AUDIT did not exist and nothing was ever audited: a fresh install, so it was created.
    Created,
}

/// A service's start-up check: AUDIT exists, or is created when it never held anything.
///
/// A missing AUDIT while `db` holds audit checkpoints means its history was lost (deleted,
/// or a wiped JetStream store). Re-creating it empty would hide that, so this refuses with
/// [`AuditError::StreamUnavailable`]: the service keeps running and refuses every
/// credential access (fail closed) until an operator restores the stream
/// (docs/AUDIT.md, "When AUDIT is missing"). The gauge `pinnacle_audit_stream_available`
/// follows the outcome.
pub async fn prepare_stream(
    js: &jetstream::Context,
    db: &sea_orm::DatabaseConnection,
) -> Result<Prepared, AuditError> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    let result = match js.get_stream(subjects::AUDIT_STREAM).await {
        Ok(_) => Ok(Prepared::Found),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(js_error)
                if js_error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                create_unless_lost(js, db).await
            }
            _ => Err(AuditError::read("looking up the stream", e)),
        },
    };
    crate::metrics::audit_stream_available(result.is_ok());
    result
}

/// AUDIT is missing: creates it when `db` holds no audit checkpoint (nothing was ever
/// audited), refuses when it does (its history was lost).
async fn create_unless_lost(
    js: &jetstream::Context,
    db: &sea_orm::DatabaseConnection,
) -> Result<Prepared, AuditError> {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let checkpoints = pinnacle_store::entities::audit_checkpoints::Entity::find()
        .count(db)
        .await
        .map_err(|e| AuditError::Checkpoint(e.to_string()))?;
    if checkpoints > 0 {
        return Err(AuditError::StreamUnavailable(format!(
            "the {} stream is missing but the database holds {checkpoints} audit \
             checkpoints: its history was lost, so it is not re-created; an operator \
             must restore it (docs/AUDIT.md, \"When AUDIT is missing\")",
            subjects::AUDIT_STREAM
        )));
    }
    ensure_stream(js).await.map(|_| Prepared::Created)
}
