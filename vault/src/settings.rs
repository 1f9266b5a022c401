//! The vault's settings: where the master key ring comes from (`PINNACLE_MASTER_KEY*`),
//! which key derives the pepper, and how many wraps a key may make; and the error every
//! malformed one is reported with.
//!
//! `pinnacle_common::config` re-exports [`VaultSettings`] beside the other settings, and
//! turns a [`VaultConfigError`] into its `ConfigError` with the same message.

use secrecy::SecretString;
use serde::Deserialize;

/// The default number of wraps a master key may make before it must be rotated: 2^30,
/// a quarter of NIST SP 800-38D's 2^32 limit for random 96-bit nonces.
pub const DEFAULT_MAX_ENCRYPTIONS: i64 = 1 << 30;

/// The vault's settings are unusable: a variable that does not parse, no key, a short or
/// malformed key, a current or pepper key id that is not in the ring. The message names
/// the variable and the key id, never the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct VaultConfigError(String);

impl VaultConfigError {
    /// An error with a message for the operator (it must not contain key material).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message, without the `invalid configuration: ` prefix.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// The credential vault's master key ring (`PINNACLE_MASTER_KEY*`, see [`crate::ring`]).
#[derive(Clone, Debug, Deserialize)]
pub struct VaultSettings {
    /// `PINNACLE_MASTER_KEY`: a one-key ring, 32 random bytes, base64-encoded. Generate
    /// one with `pinnacle keys generate`.
    #[serde(default)]
    pub master_key: Option<SecretString>,
    /// `PINNACLE_MASTER_KEY_ID`: the id of `PINNACLE_MASTER_KEY`.
    #[serde(default = "default_key_id")]
    pub master_key_id: u32,
    /// `PINNACLE_MASTER_KEYS`: the ring inline, `1:<base64>,2:<base64>`.
    #[serde(default)]
    pub master_keys: Option<SecretString>,
    /// `PINNACLE_MASTER_KEY_FILE`: a file with one `<id>:<base64>` per line.
    #[serde(default)]
    pub master_key_file: Option<String>,
    /// `PINNACLE_MASTER_KEY_CURRENT`: the id new data keys are wrapped under (default:
    /// the highest id in the ring).
    #[serde(default)]
    pub master_key_current: Option<u32>,
    /// `PINNACLE_PEPPER_KEY_ID`: the key the API-token pepper and audit-chain key derive
    /// from (default: the lowest id). Keep it in the ring: it survives rotation.
    #[serde(default)]
    pub pepper_key_id: Option<u32>,
    /// `PINNACLE_KEY_MAX_ENCRYPTIONS`: wraps one master key may make before it refuses and
    /// must be rotated (default 2^30, a quarter of NIST's 2^32 random-nonce limit).
    #[serde(default = "default_key_max_encryptions")]
    pub key_max_encryptions: i64,
}

fn default_key_id() -> u32 {
    1
}

fn default_key_max_encryptions() -> i64 {
    DEFAULT_MAX_ENCRYPTIONS
}

impl VaultSettings {
    /// Loads `PINNACLE_MASTER_KEY*`, `PINNACLE_PEPPER_KEY_ID` and `PINNACLE_KEY_MAX_ENCRYPTIONS`.
    pub fn from_env() -> Result<Self, VaultConfigError> {
        envy::prefixed("PINNACLE_")
            .from_env()
            .map_err(|e| VaultConfigError::new(format!("PINNACLE_*: {e}")))
    }

    /// A one-key ring.
    pub fn single(master_key: SecretString, key_id: u32) -> Self {
        Self {
            master_key: Some(master_key),
            master_key_id: key_id,
            master_keys: None,
            master_key_file: None,
            master_key_current: None,
            pepper_key_id: None,
            key_max_encryptions: default_key_max_encryptions(),
        }
    }

    /// The ring in a key file (`<id>:<base64>` per line; the highest id is current).
    pub fn file(path: impl Into<String>) -> Self {
        Self {
            master_key: None,
            master_key_file: Some(path.into()),
            ..Self::single(SecretString::from(String::new()), default_key_id())
        }
    }
}
