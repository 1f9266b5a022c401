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
        Ok(match self {
            Self::MsgPack => {
                scan::check_msgpack(payload)?;
                rmp_serde::from_slice(payload).map_err(|e| {
                    // `{` and `[` are small integers in MessagePack, so JSON "decodes" into
                    // a confusing type error; say what it probably is.
                    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
                    if matches!(first, Some(b'{' | b'[')) {
                        CodecError::LooksLikeJson(e)
                    } else {
                        CodecError::MsgPack(e)
                    }
                })?
            }
            Self::Json => {
                scan::check_json(payload)?;
                serde_json::from_slice(payload)?
            }
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
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Probe {
        name: String,
        qty: i64,
        #[serde(default)]
        note: Option<String>,
    }

    #[test]
    fn msgpack_uses_named_fields_and_ignores_unknown_ones() {
        let bytes = Encoding::MsgPack
            .encode(&Probe {
                name: "x".into(),
                qty: 3,
                note: None,
            })
            .expect("encode");
        // A fixmap marker, not a fixarray: fields travel by name.
        assert_eq!(bytes[0] & 0xf0, 0x80);
        let extra = serde_json::json!({"name": "y", "qty": 5, "future_field": true});
        let with_extra = rmp_serde::to_vec_named(&extra).expect("encode map");
        let probe: Probe = Encoding::MsgPack.decode(&with_extra).expect("decode");
        assert_eq!(probe.qty, 5);
        assert_eq!(probe.note, None);
    }

    #[test]
    fn the_arena_encodes_exactly_like_encode_across_many_arenas() {
        let mut arena = MsgPackArena::new();
        let kept: Vec<(Bytes, Probe)> = (0..5_000)
            .map(|qty| {
                let probe = Probe {
                    name: "x".repeat(qty % 40),
                    qty: qty as i64,
                    note: (qty % 3 == 0).then(|| "n".into()),
                };
                (arena.encode(&probe).expect("encode"), probe)
            })
            .collect();
        // Every payload kept its own bytes after later ones were written and arenas replaced.
        for (bytes, probe) in &kept {
            assert_eq!(bytes, &Encoding::MsgPack.encode(probe).expect("encode"));
            let back: Probe = Encoding::MsgPack.decode(bytes).expect("decode");
            assert_eq!(&back, probe);
        }
        let big = Probe {
            name: "y".repeat(3 * ARENA_BYTES),
            qty: 1,
            note: None,
        };
        let decoded: Probe = Encoding::MsgPack
            .decode(&arena.encode(&big).expect("a value larger than the arena"))
            .expect("decode");
        assert_eq!(decoded, big);
    }

    #[test]
    fn content_type_header_selects_json() {
        let mut headers = HeaderMap::new();
        headers.insert(
            crate::subjects::headers::CONTENT_TYPE,
            "application/json; charset=utf-8",
        );
        assert_eq!(Encoding::from_headers(Some(&headers)), Encoding::Json);
        let mut lower = HeaderMap::new();
        lower.insert("content-type", "application/json");
        lower.insert("authorization", "Bearer x");
        assert_eq!(Encoding::from_headers(Some(&lower)), Encoding::Json);
        assert_eq!(header(Some(&lower), "Authorization"), Some("Bearer x"));
        assert_eq!(header(Some(&lower), "Missing"), None);
        assert_eq!(Encoding::from_headers(None), Encoding::MsgPack);
        let probe: Probe = Encoding::Json
            .decode(br#"{"name":"a","qty":1}"#)
            .expect("decode");
        assert_eq!(probe.name, "a");
        assert!(Encoding::Json.decode::<Probe>(b"{").is_err());
        assert!(Encoding::MsgPack.decode::<Probe>(&[0xc1]).is_err());
        let json_sent_bare = Encoding::MsgPack
            .decode::<Probe>(br#"{"a": 1}"#)
            .expect_err("JSON is not MessagePack")
            .to_string();
        assert!(
            json_sent_bare.contains("Content-Type: application/json"),
            "{json_sent_bare}"
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_decoding() {
        // 100,000 levels would overflow any stack inside rmp-serde; the scan refuses it.
        let mut deep = b"\x81\xa1k".repeat(100_000);
        deep.push(0x01);
        assert!(matches!(
            Encoding::MsgPack.decode::<Probe>(&deep),
            Err(CodecError::Refused(ScanError::TooDeep { .. }))
        ));
        let json = format!("{{\"k\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            Encoding::Json.decode::<Probe>(json.as_bytes()),
            Err(CodecError::Refused(ScanError::TooDeep { .. }))
        ));
    }

    #[test]
    fn headers_are_bounded() {
        let mut many = HeaderMap::new();
        for i in 0..=MAX_HEADER_VALUES {
            many.append("X-Many", i.to_string().as_str());
        }
        assert!(matches!(
            check_headers(Some(&many)),
            Err(CodecError::Headers)
        ));
        let mut big = HeaderMap::new();
        big.insert("X-Big", "v".repeat(MAX_HEADER_BYTES).as_str());
        assert!(check_headers(Some(&big)).is_err());
        let mut fine = HeaderMap::new();
        fine.insert("Authorization", "Bearer x");
        assert!(check_headers(Some(&fine)).is_ok());
        assert!(check_headers(None).is_ok());
    }

    #[test]
    fn a_reply_carries_its_error_code_in_the_header_and_the_body() {
        let mut hdrs = HeaderMap::new();
        let (payload, failed) =
            encode_reply(Encoding::Json, Ok::<_, ErrorBody>(7u32), &mut hdrs).expect("encodes");
        assert_eq!(failed, None);
        assert!(hdrs.get(headers::ERROR_CODE).is_none());
        assert_eq!(&payload[..], br#"{"ok":true,"result":7}"#);

        let mut hdrs = HeaderMap::new();
        let refused = ErrorBody::new(ErrorCode::Forbidden, "not yours");
        let (payload, failed) =
            encode_reply(Encoding::MsgPack, Err::<u32, _>(refused), &mut hdrs).expect("encodes");
        assert_eq!(failed, Some(ErrorCode::Forbidden));
        assert_eq!(
            hdrs.get(headers::ERROR_CODE).map(|v| v.as_str()),
            Some(ErrorCode::Forbidden.as_str())
        );
        let reply: Reply<u32> = Encoding::MsgPack.decode(&payload).expect("decodes");
        assert!(!reply.ok);
        assert_eq!(reply.error.map(|e| e.code), Some(ErrorCode::Forbidden));
    }
}
