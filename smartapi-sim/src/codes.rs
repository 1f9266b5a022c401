//! SmartAPI error codes and messages the simulator answers with (SPEC §7), in one place.

pub const INVALID_TOKEN: &str = "AG8001";
pub const TOKEN_MISSING: &str = "AG8003";
pub const INVALID_API_KEY: &str = "AG8004";
pub const INVALID_REFRESH_TOKEN: &str = "AB8050";
pub const REFRESH_TOKEN_EXPIRED: &str = "AB8051";
pub const LOGIN_FAILED: &str = "AB1007";
pub const INVALID_VARIETY: &str = "AB1008";
pub const SYMBOL_NOT_FOUND: &str = "AB1009";
pub const INVALID_PRODUCT: &str = "AB1012";
pub const ORDER_NOT_FOUND: &str = "AB1013";
/// "Error not specified": the simulator's code for malformed input and refusals that have
/// no documented code of their own (bad order type, static-IP mismatch, range too long).
pub const GENERAL: &str = "AB2000";
pub const TAG_TOO_LONG: &str = "AB4008";
pub const EMPTY_SYMBOL_TOKEN: &str = "AB4018";
pub const INVALID_TOTP: &str = "AB1050";

/// The plain-text body of a rate-limit breach (SPEC §1.2).
pub const RATE_LIMIT_BODY: &str = "Access denied because of exceeding access rate";

/// Market WebSocket error codes (SPEC §7, §8.2).
pub const WS_INVALID_PAYLOAD: &str = "E1001";
pub const WS_LIMIT: &str = "E1002";
