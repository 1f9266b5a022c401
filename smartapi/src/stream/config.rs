//! [`StreamConfig`]: where and how the SmartWebSocketV2 client connects, and the
//! [`Backoff`] between reconnects.

use std::time::Duration;

use secrecy::SecretString;

/// Production market-data WebSocket (SPEC §0).
pub const DEFAULT_URL: &str = "wss://smartapisocket.angelone.in/smart-stream";

/// Everything the feed client needs. `Debug` redacts every secret (they are
/// [`SecretString`]s), and no secret ever appears in a log line or an error.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// `wss://…/smart-stream`; tests point it at a local server.
    pub url: String,
    /// Sent as `x-client-code`; the server authenticates on it plus the feed token.
    pub client_code: String,
    /// Sent as `x-feed-token`; rolls over daily (see `FeedHandle::update_credentials`).
    pub feed_token: SecretString,
    /// Sent as `Authorization` exactly as given (raw JWT or `Bearer <jwt>`; the server
    /// accepts both, and the Java SDK sends none). Omitted when `None`.
    pub jwt: Option<SecretString>,
    /// Sent as `x-api-key`; omitted when `None` (the Java SDK sends none).
    pub api_key: Option<SecretString>,
    /// How often the text `ping` heartbeat goes out. The DOCS require one at least every
    /// 30 s; the SDKs use 10 s.
    pub heartbeat_interval: Duration,
    /// No message at all (tick, `pong`, control frame) for this long ⇒ reconnect. The server
    /// answers every `ping` with `pong`, so a healthy idle connection never stalls.
    pub stall_timeout: Duration,
    /// Limit on the TCP + TLS + HTTP upgrade, so a black-holed connect cannot hang.
    pub connect_timeout: Duration,
    /// Delays between reconnect attempts.
    pub backoff: Backoff,
    /// Most tokens in one subscribe/unsubscribe message (the server documents no limit;
    /// smaller messages keep one bad token from failing a large request).
    pub batch_size: usize,
    /// Capacity of the event channel; a slow consumer back-pressures the socket reader.
    pub event_capacity: usize,
}

impl StreamConfig {
    /// Production URL and the defaults: 10 s heartbeat, 20 s stall timeout (as the JS SDK),
    /// 10 s connect timeout, backoff 1 s doubling to 60 s with ±20 % jitter, batches of 100.
    pub fn new(client_code: impl Into<String>, feed_token: SecretString) -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            client_code: client_code.into(),
            feed_token,
            jwt: None,
            api_key: None,
            heartbeat_interval: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            batch_size: 100,
            event_capacity: 4096,
        }
    }
}

/// Exponential backoff with a cap and multiplicative jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Ceiling for any delay (before jitter).
    pub max: Duration,
    /// Growth per failed attempt.
    pub multiplier: f64,
    /// Fraction in 0..=1: each delay is scaled by a random factor in `1 ± jitter`, so many
    /// clients dropped together do not reconnect together.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based), given `unit` uniform in [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64((base * factor).max(0.0)).unwrap_or(self.max)
    }
}

/// A uniform sample in [0, 1) for jitter, from the OS RNG behind `uuid`'s v4.
pub(crate) fn unit_random() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.5,
        };
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(400));
        assert_eq!(b.delay(20, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(50));
        assert!(b.delay(0, 0.999_999) < Duration::from_millis(150));
        let u = unit_random();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut c = StreamConfig::new("A123", SecretString::from("feed-secret-1"));
        c.jwt = Some(SecretString::from("jwt-secret-2"));
        c.api_key = Some(SecretString::from("key-secret-3"));
        let shown = format!("{c:?}");
        assert!(shown.contains("A123"));
        for secret in ["feed-secret-1", "jwt-secret-2", "key-secret-3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
