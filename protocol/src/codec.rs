//! The wire codec: MessagePack maps by default, JSON when the request says so.
//!
//! A request whose `Content-Type` header is `application/json` is decoded as JSON and
//! answered in JSON; anything else is MessagePack with named fields, so clients in any
//! language decode it without Rust structs.
//!
//! Every payload is pre-scanned ([`scan`]) before a deserialiser sees it: at most
//! [`MAX_PAYLOAD_BYTES`] bytes, nested at most [`MAX_DEPTH`] levels, every length within
//! the bytes present. A refused payload is a [`CodecError::Refused`], which endpoints answer
//! with `BAD_PAYLOAD` like any other decoding failure. Headers are bounded the same way by
//! [`check_headers`].

pub mod scan;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{ErrorBody, ErrorCode};
use crate::model::Reply;
use crate::subjects::headers;

pub use scan::{ScanError, MAX_DEPTH, MAX_PAYLOAD_BYTES};

/// The most header values a request may carry (all names together).
pub const MAX_HEADER_VALUES: usize = 64;
/// The most bytes of header names and values a request may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The `Content-Type` value that selects JSON.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// The `Content-Type` value that names MessagePack (also the default when absent).
pub const MSGPACK_CONTENT_TYPE: &str = "application/msgpack";

/// How a payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// MessagePack with named fields (maps). The default.
    #[default]
    MsgPack,
    /// UTF-8 JSON, selected by `Content-Type: application/json`.
    Json,
}

/// Why a payload could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// MessagePack that is malformed or has the wrong shape.
    #[error("invalid MessagePack payload: {0}")]
    MsgPack(#[from] rmp_serde::decode::Error),
    /// Not MessagePack, but what looks like JSON sent without its content type.
    #[error(
        "invalid MessagePack payload: {0} (it looks like JSON: send the header \
         `Content-Type: application/json` with it)"
    )]
    LooksLikeJson(rmp_serde::decode::Error),
    /// JSON that is malformed or has the wrong shape.
    #[error("invalid JSON payload: {0}")]
    Json(#[from] serde_json::Error),
    /// Refused by the pre-scan (too large, too deep, truncated), before any decoding.
    #[error("refused payload: {0}")]
    Refused(#[from] ScanError),
    /// Headers beyond [`MAX_HEADER_VALUES`] or [`MAX_HEADER_BYTES`].
    #[error("headers exceed the limit of {MAX_HEADER_VALUES} values and {MAX_HEADER_BYTES} bytes")]
    Headers,
    /// A value that cannot be represented in MessagePack.
    #[error("could not encode MessagePack: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// The longest `Pinnacle-Request-Id` a service takes as the caller's own.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The caller's `Pinnacle-Request-Id` when it is 1 to [`MAX_REQUEST_ID_LEN`] characters of
/// `A-Z a-z 0-9 - _ . :`; `None` for an absent or any other id, for which the service
/// generates one (and echoes that), so a hostile id never reaches a log or a reply.
pub fn request_id(headers: Option<&HeaderMap>) -> Option<&str> {
    header(headers, headers::REQUEST_ID).filter(|id| {
        !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    })
}

/// Reads a header by name, ignoring ASCII case (`authorization` finds `Authorization`).
pub fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    let headers = headers?;
    if let Some(value) = headers.get(name) {
        return Some(value.as_str());
    }
    headers
        .iter()
        .find(|(key, _)| AsRef::<str>::as_ref(*key).eq_ignore_ascii_case(name))
        .and_then(|(key, _)| headers.get(AsRef::<str>::as_ref(key)))
        .map(|value| value.as_str())
}

/// Every value of header `name` (matched without regard to case), counting repeats of the
/// name and every spelling of it: a request may send a header such as `Authorization` at
/// most once, and must be refused when it sends it twice.
pub fn header_values<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Vec<&'a str> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    headers
        .iter()
        .filter(|(key, _)| AsRef::<str>::as_ref(*key).eq_ignore_ascii_case(name))
        .flat_map(|(_, values)| values.iter().map(|value| value.as_str()))
        .collect()
}

/// Checks that a request's headers stay within [`MAX_HEADER_VALUES`] and
/// [`MAX_HEADER_BYTES`] (async-nats has already parsed them; this bounds what Pinnacle
/// then reads and logs).
pub fn check_headers(headers: Option<&HeaderMap>) -> Result<(), CodecError> {
    let Some(headers) = headers else {
        return Ok(());
    };
    let mut values = 0usize;
    let mut bytes = 0usize;
    for (name, all) in headers.iter() {
        bytes = bytes.saturating_add(AsRef::<str>::as_ref(name).len());
        for value in all {
            values += 1;
            bytes = bytes.saturating_add(value.as_str().len());
        }
        if values > MAX_HEADER_VALUES || bytes > MAX_HEADER_BYTES {
            return Err(CodecError::Headers);
        }
    }
    Ok(())
}

impl Encoding {
    /// Picks the encoding from a message's headers.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Self {
        let is_json = header(headers, headers::CONTENT_TYPE)
            .map(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(JSON_CONTENT_TYPE))
            })
            .unwrap_or(false);
        if is_json {
            Self::Json
        } else {
            Self::MsgPack
        }
    }

    /// The `Content-Type` header value for this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::MsgPack => MSGPACK_CONTENT_TYPE,
            Self::Json => JSON_CONTENT_TYPE,
        }
    }

    /// Decodes a payload after checking its size and nesting (see [`scan`]); nothing
    /// past those limits reaches a deserialiser.
    pub fn decode<T: DeserializeOwned>(self, payload: &[u8]) -> Result<T, CodecError> {
        match self {
            Self::MsgPack => scan::check_msgpack(payload)?,
            Self::Json => scan::check_json(payload)?,
        }
        self.deserialize(payload)
    }

    /// Decodes a request: [`Self::decode`], and the payload must be a map of named fields
    /// (a MessagePack map with string keys, no `bin`; a JSON object), never an array or a
    /// map keyed by field numbers, which serde would read by position
    /// ([`scan::check_msgpack_request`]).
    pub fn decode_request<T: DeserializeOwned>(self, payload: &[u8]) -> Result<T, CodecError> {
        match self {
            Self::MsgPack => scan::check_msgpack_request(payload)?,
            Self::Json => scan::check_json_request(payload)?,
        }
        self.deserialize(payload)
    }

    /// Deserialises a payload that passed its pre-scan.
    fn deserialize<T: DeserializeOwned>(self, payload: &[u8]) -> Result<T, CodecError> {
        Ok(match self {
            Self::MsgPack => rmp_serde::from_slice(payload).map_err(|e| {
                // `{` and `[` are small integers in MessagePack, so JSON "decodes" into
                // a confusing type error; say what it probably is.
                let first = payload.iter().find(|b| !b.is_ascii_whitespace());
                if matches!(first, Some(b'{' | b'[')) {
                    CodecError::LooksLikeJson(e)
                } else {
                    CodecError::MsgPack(e)
                }
            })?,
            Self::Json => serde_json::from_slice(payload)?,
        })
    }

    /// Encodes a value; MessagePack always uses named fields.
    pub fn encode<T: Serialize>(self, value: &T) -> Result<Bytes, CodecError> {
        Ok(match self {
            Self::MsgPack => {
                // Most payloads (ticks, replies) fit, so the buffer rarely regrows.
                let mut buf = Vec::with_capacity(256);
                rmp_serde::encode::write_named(&mut buf, value)?;
                buf.into()
            }
            Self::Json => serde_json::to_vec(value)?.into(),
        })
    }
}

/// Encodes a request's outcome as its [`Reply`] and marks a failure with the
/// `Pinnacle-Error` header on `reply_headers`. A reply that cannot be encoded is answered
/// as `INTERNAL` instead, so no request goes unanswered for it. Returns the payload and the
/// code of the error sent, if any; `Err` only if even the `INTERNAL` reply cannot be
/// encoded.
pub fn encode_reply<T: Serialize>(
    encoding: Encoding,
    outcome: Result<T, ErrorBody>,
    reply_headers: &mut HeaderMap,
) -> Result<(Bytes, Option<ErrorCode>), CodecError> {
    let failed = outcome.as_ref().err().map(|e| e.code);
    let body = match outcome {
        Ok(result) => Reply::success(result),
        Err(error) => {
            reply_headers.insert(headers::ERROR_CODE, error.code.as_str());
            Reply::failure(error)
        }
    };
    match encoding.encode(&body) {
        Ok(payload) => Ok((payload, failed)),
        Err(error) => {
            tracing::error!(%error, "could not encode a reply; answering INTERNAL");
            let internal = ErrorBody::new(ErrorCode::Internal, "internal error");
            reply_headers.insert(headers::ERROR_CODE, ErrorCode::Internal.as_str());
            let payload = encoding.encode(&Reply::<()>::failure(internal))?;
            Ok((payload, Some(ErrorCode::Internal)))
        }
    }
}

/// Bytes an encoder arena holds: one allocation serves this much encoded output.
const ARENA_BYTES: usize = 64 * 1024;

/// Encodes many small values as MessagePack (named fields, exactly like
/// [`Encoding::encode`]) into one shared arena instead of one allocation each: each
/// payload is split off the arena as [`Bytes`] that share it, and a new arena is taken
/// once the old one is full. Made for the publisher's hot loop, where a tick is encoded
/// hundreds of thousands of times a second.
#[derive(Debug)]
pub struct MsgPackArena {
    /// The unwritten tail of the current arena.
    buf: bytes::BytesMut,
}

impl Default for MsgPackArena {
    fn default() -> Self {
        Self {
            buf: bytes::BytesMut::with_capacity(ARENA_BYTES),
        }
    }
}

impl MsgPackArena {
    /// An empty arena.
    pub fn new() -> Self {
        Self::default()
    }

    /// `value` as MessagePack with named fields.
    pub fn encode<T: Serialize>(&mut self, value: &T) -> Result<Bytes, CodecError> {
        use bytes::BufMut as _;
        // Ticks and small replies fit in 512 bytes; a bigger value just grows the arena.
        self.buf.reserve(512);
        let written = rmp_serde::encode::write_named(&mut (&mut self.buf).writer(), value);
        match written {
            Ok(()) => Ok(self.buf.split().freeze()),
            Err(error) => {
                self.buf.clear();
                Err(error.into())
            }
        }
    }
}

#[cfg(test)]
mod tests;
