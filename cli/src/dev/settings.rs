//! What `pinnacle dev` sets up before the services start: its NATS server (or the one in
//! `NATS_URL`), the console's WebSocket URL and allowed origins, the database, the master
//! key ring, and the secrets it keeps in the data dir (mode 0600).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use pinnacle_common::config::{DatabaseSettings, NatsSettings, VaultSettings};
use pinnacle_common::crypto::Vault;
use pinnacle_user_api::console;
use secrecy::{ExposeSecret, SecretString};

use crate::nats_server::NatsServer;

/// Reads a secret from `path`, or creates it with `make` (mode 0600).
pub(super) fn load_or_create_secret(
    path: &Path,
    make: impl FnOnce() -> String,
) -> anyhow::Result<SecretString> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(SecretString::from(existing.trim().to_string()));
    }
    let value = make();
    write_private(path, &value)?;
    Ok(SecretString::from(value))
}

/// Writes a file readable only by its owner.
pub(super) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// The origins the console is served from when the user API's address is known before it
/// binds (`127.0.0.1:8080`, not `:0`): only those pages may open the dev NATS server's
/// WebSocket, so no other web page in the developer's browser can reach its (unauthenticated)
/// NATS. A loopback address is also reachable as `localhost`. Empty (any origin) when the
/// port is chosen at bind time.
pub(super) fn console_origins(api_bind: &str) -> Vec<String> {
    let Ok(addr) = api_bind.parse::<std::net::SocketAddr>() else {
        return Vec::new();
    };
    if addr.port() == 0 {
        return Vec::new();
    }
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    origins
}

/// NATS: the one in `NATS_URL`, or our own on a free loopback port (returned, so that it
/// runs until it is dropped).
pub(super) fn start_nats(
    api_bind: &str,
    data_dir: &Path,
) -> anyhow::Result<(NatsSettings, Option<NatsServer>)> {
    match std::env::var("NATS_URL") {
        Ok(url) if !url.trim().is_empty() => Ok((NatsSettings::from_env()?, None)),
        _ => {
            let binary = crate::nats_server::find_binary()?;
            let origins = console_origins(api_bind);
            let server =
                NatsServer::start_with_websocket(&binary, &data_dir.join("nats"), &origins)?;
            let settings = NatsSettings {
                url: server.url().to_string(),
                ..NatsSettings::from_env()?
            };
            Ok((settings, Some(server)))
        }
    }
}

/// The console (served by the user API at `/`) connects to NATS over WebSocket: our own
/// server's loopback listener, unless the operator named one. Set before any service
/// starts, while nothing else reads the environment.
pub(super) fn console_nats_url(embedded: Option<&NatsServer>) -> Option<String> {
    match std::env::var(console::NATS_WS_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let url = embedded.and_then(|server| server.websocket_url().map(str::to_string));
            if let Some(url) = &url {
                std::env::set_var(console::NATS_WS_URL_VAR, url);
            }
            url
        }
    }
}

/// `DATABASE_URL`, or SQLite in the data dir.
pub(super) fn database_settings(data_dir: &Path) -> anyhow::Result<DatabaseSettings> {
    Ok(match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => DatabaseSettings::from_env()?,
        _ => DatabaseSettings {
            database_url: format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("pinnacle.db").display()
            ),
            database_max_connections: 8,
        },
    })
}

/// The master key ring, and the key file in the data dir when that is where it lives.
#[derive(Debug)]
pub(super) struct MasterKeys {
    /// The ring's settings.
    pub(super) settings: VaultSettings,
    /// The data dir's key file, when no key is configured (dev.env names it).
    pub(super) file: Option<PathBuf>,
}

/// The configured master keys, else the key file in the data dir.
pub(super) fn master_keys(data_dir: &Path) -> anyhow::Result<MasterKeys> {
    let configured = [
        "PINNACLE_MASTER_KEY",
        "PINNACLE_MASTER_KEYS",
        "PINNACLE_MASTER_KEY_FILE",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    if configured {
        return Ok(MasterKeys {
            settings: VaultSettings::from_env()?,
            file: None,
        });
    }
    // Without a configured key, the ring is the key file in the data dir
    // (`PINNACLE_MASTER_KEY_FILE` format, `<id>:<base64>`), which dev.env points the
    // operator verbs at. It is created once, with key 1 (taken over from an older data
    // dir's bare `master.key`), and then only ever appended to (`pinnacle keys add`), so a
    // restart never drops a key that data keys may be wrapped under.
    let key_file = data_dir.join("master.keys");
    if !key_file.exists() {
        let key = load_or_create_secret(&data_dir.join("master.key"), || {
            Vault::generate_master_key().expose_secret().to_string()
        })?;
        write_private(&key_file, &format!("1:{}\n", key.expose_secret()))?;
    }
    Ok(MasterKeys {
        settings: VaultSettings::file(key_file.display().to_string()),
        file: Some(key_file),
    })
}

#[cfg(test)]
mod tests {
    use super::console_origins;

    #[test]
    fn a_known_api_address_limits_the_websocket_to_its_pages() {
        assert_eq!(
            console_origins("127.0.0.1:8080"),
            ["http://127.0.0.1:8080", "http://localhost:8080"]
        );
        assert_eq!(console_origins("10.0.0.5:9000"), ["http://10.0.0.5:9000"]);
        assert!(console_origins("127.0.0.1:0").is_empty());
        assert!(console_origins("not an address").is_empty());
    }
}
