//! What a REST client is built from: the shared settings, the account's egress, and its
//! identity at the broker.

use std::net::IpAddr;
use std::time::Duration;

use secrecy::SecretString;

/// Angel One's production REST root.
pub const PRODUCTION_URL: &str = "https://apiconnect.angelone.in";

/// Settings shared by every account's client.
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// REST root, e.g. [`PRODUCTION_URL`] or a simulator's address.
    pub base_url: String,
    /// Per-request timeout (the Python SDK uses 7 s).
    pub timeout: Duration,
    /// Sent as `X-MACAddress` (not validated by the broker).
    pub mac_address: String,
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            base_url: PRODUCTION_URL.into(),
            timeout: Duration::from_secs(7),
            mac_address: "02:00:00:00:00:01".into(),
        }
    }
}

/// How an account's requests leave the machine. Since 1 April 2026 Angel One accepts API
/// orders only from the static IP registered for the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Egress {
    /// Whatever route the host picks (market data, paper accounts, tests).
    Default,
    /// Bind outgoing connections to this local address (the registered static IP).
    Bind(IpAddr),
    /// Send through this HTTP(S) or SOCKS5 proxy, whose egress is the registered IP.
    Proxy(String),
}

/// One account's identity at the broker.
pub struct AccountKey {
    /// `X-PrivateKey`.
    pub api_key: SecretString,
    /// The client code; also the rate limiter's key.
    pub client_code: String,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey").finish_non_exhaustive()
    }
}
