//! Loading the master key ring from the environment or a key file.
//!
//! Three sources, first match wins:
//! - `PINNACLE_MASTER_KEYS="1:<base64>,2:<base64>"`: ids and keys inline;
//! - `PINNACLE_MASTER_KEY_FILE=/path`: one `<id>:<base64>` per line, `#` comments and
//!   blank lines ignored;
//! - `PINNACLE_MASTER_KEY=<base64>` with `PINNACLE_MASTER_KEY_ID` (default 1): a one-key ring.
//!
//! Every key is 32 bytes of base64. The current key (the one new data keys are wrapped
//! under) is `PINNACLE_MASTER_KEY_CURRENT`, or the highest id. Errors name the variable
//! and the key id, never the key.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::settings::{VaultConfigError, VaultSettings};

/// The parsed ring: key bytes by id, and which id is current.
pub struct RingSpec {
    /// Master keys by id.
    pub keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
    /// The id new data keys are wrapped under.
    pub current: u32,
}

impl std::fmt::Debug for RingSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSpec")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

/// Parses a base64 master key, refusing anything but exactly 32 bytes.
pub fn parse_master_key(encoded: &SecretString) -> Result<Zeroizing<[u8; 32]>, VaultConfigError> {
    parse_key("PINNACLE_MASTER_KEY", encoded.expose_secret())
}

fn parse_key(what: &str, encoded: &str) -> Result<Zeroizing<[u8; 32]>, VaultConfigError> {
    let raw = Zeroizing::new(B64.decode(encoded.trim()).map_err(|_| {
        VaultConfigError::new(format!(
            "{what} is not valid base64 (generate one with `pinnacle keys generate`)"
        ))
    })?);
    if raw.len() != 32 {
        return Err(VaultConfigError::new(format!(
            "{what} must decode to 32 bytes, got {}",
            raw.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&raw);
    Ok(key)
}

/// Parses `id:base64` entries separated by `separator` (commas or newlines).
pub fn parse_entries(
    source: &str,
    text: &str,
    separator: char,
) -> Result<BTreeMap<u32, Zeroizing<[u8; 32]>>, VaultConfigError> {
    let mut keys = BTreeMap::new();
    for (n, entry) in text.split(separator).enumerate() {
        let entry = entry.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let Some((id, key)) = entry.split_once(':') else {
            return Err(VaultConfigError::new(format!(
                "{source}: entry {} is not `<id>:<base64 key>`",
                n + 1
            )));
        };
        let id: u32 = id.trim().parse().map_err(|_| {
            VaultConfigError::new(format!(
                "{source}: entry {} has a key id that is not a positive integer",
                n + 1
            ))
        })?;
        if id == 0 {
            return Err(VaultConfigError::new(format!(
                "{source}: key id 0 is reserved"
            )));
        }
        let key = parse_key(&format!("{source} key {id}"), key)?;
        if keys.insert(id, key).is_some() {
            return Err(VaultConfigError::new(format!(
                "{source}: key id {id} appears twice"
            )));
        }
    }
    if keys.is_empty() {
        return Err(VaultConfigError::new(format!("{source} holds no keys")));
    }
    Ok(keys)
}

/// Builds the ring from settings; fails clearly on a missing, short or malformed key.
pub fn from_settings(settings: &VaultSettings) -> Result<RingSpec, VaultConfigError> {
    let keys = if let Some(inline) = &settings.master_keys {
        parse_entries("PINNACLE_MASTER_KEYS", inline.expose_secret(), ',')?
    } else if let Some(path) = &settings.master_key_file {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                VaultConfigError::new(format!("PINNACLE_MASTER_KEY_FILE {path}: {e}"))
            })?);
        parse_entries(&format!("PINNACLE_MASTER_KEY_FILE {path}"), &text, '\n')?
    } else if let Some(single) = &settings.master_key {
        BTreeMap::from([(settings.master_key_id, parse_master_key(single)?)])
    } else {
        return Err(VaultConfigError::new(
            "no master key: set PINNACLE_MASTER_KEYS, PINNACLE_MASTER_KEY_FILE or \
             PINNACLE_MASTER_KEY (generate one with `pinnacle keys generate`)",
        ));
    };
    let highest = keys.keys().next_back().copied().unwrap_or(1);
    let current = settings.master_key_current.unwrap_or(highest);
    if !keys.contains_key(&current) {
        return Err(VaultConfigError::new(format!(
            "PINNACLE_MASTER_KEY_CURRENT={current} is not in the key ring"
        )));
    }
    Ok(RingSpec { keys, current })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> VaultSettings {
        VaultSettings {
            master_key: None,
            master_key_id: 1,
            master_keys: None,
            master_key_file: None,
            master_key_current: None,
            pepper_key_id: None,
            key_max_encryptions: 1 << 31,
        }
    }

    fn err(s: &VaultSettings) -> String {
        from_settings(s)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn inline_ring_parses_and_picks_the_highest_as_current() {
        let a = B64.encode([1u8; 32]);
        let b = B64.encode([2u8; 32]);
        let s = VaultSettings {
            master_keys: Some(SecretString::from(format!("1:{a}, 7:{b}"))),
            ..settings()
        };
        let ring = from_settings(&s).expect("parses");
        assert_eq!(ring.current, 7);
        assert_eq!(ring.keys.len(), 2);
        let s = VaultSettings {
            master_key_current: Some(1),
            ..s
        };
        assert_eq!(from_settings(&s).expect("parses").current, 1);
    }

    #[test]
    fn bad_rings_fail_with_a_clear_message_and_no_key_material() {
        assert!(err(&settings()).contains("no master key"));
        let short = B64.encode([1u8; 16]);
        let s = VaultSettings {
            master_keys: Some(SecretString::from(format!("1:{short}"))),
            ..settings()
        };
        let e = err(&s);
        assert!(e.contains("key 1") && e.contains("32 bytes"), "{e}");
        assert!(!e.contains(&short));
        for (bad, expect) in [
            ("x", "not `<id>:<base64 key>`"),
            ("a:AAAA", "not a positive integer"),
            ("0:AAAA", "reserved"),
            ("1:!!!", "not valid base64"),
        ] {
            let s = VaultSettings {
                master_keys: Some(SecretString::from(bad)),
                ..settings()
            };
            let e = err(&s);
            assert!(e.contains(expect), "{bad}: {e}");
        }
        let k = B64.encode([1u8; 32]);
        let s = VaultSettings {
            master_keys: Some(SecretString::from(format!("1:{k},1:{k}"))),
            ..settings()
        };
        assert!(err(&s).contains("twice"));
        let s = VaultSettings {
            master_keys: Some(SecretString::from(format!("1:{k}"))),
            master_key_current: Some(2),
            ..settings()
        };
        assert!(err(&s).contains("not in the key ring"));
    }

    #[test]
    fn key_file_and_single_key_work() {
        let dir = tempfile_dir();
        let path = dir.join("ring.keys");
        let k = B64.encode([3u8; 32]);
        std::fs::write(&path, format!("# ring\n\n2:{k}\n")).expect("write");
        let s = VaultSettings {
            master_key_file: Some(path.display().to_string()),
            ..settings()
        };
        assert_eq!(from_settings(&s).expect("file").current, 2);
        let s = VaultSettings {
            master_key: Some(SecretString::from(k)),
            master_key_id: 5,
            ..settings()
        };
        assert_eq!(from_settings(&s).expect("single").current, 5);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pinnacle-ring-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
