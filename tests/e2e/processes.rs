//! Services as separate processes (`pinnacle serve …`), for the tests whose faults must be
//! real: a SIGKILL that kills, a server that goes away. [`Services`] holds the environment
//! they share, a log file each in its own directory, and the start order (the user API
//! first: it applies the migrations the others then find done); the helpers below create
//! traders through the API and read the logs' tails when a test fails.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use pinnacle_common::entities::risk_limits;
use pinnacle_tests::{eventually, free_port, no_limits, ADMIN_TOKEN};
use sea_orm::{ActiveModelTrait, IntoActiveModel};
use tokio::process::{Child, Command};

/// A free loopback TCP port.
/// Each service's PostgreSQL pool (`DATABASE_MAX_CONNECTIONS`).
pub const POOL_CONNECTIONS: u32 = 8;

/// The processes of one deployment and what they share.
pub struct Services {
    /// Where each process writes `<log>.log`.
    pub dir: tempfile::TempDir,
    /// The environment every `pinnacle serve` gets (a service may add its own login).
    pub env: Vec<(String, String)>,
    /// The user API's base URL.
    pub api_url: String,
    /// The database the services use.
    pub db_url: String,
    /// Every process's `/metrics` listener: (Prometheus job, log name, address).
    metrics: std::sync::Mutex<Vec<(String, String, String)>>,
}

impl Services {
    /// The shared environment for `nats_urls` and `db_url`, with `extra` settings added (or
    /// overriding these): master key, admin token, a fast simulated feed, short order
    /// leases, no square-off.
    pub fn new(nats_urls: &str, db_url: &str, extra: &[(&str, &str)]) -> Self {
        let api_port = free_port();
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let mut env: Vec<(String, String)> = [
            ("NATS_URL", nats_urls.to_string()),
            ("DATABASE_URL", db_url.to_string()),
            ("DATABASE_MAX_CONNECTIONS", POOL_CONNECTIONS.to_string()),
            ("PINNACLE_MASTER_KEY", key),
            ("PINNACLE_MASTER_KEY_ID", "1".into()),
            ("PINNACLE_API_BIND", format!("127.0.0.1:{api_port}")),
            ("PINNACLE_API_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("PINNACLE_SIM_INTERVAL_MS", "20".into()),
            ("PINNACLE_WORKER_LEASE_MS", "1000".into()),
            ("PINNACLE_WORKER_LEASE_GRACE_MS", "500".into()),
            ("PINNACLE_WORKER_SQUARE_OFF_AT", "".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key.to_string(), value.to_string()));
        }
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            env,
            api_url: format!("http://127.0.0.1:{api_port}"),
            db_url: db_url.to_string(),
            metrics: std::sync::Mutex::default(),
        }
    }

    /// `NATS_URL` as the services got it.
    pub fn nats_urls(&self) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == "NATS_URL")
            .map(|(_, v)| v.as_str())
            .expect("NATS_URL")
    }

    /// Starts `pinnacle serve <service>` with the shared environment plus `login`, logging
    /// to `<log>.log` and serving `/metrics` on a port of its own ([`Self::metrics_targets`]).
    pub fn serve(&self, service: &str, log: &str, login: &[(&str, &str)]) -> Child {
        let metrics = format!("127.0.0.1:{}", free_port());
        self.metrics.lock().expect("lock").push((
            service.to_string(),
            log.to_string(),
            metrics.clone(),
        ));
        let file =
            std::fs::File::create(self.dir.path().join(format!("{log}.log"))).expect("log file");
        let out = file.try_clone().expect("log file");
        Command::new(env!("CARGO_BIN_EXE_pinnacle-under-test"))
            .args(["serve", service])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(login.iter().copied())
            .env("PINNACLE_METRICS_ADDR", &metrics)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("PINNACLE_ENV_FILE")
            .stdout(out)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("pinnacle serve starts")
    }

    /// Every process's `/metrics` listener so far: (Prometheus job, log name, address).
    pub fn metrics_targets(&self) -> Vec<(String, String, String)> {
        self.metrics.lock().expect("lock").clone()
    }

    /// Waits until the user API accepts connections (it has applied the migrations then).
    pub async fn until_api_listens(&self) {
        let addr = self.api_url.trim_start_matches("http://").to_string();
        eventually(Duration::from_secs(60), "the user API's port", || async {
            tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ())
        })
        .await;
    }

    /// A connection to the services' database.
    pub async fn db(&self) -> sea_orm::DatabaseConnection {
        pinnacle_common::db::connect(&pinnacle_common::config::DatabaseSettings {
            database_url: self.db_url.clone(),
            database_max_connections: 2,
        })
        .await
        .expect("test database connection")
    }

    /// A user with a token and broker account `label` (`account` is its JSON body), and no
    /// order-rate limit in the way, created through the user API; returns (id, token).
    pub async fn trader(
        &self,
        name: &str,
        label: &str,
        account: &serde_json::Value,
    ) -> (String, String) {
        let http = reqwest::Client::new();
        let post = |path: String, body: serde_json::Value| {
            http.post(format!("{}{path}", self.api_url))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
        };
        let user: serde_json::Value =
            eventually(Duration::from_secs(30), "the user API", || async {
                let reply = post("/v1/users".into(), serde_json::json!({"name": name}))
                    .await
                    .ok()?;
                reply.json().await.ok()
            })
            .await;
        let id = user["id"].as_str().expect("user id").to_string();
        let token: serde_json::Value =
            post(format!("/v1/users/{id}/tokens"), serde_json::json!({}))
                .await
                .expect("token")
                .json()
                .await
                .expect("token json");
        let token = token["token"].as_str().expect("token").to_string();
        let status = http
            .put(format!(
                "{}/v1/users/{id}/broker-accounts/{label}",
                self.api_url
            ))
            .bearer_auth(&token)
            .json(account)
            .send()
            .await
            .expect("account")
            .status();
        assert!(status.is_success(), "{label} account: {status}");
        risk_limits::Model {
            max_orders_per_second: Some(100_000),
            ..no_limits(&id)
        }
        .into_active_model()
        .insert(&self.db().await)
        .await
        .expect("limits");
        (id, token)
    }

    /// The whole log of the process logging as `name` (empty until it writes).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The last `lines` lines of each named log, for a failure message.
    pub fn logs(&self, names: &[&str], lines: usize) -> String {
        log_tails(self.dir.path(), names, lines)
    }
}

fn log_tails(dir: &Path, names: &[&str], lines: usize) -> String {
    let mut out = String::new();
    for name in names {
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.log"))) {
            out.push_str(&format!("--- {name}\n"));
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Sends signal `name` (`KILL`, `TERM`, `STOP`, `CONT`) to `child`.
pub fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}
