//! `pinnacle smartapi …`: offline SmartAPI tools. `decode HEX` turns one SmartWebSocketV2
//! binary tick (hex, with or without spaces or `0x`) into pretty JSON: every field as
//! decoded (raw integer prices) plus the same prices in rupees.

use clap::Subcommand;
use pinnacle_smartapi::ticks::{self, Decoded, Packet, TickError};
use serde::Serialize;
use serde_json::{json, Value};

/// Why `smartapi decode` could not produce JSON. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum DecodeCommandError {
    #[error("no hex given")]
    NoInput,
    #[error("bad hex: {0}")]
    BadHex(String),
    /// The frame's own error, shown in the message (not also as a source, which would
    /// print it twice in an error chain).
    #[error("malformed frame: {0}")]
    Frame(TickError),
    #[error("could not format JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Hex to bytes. Whitespace anywhere is ignored and each whitespace-separated chunk may
/// start with `0x`/`0X`, so `0x0101…`, `01 01 …` and `0x01 0x01 …` all work.
pub fn parse_hex(input: &str) -> Result<Vec<u8>, DecodeCommandError> {
    let digits: String = input
        .split_whitespace()
        .map(|chunk| {
            chunk
                .strip_prefix("0x")
                .or_else(|| chunk.strip_prefix("0X"))
                .unwrap_or(chunk)
        })
        .collect();
    if digits.is_empty() {
        return Err(DecodeCommandError::NoInput);
    }
    hex::decode(&digits).map_err(|e| DecodeCommandError::BadHex(e.to_string()))
}

/// What `smartapi decode` prints for a decoded frame, in this field order: the decoded
/// fields (raw integer prices), the exchange type's `price_divisor`, and `rupees` holding
/// every price divided by it (book levels as arrays, best first).
#[derive(Debug, Serialize)]
pub struct DecodeOutput<'a> {
    #[serde(flatten)]
    pub decoded: &'a Decoded,
    pub price_divisor: i64,
    #[serde(serialize_with = "ordered_map")]
    pub rupees: Vec<(&'static str, Value)>,
}

impl<'a> DecodeOutput<'a> {
    pub fn new(decoded: &'a Decoded) -> Self {
        let packet = &decoded.packet;
        let exchange = packet.exchange_type();
        let rupees_of = |raw: i64| json!(exchange.to_rupees(raw));
        let mut rupees: Vec<(&'static str, Value)> = packet
            .price_fields()
            .into_iter()
            .map(|(name, raw)| (name, rupees_of(raw)))
            .collect();
        match packet {
            Packet::SnapQuote(s) => {
                for (name, side) in [
                    ("best_five_buy", &s.best_five_buy),
                    ("best_five_sell", &s.best_five_sell),
                ] {
                    rupees.push((name, side.iter().map(|e| rupees_of(e.price)).collect()));
                }
            }
            Packet::Depth(d) => {
                for (name, side) in [("bids", &d.bids), ("asks", &d.asks)] {
                    let prices = side.iter().map(|l| rupees_of(i64::from(l.price)));
                    rupees.push((name, prices.collect()));
                }
            }
            Packet::Ltp(_) | Packet::Quote(_) => {}
        }
        Self {
            decoded,
            price_divisor: exchange.price_divisor(),
            rupees,
        }
    }
}

/// Serialises name/value pairs as a JSON object, keeping their order.
fn ordered_map<S: serde::Serializer>(
    pairs: &[(&'static str, Value)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (name, value) in pairs {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

/// `pinnacle smartapi decode HEX`: hex in, pretty JSON out.
pub fn decode_command(input: &str) -> Result<String, DecodeCommandError> {
    let bytes = parse_hex(input)?;
    let decoded = ticks::decode(&bytes).map_err(DecodeCommandError::Frame)?;
    Ok(serde_json::to_string_pretty(&DecodeOutput::new(&decoded))?)
}

/// `pinnacle smartapi …`.
#[derive(Debug, Subcommand)]
pub enum SmartapiCommand {
    /// Decode one SmartWebSocketV2 binary tick given as hex; prints it as JSON.
    Decode {
        /// The frame in hex; spaces and `0x` prefixes are allowed (several arguments are joined).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        hex: Vec<String>,
    },
}

/// Runs one `pinnacle smartapi` verb.
pub fn run(command: SmartapiCommand) -> anyhow::Result<()> {
    match command {
        SmartapiCommand::Decode { hex } => {
            println!("{}", decode_command(&hex.join(" "))?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("0x0102").ok(), Some(vec![1, 2]));
        assert_eq!(parse_hex("01 02\n0x03").ok(), Some(vec![1, 2, 3]));
        assert!(matches!(parse_hex("  "), Err(DecodeCommandError::NoInput)));
        assert!(matches!(
            parse_hex("012"),
            Err(DecodeCommandError::BadHex(_))
        ));
        assert!(matches!(
            parse_hex("zz"),
            Err(DecodeCommandError::BadHex(_))
        ));
    }

    #[test]
    fn malformed_frames_are_one_line_errors() {
        let e = decode_command("0x0401")
            .map(|_| ())
            .expect_err("short")
            .to_string();
        assert_eq!(
            e,
            "malformed frame: DEPTH frame too short: expected 443 bytes, got 2"
        );
        let e = decode_command("09")
            .map(|_| ())
            .expect_err("mode")
            .to_string();
        assert!(e.contains("unknown subscription mode 9"), "{e}");
    }
}
