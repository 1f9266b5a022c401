//! Size and nesting limits on everything SmartAPI sends, checked before it is parsed.
//!
//! The broker is trusted to be honest but not to be correct: a proxy fault, a truncated
//! reply or a hostile network in between must cost a clear error, never a stack overflow
//! or an unbounded buffer. JSON goes through the workspace's iterative pre-scan
//! ([`pinnacle_protocol::codec::scan`], depth at most
//! [`MAX_DEPTH`](pinnacle_protocol::codec::MAX_DEPTH)); binary tick frames are bounded by
//! [`crate::ticks::MAX_FRAME_BYTES`].

use pinnacle_protocol::codec::scan;

/// The largest WebSocket message (and frame) accepted from the market feed or the
/// order-update stream. Real messages are under 2 KB.
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

/// The WebSocket configuration both streams connect with.
pub fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_WS_MESSAGE_BYTES))
}

/// Whether a WebSocket text message is small and shallow enough to parse.
pub fn text_ok(text: &str) -> bool {
    text.len() <= MAX_WS_MESSAGE_BYTES && scan::check_json_depth(text.as_bytes()).is_ok()
}

/// Whether a REST body nests shallowly enough to parse (its size is bounded by the
/// HTTP client's timeout and the route).
pub fn body_ok(body: &[u8]) -> bool {
    scan::check_json_depth(body).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_or_huge_text_is_refused() {
        assert!(text_ok(r#"{"errorCode":"E1","errorMessage":"x"}"#));
        assert!(!text_ok(&"[".repeat(10_000)));
        assert!(!text_ok(&" ".repeat(MAX_WS_MESSAGE_BYTES + 1)));
        assert!(!body_ok("{\"a\":".repeat(100).as_bytes()));
        assert!(body_ok(br#"{"status":true,"data":{"a":[1,2,{"b":3}]}}"#));
    }
}
