//! A cheap, iterative pre-scan of untrusted MessagePack and JSON, run before any
//! deserialiser sees the bytes.
//!
//! serde's deserialisers recurse once per nesting level, including when they skip an
//! unknown field, so a small payload such as `b"\x81\xa1k" * 900 + b"\x01"` (2.7 KB)
//! overflows a 2 MiB task stack inside rmp-serde. These scans walk the bytes with an
//! explicit counter instead of recursion, and refuse a payload that is larger than
//! [`MAX_PAYLOAD_BYTES`] or nests deeper than [`MAX_DEPTH`]. They never allocate more
//! than one counter per open container, and that is bounded by [`MAX_DEPTH`] too.

/// The deepest nesting of maps and arrays accepted (`{"a":1}` has depth 1). Pinnacle's
/// deepest message (a tick with market depth) nests 4 levels; 32 leaves room to grow
/// while keeping serde's recursion far from any stack limit.
pub const MAX_DEPTH: usize = 32;

/// The largest payload the codec decodes: NATS's default `max_payload` (1 MiB). Endpoints
/// may enforce smaller limits of their own before decoding.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Why a payload was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload is {len} bytes; the codec's limit is {limit}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("payload nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The bytes end inside a value, or a length claims more bytes than remain.
    #[error("payload is truncated at byte {offset}")]
    Truncated {
        /// Where the missing bytes were expected.
        offset: usize,
    },
    /// A byte that starts no MessagePack value (`0xc1`).
    #[error("invalid MessagePack marker 0x{marker:02x} at byte {offset}")]
    BadMarker {
        /// The byte.
        marker: u8,
        /// Where.
        offset: usize,
    },
    /// A request that is not a map (a MessagePack map, a JSON object).
    #[error(
        "a request is a map of named fields; this payload is {found}{}",
        json_hint(*.looks_like_json)
    )]
    NotAMap {
        /// What it is instead.
        found: &'static str,
        /// MessagePack that starts like JSON (`{` or `[`).
        looks_like_json: bool,
    },
    /// A request's map key that is not a string: fields are named, never numbered.
    #[error("the map key at byte {offset} is not a string: a request names its fields")]
    KeyNotAString {
        /// Where the key starts.
        offset: usize,
    },
    /// MessagePack `bin` in a request, whose values are strings and numbers.
    #[error("binary data at byte {offset}: a request's text fields are MessagePack strings")]
    Binary {
        /// Where the value starts.
        offset: usize,
    },
    /// Bytes after a request's map: a request is exactly one value, and bytes the
    /// deserialiser would skip unseen could mean something to another reader.
    #[error("{extra} bytes follow the request's map at byte {offset}: a request is one value")]
    TrailingBytes {
        /// Where the request's map ended.
        offset: usize,
        /// How many bytes follow it.
        extra: usize,
    },
}

/// What [`ScanError::NotAMap`] adds for MessagePack that starts like JSON.
fn json_hint(looks_like_json: bool) -> &'static str {
    if looks_like_json {
        " (it looks like JSON: send the header `Content-Type: application/json` with it)"
    } else {
        ""
    }
}

/// Checks the size of any payload.
pub fn check_size(payload: &[u8]) -> Result<(), ScanError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ScanError::TooLarge {
            len: payload.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

/// What a MessagePack marker says about the value it starts.
enum Item {
    /// A value with no children, occupying this many bytes after the header.
    Scalar { body: u64 },
    /// A map or array with this many child values (a map's keys count).
    Container { children: u64 },
}

/// Reads a big-endian length of `width` bytes at `at`.
fn read_len(bytes: &[u8], at: usize, width: usize) -> Result<u64, ScanError> {
    let end = at
        .checked_add(width)
        .filter(|end| *end <= bytes.len())
        .ok_or(ScanError::Truncated { offset: at })?;
    Ok(bytes[at..end]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Decodes the header of the value at `at`: what it is and how long its header is.
fn header(bytes: &[u8], at: usize) -> Result<(Item, usize), ScanError> {
    let marker = *bytes.get(at).ok_or(ScanError::Truncated { offset: at })?;
    let scalar = |body: u64, head: usize| Ok((Item::Scalar { body }, head));
    let container = |children: u64, head: usize| Ok((Item::Container { children }, head));
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => scalar(0, 1),
        0x80..=0x8f => container(2 * u64::from(marker & 0x0f), 1),
        0x90..=0x9f => container(u64::from(marker & 0x0f), 1),
        0xa0..=0xbf => scalar(u64::from(marker & 0x1f), 1),
        0xc1 => Err(ScanError::BadMarker { marker, offset: at }),
        // bin and str with 1-, 2- and 4-byte lengths.
        0xc4 | 0xd9 => scalar(read_len(bytes, at + 1, 1)?, 2),
        0xc5 | 0xda => scalar(read_len(bytes, at + 1, 2)?, 3),
        0xc6 | 0xdb => scalar(read_len(bytes, at + 1, 4)?, 5),
        // ext with a length, then a type byte.
        0xc7 => scalar(read_len(bytes, at + 1, 1)? + 1, 2),
        0xc8 => scalar(read_len(bytes, at + 1, 2)? + 1, 3),
        0xc9 => scalar(read_len(bytes, at + 1, 4)? + 1, 5),
        0xca => scalar(4, 1),
        0xcb => scalar(8, 1),
        0xcc | 0xd0 => scalar(1, 1),
        0xcd | 0xd1 => scalar(2, 1),
        0xce | 0xd2 => scalar(4, 1),
        0xcf | 0xd3 => scalar(8, 1),
        // fixext 1, 2, 4, 8, 16: a type byte, then the data.
        0xd4 => scalar(2, 1),
        0xd5 => scalar(3, 1),
        0xd6 => scalar(5, 1),
        0xd7 => scalar(9, 1),
        0xd8 => scalar(17, 1),
        0xdc => container(read_len(bytes, at + 1, 2)?, 3),
        0xdd => container(read_len(bytes, at + 1, 4)?, 5),
        0xde => container(2 * read_len(bytes, at + 1, 2)?, 3),
        0xdf => container(2 * read_len(bytes, at + 1, 4)?, 5),
    }
}

/// Checks the first MessagePack value in `payload`: size, nesting depth, and that every
/// length fits in the bytes that remain. Trailing bytes after that value are not read
/// (nor are they by the deserialiser).
pub fn check_msgpack(payload: &[u8]) -> Result<(), ScanError> {
    walk(payload, false)
}

/// [`check_msgpack`] for a request, which is a map of named fields: the value must be a
/// map, every map key in it a string, and no value `bin`, and nothing may follow it. serde
/// would read a struct from an array, or from a map keyed by field numbers, by position,
/// a string field from `bin`, and would ignore trailing bytes; a request that relied on
/// that would mean something else to every other reader.
pub fn check_msgpack_request(payload: &[u8]) -> Result<(), ScanError> {
    walk(payload, true)
}

/// The walk behind [`check_msgpack`] and, with `request`, [`check_msgpack_request`].
fn walk(payload: &[u8], request: bool) -> Result<(), ScanError> {
    check_size(payload)?;
    if request {
        let found = match payload.first() {
            None => Some("empty"),
            Some(0x80..=0x8f | 0xde | 0xdf) => None,
            Some(0x90..=0x9f | 0xdc | 0xdd) => Some("an array"),
            Some(_) => Some("not a map"),
        };
        if let Some(found) = found {
            let first = payload.iter().find(|b| !b.is_ascii_whitespace());
            return Err(ScanError::NotAMap {
                found,
                looks_like_json: matches!(first, Some(b'{' | b'[')),
            });
        }
    }
    // Children still to read, per open container, and whether it is a map (whose children
    // alternate key, value); the bottom entry is the top-level value.
    let mut pending: Vec<(u64, bool)> = Vec::with_capacity(8);
    pending.push((1, false));
    let mut at = 0usize;
    while let Some((left, map)) = pending.last_mut() {
        if *left == 0 {
            pending.pop();
            continue;
        }
        // A map's children come key first, so an even count still to read means a key.
        let key = *map && *left % 2 == 0;
        *left -= 1;
        let marker = payload.get(at).copied();
        if request {
            if key && !matches!(marker, Some(0xa0..=0xbf | 0xd9..=0xdb)) {
                return Err(ScanError::KeyNotAString { offset: at });
            }
            if matches!(marker, Some(0xc4..=0xc6)) {
                return Err(ScanError::Binary { offset: at });
            }
        }
        let (item, head) = header(payload, at)?;
        at += head;
        let remaining = (payload.len() - at.min(payload.len())) as u64;
        match item {
            Item::Scalar { body } => {
                if body > remaining {
                    return Err(ScanError::Truncated { offset: at });
                }
                at += body as usize;
            }
            Item::Container { children } => {
                // Every child takes at least one byte, so a count larger than what is
                // left is a lie, refused before it can size anything.
                if children > remaining {
                    return Err(ScanError::Truncated { offset: at });
                }
                if children > 0 {
                    if pending.len() > MAX_DEPTH {
                        return Err(ScanError::TooDeep { limit: MAX_DEPTH });
                    }
                    let is_map = matches!(marker, Some(0x80..=0x8f | 0xde | 0xdf));
                    pending.push((children, is_map));
                }
            }
        }
    }
    if request && at < payload.len() {
        return Err(ScanError::TrailingBytes {
            offset: at,
            extra: payload.len() - at,
        });
    }
    Ok(())
}

/// Checks a JSON payload's size and the nesting depth of its objects and arrays
/// (brackets inside strings do not count). Syntax is left to the parser.
pub fn check_json(payload: &[u8]) -> Result<(), ScanError> {
    check_size(payload)?;
    check_json_depth(payload)
}

/// [`check_json`] for a request, which is a JSON object (serde would read a struct from an
/// array too, by position).
pub fn check_json_request(payload: &[u8]) -> Result<(), ScanError> {
    check_json(payload)?;
    let found = match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => return Ok(()),
        None => "empty",
        Some(b'[') => "an array",
        Some(_) => "not an object",
    };
    Err(ScanError::NotAMap {
        found,
        looks_like_json: false,
    })
}

/// Checks only the nesting depth of JSON, for bodies whose size is bounded elsewhere.
pub fn check_json_depth(payload: &[u8]) -> Result<(), ScanError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in payload {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ScanError::TooDeep { limit: MAX_DEPTH });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_maps(n: usize) -> Vec<u8> {
        let mut bytes = b"\x81\xa1k".repeat(n);
        bytes.push(0x01);
        bytes
    }

    #[test]
    fn msgpack_depth_is_counted_without_recursion() {
        assert_eq!(check_msgpack(&nested_maps(MAX_DEPTH)), Ok(()));
        assert_eq!(
            check_msgpack(&nested_maps(MAX_DEPTH + 1)),
            Err(ScanError::TooDeep { limit: MAX_DEPTH })
        );
        // Far past any stack: refused just as fast.
        assert!(matches!(
            check_msgpack(&nested_maps(100_000)),
            Err(ScanError::TooDeep { .. })
        ));
        let arrays = [vec![0x91; MAX_DEPTH + 1], vec![0xc0]].concat();
        assert!(matches!(
            check_msgpack(&arrays),
            Err(ScanError::TooDeep { .. })
        ));
    }

    #[test]
    fn msgpack_lengths_must_fit_in_the_bytes() {
        assert_eq!(check_msgpack(&[]), Err(ScanError::Truncated { offset: 0 }));
        // map32 claiming four billion entries in five bytes.
        assert!(matches!(
            check_msgpack(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
            Err(ScanError::Truncated { .. })
        ));
        // str8 of 10 bytes with 2 present.
        assert!(matches!(
            check_msgpack(&[0xd9, 10, b'a', b'b']),
            Err(ScanError::Truncated { .. })
        ));
        assert!(matches!(
            check_msgpack(&[0xc1]),
            Err(ScanError::BadMarker { marker: 0xc1, .. })
        ));
        // A map whose second key is missing.
        assert!(check_msgpack(&[0x82, 0xa1, b'a', 0x01]).is_err());
    }

    #[test]
    fn real_messages_pass() {
        let value = serde_json::json!({
            "symbol": "INFY", "qty": 10, "price": 1520.5, "tags": ["a", {"b": [1, 2, {}]}],
            "big": u64::MAX, "neg": i64::MIN, "bin": null, "empty": [], "s": "x".repeat(300)
        });
        let bytes = rmp_serde::to_vec_named(&value).expect("encode");
        assert_eq!(check_msgpack(&bytes), Ok(()));
        let json = serde_json::to_vec(&value).expect("encode");
        assert_eq!(check_json(&json), Ok(()));
    }

    #[test]
    fn json_depth_ignores_brackets_in_strings() {
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(
            check_json(deep.as_bytes()),
            Err(ScanError::TooDeep { .. })
        ));
        let ok = format!(
            "{}\"[[[[\\\"{{{{\"{}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(check_json(ok.as_bytes()), Ok(()));
    }

    #[test]
    fn a_request_is_exactly_one_map() {
        let request = rmp_serde::to_vec_named(&serde_json::json!({"symbol": "INFY", "qty": 1}))
            .expect("encode");
        assert_eq!(check_msgpack_request(&request), Ok(()));
        for tail in [&[0xc0][..], &[0x01, 0x02], &request[..]] {
            let padded = [&request[..], tail].concat();
            assert_eq!(
                check_msgpack_request(&padded),
                Err(ScanError::TrailingBytes {
                    offset: request.len(),
                    extra: tail.len()
                })
            );
            // A value that is not a request keeps reading only its first value.
            assert_eq!(check_msgpack(&padded), Ok(()));
        }
    }

    #[test]
    fn size_is_checked_first() {
        let big = vec![0x90u8; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            check_msgpack(&big),
            Err(ScanError::TooLarge { .. })
        ));
        assert!(matches!(check_json(&big), Err(ScanError::TooLarge { .. })));
    }
}
