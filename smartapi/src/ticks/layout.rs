//! Byte offsets and lengths of the SmartWebSocketV2 binary packet (SPEC §8.5–8.6), in one
//! place so the decoder reads as a list of named fields.
//!
//! Every offset is 0-based and every multi-byte value is little-endian.

/// Subscription mode byte.
pub const MODE: usize = 0;
/// Exchange type byte.
pub const EXCHANGE_TYPE: usize = 1;
/// Token: 25 ASCII bytes, NUL-padded (no NUL when the token uses all 25).
pub const TOKEN: usize = 2;
pub const TOKEN_LEN: usize = 25;
/// i64 sequence number (meaningless for index feeds). In DEPTH: the exchange timestamp.
pub const SEQUENCE_NUMBER: usize = 27;
/// i64 exchange timestamp, epoch ms. In DEPTH: the packet-received time.
pub const EXCHANGE_TIMESTAMP: usize = 35;
/// i64 last traded price, raw units.
pub const LAST_TRADED_PRICE: usize = 43;
/// Length of an LTP packet.
pub const LTP_LEN: usize = 51;

pub const LAST_TRADED_QUANTITY: usize = 51;
pub const AVERAGE_TRADED_PRICE: usize = 59;
pub const VOLUME: usize = 67;
/// f64 (IEEE-754 double).
pub const TOTAL_BUY_QUANTITY: usize = 75;
/// f64 (IEEE-754 double).
pub const TOTAL_SELL_QUANTITY: usize = 83;
pub const OPEN: usize = 91;
pub const HIGH: usize = 99;
pub const LOW: usize = 107;
pub const CLOSE: usize = 115;
/// Length of a QUOTE packet.
pub const QUOTE_LEN: usize = 123;

/// i64 epoch **seconds**.
pub const LAST_TRADED_TIMESTAMP: usize = 123;
pub const OPEN_INTEREST: usize = 131;
/// f64 (the Python SDK reads it as i64 by mistake).
pub const OPEN_INTEREST_CHANGE_PCT: usize = 139;
/// Ten 20-byte best-five entries.
pub const BEST_FIVE: usize = 147;
pub const BEST_FIVE_ENTRIES: usize = 10;
pub const BEST_FIVE_ENTRY_LEN: usize = 20;
/// Within a best-five entry: u16 flag (non-zero buy, 0 sell), i64 qty, i64 price, u16
/// orders (unsigned, as Angel One's Python parser reads them with `<H`).
pub const BEST_FIVE_FLAG: usize = 0;
pub const BEST_FIVE_QUANTITY: usize = 2;
pub const BEST_FIVE_PRICE: usize = 10;
pub const BEST_FIVE_ORDERS: usize = 18;
pub const UPPER_CIRCUIT: usize = 347;
pub const LOWER_CIRCUIT: usize = 355;
pub const WEEK_52_HIGH: usize = 363;
pub const WEEK_52_LOW: usize = 371;
/// Length of a SNAP_QUOTE packet.
pub const SNAP_QUOTE_LEN: usize = 379;

/// DEPTH: i64 exchange timestamp (epoch ms) sits where the sequence number would.
pub const DEPTH_EXCHANGE_TIMESTAMP: usize = 27;
/// DEPTH: i64 packet-received time ("dummy, to be deprecated").
pub const DEPTH_PACKET_RECEIVED: usize = 35;
/// DEPTH: 20 bid levels, then 20 ask levels, 10 bytes each.
pub const DEPTH_BIDS: usize = 43;
pub const DEPTH_ASKS: usize = 243;
pub const DEPTH_LEVELS: usize = 20;
pub const DEPTH_LEVEL_LEN: usize = 10;
/// Within a depth level: i32 qty, i32 price, i16 orders (signed: the Python parser reads
/// them with `<h`).
pub const DEPTH_QUANTITY: usize = 0;
pub const DEPTH_PRICE: usize = 4;
pub const DEPTH_ORDERS: usize = 8;
/// Length of a DEPTH packet.
pub const DEPTH_LEN: usize = 443;
