//! The library's error type.

/// Why the simulator could not start or load its data.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the scrip master {path}: {reason}")]
    ScripMaster { path: String, reason: String },
    #[error("cannot read the holiday list {path}: {reason}")]
    Holidays { path: String, reason: String },
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}
