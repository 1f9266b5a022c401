//! What passes between the handle and the connection task: the events the task reports
//! and the commands it takes.

use secrecy::SecretString;
use tokio::sync::oneshot;

use super::subs::{Instrument, SubscribeError};
use crate::ticks::{Mode, Packet, TickError};

/// What the feed task reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A connection is up and the subscription set has been (re)sent.
    Connected,
    /// The connection ended; the task reconnects after a backoff unless told otherwise.
    Disconnected { reason: String },
    /// The server refused the handshake (401/403). Not retried until new credentials
    /// arrive through [`FeedHandle::update_credentials`](super::FeedHandle::update_credentials). `message` is the server's
    /// `x-error-message` (never our secrets).
    AuthFailed { status: u16, message: String },
    /// One decoded binary packet.
    Tick(Packet),
    /// A binary frame that did not decode (it is skipped).
    BadFrame { error: TickError, len: usize },
    /// An error reply such as `E1002 Invalid Request. Subscription Limit Exceeded`.
    ServerError {
        code: String,
        message: String,
        correlation_id: Option<String>,
    },
    /// A text frame that is neither `pong` nor an error reply.
    Text(String),
}

/// Requests to the connection task.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        mode: Mode,
        instruments: Vec<Instrument>,
        reply: oneshot::Sender<Result<(), SubscribeError>>,
    },
    Unsubscribe {
        mode: Mode,
        instruments: Vec<Instrument>,
        reply: oneshot::Sender<()>,
    },
    UpdateCredentials {
        feed_token: SecretString,
        jwt: Option<SecretString>,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}
