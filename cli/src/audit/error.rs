//! [`AuditCliError`]: why an audit consumer could not run.

/// Why a consumer could not run (problems found by `verify` are in its [`Report`](pinnacle_common::audit::verify::Report)).
#[derive(Debug, thiserror::Error)]
pub enum AuditCliError {
    /// NATS or JetStream failed.
    #[error("audit stream: {0}")]
    Nats(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Writing the output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
    /// No message arrived for this long while reading a stream that should have more.
    #[error("audit stream stalled after seq {0}")]
    Stalled(u64),
}

pub(super) fn nats(e: impl std::fmt::Display) -> AuditCliError {
    AuditCliError::Nats(e.to_string())
}
