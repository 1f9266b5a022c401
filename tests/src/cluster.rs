//! A 3-node nats-server cluster started from the shipped `nats/cluster.conf`, `nats/auth.conf`
//! and `nats/streams/*.json`, on loopback with free ports and a store dir per node.
//!
//! The configs are copied into a temporary directory together with a `passwords.conf` of
//! test-only bcrypt hashes, and two traders are added with the operator's own
//! `nats/add-trader.sh`, so the tests exercise exactly what an operator runs. Each node gets
//! its name, ports, store dir and routes from the environment, as `cluster.conf` documents.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pinnacle_common::subjects;

/// A NATS login used by the tests. The passwords exist only here; the hashes are bcrypt
/// (cost 4, to keep connects fast) of `test-<user>`.
#[derive(Debug, Clone, Copy)]
pub struct Login {
    /// The NATS user name.
    pub user: &'static str,
    /// The plain password the client sends.
    pub password: &'static str,
    /// What the server holds.
    hash: &'static str,
    /// Traders connect with their private inbox prefix.
    trader: bool,
}

/// The operator.
pub const ADMIN: Login = Login {
    user: "admin",
    password: "test-admin",
    hash: "$2b$04$5tnWyy8U2rRFAmhtBEdRN.oPWYSSVD5iQaBs9mNFEPXNWoIWzX/Ai",
    trader: false,
};
/// The market-data publisher.
pub const PUBLISHER: Login = Login {
    user: "publisher",
    password: "test-publisher",
    hash: "$2b$04$F5IiOqfDEEzcU5Y1OQrx3uF3xLGBwxkmSSuSGAwO.F0E.xNEU9SxS",
    trader: false,
};
/// An order worker.
pub const ORDER_WORKER: Login = Login {
    user: "order-worker",
    password: "test-order-worker",
    hash: "$2b$04$AcA3EREGqBsEbHrFgdmsjetUCPPw8AxrxzccU0KaXonCcuGxkMxR6",
    trader: false,
};
/// The user API.
pub const USER_API: Login = Login {
    user: "user-api",
    password: "test-user-api",
    hash: "$2b$04$5649sgqKhhR5J3gpfpWPDuyqqr27miSe4H/YxMDliH1HPP.ERE5z6",
    trader: false,
};
/// An audit-stream reader.
pub const AUDITOR: Login = Login {
    user: "auditor",
    password: "test-auditor",
    hash: "$2b$04$TlkFGjA/on5iXuJ/vhKM9eYjaHEHns8f89cAjCDNsGX3awnS/onDy",
    trader: false,
};
/// Trader A: the NATS user name is the Pinnacle user id.
pub const TRADER_A: Login = Login {
    user: "3f1c0000-0000-4000-8000-00000000000a",
    password: "test-trader-a",
    hash: "$2b$04$MlrTFyQg14DH8rSv6TlMOuVVQKGntRretNWHLDI/CdaSPj7kfAXca",
    trader: true,
};
/// Trader B.
pub const TRADER_B: Login = Login {
    user: "3f1c0000-0000-4000-8000-00000000000b",
    password: "test-trader-b",
    hash: "$2b$04$YRg12oSH4gL0CtAguD9hn.xXnrO.FUtzvcHk3awN9V3iCsEAwC9ba",
    trader: true,
};

/// The system account's operator login (meta leader step-down, server reports).
pub const SYS: Login = Login {
    user: "sys",
    password: "test-sys",
    hash: "$2b$04$qFQfMHW.EeUk18AQxpjbqOd6ujdzGEN8GsB45QPx9VXqqW2MVS7B.",
    trader: false,
};

/// Every login that is not the admin.
pub const NON_ADMINS: [Login; 6] = [
    PUBLISHER,
    ORDER_WORKER,
    USER_API,
    AUDITOR,
    TRADER_A,
    TRADER_B,
];

/// The R3 streams an operator creates from `nats/streams/` before the services start.
pub const SHIPPED_STREAMS: [&str; 4] = [
    subjects::AUDIT_STREAM,
    subjects::ORDER_EVENTS_STREAM,
    subjects::CREDENTIAL_GENERATIONS_STREAM,
    subjects::SMARTAPI_RATE_STREAM,
];

/// The repository's `nats/` directory.
pub fn nats_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats")
}

/// One node: its ports and store stay the same across a kill and a restart.
#[derive(Debug)]
struct Node {
    /// The process while it runs (killed on drop).
    child: Option<Child>,
    /// Client port.
    port: u16,
    /// Monitoring port (`/jsz` tells who the meta leader is).
    http_port: u16,
    /// Route port.
    cluster_port: u16,
    /// Its store, ports file and log.
    dir: PathBuf,
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three nodes of one cluster; stopped and their stores removed on drop.
#[derive(Debug)]
pub struct TestCluster {
    /// The nodes, in start order.
    nodes: Vec<Node>,
    /// The nodes' route URLs, the same on every node.
    routes: Vec<String>,
    /// The config every node runs.
    conf: PathBuf,
    /// Configs, stores and logs.
    dir: tempfile::TempDir,
}

/// Copies the shipped configs into `dir`, writes the test passwords and adds both traders.
fn write_configs(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::copy(nats_dir().join("cluster.conf"), dir.join("cluster.conf"))
        .context("cluster.conf")?;
    write_auth(dir)?;
    Ok(dir.join("cluster.conf"))
}

/// Copies the shipped `auth.conf` into `dir` with a `passwords.conf` of the test hashes,
/// and adds both traders (for any config that includes `auth.conf`).
pub fn write_auth(dir: &Path) -> anyhow::Result<()> {
    for file in ["auth.conf", "trader.conf.tmpl", "add-trader.sh"] {
        std::fs::copy(nats_dir().join(file), dir.join(file)).with_context(|| file.to_string())?;
    }
    let passwords: String = [
        ("ADMIN", ADMIN),
        ("PUBLISHER", PUBLISHER),
        ("ORDER_WORKER", ORDER_WORKER),
        ("USER_API", USER_API),
        ("AUDITOR", AUDITOR),
        ("SYS", SYS),
    ]
    .iter()
    .map(|(name, login)| format!("{name}_PASSWORD = \"{}\"\n", login.hash))
    .collect();
    std::fs::write(dir.join("passwords.conf"), passwords)?;
    // Trader A the shell way (a hash made elsewhere), trader B as `pinnacle nats
    // add-trader` does it: both must give working logins.
    let status = Command::new("bash")
        .arg(dir.join("add-trader.sh"))
        .args([TRADER_A.user, TRADER_A.hash])
        .arg(dir.join("auth.conf"))
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "add-trader.sh failed for {}",
        TRADER_A.user
    );
    pinnacle_cli::nats_admin::add_trader(&dir.join("auth.conf"), TRADER_B.user, TRADER_B.hash)?;
    Ok(())
}

impl TestCluster {
    /// Starts three nodes and waits until they have elected a JetStream meta leader.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let conf = write_configs(dir.path())?;
        let mut nodes = Vec::new();
        for i in 0..3 {
            let node_dir = dir.path().join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&node_dir)?;
            nodes.push(Node {
                child: None,
                port: crate::free_port(),
                http_port: crate::free_port(),
                cluster_port: crate::free_port(),
                dir: node_dir,
            });
        }
        let routes = nodes
            .iter()
            .map(|n| format!("nats-route://127.0.0.1:{}", n.cluster_port))
            .collect();
        let mut cluster = Self {
            nodes,
            routes,
            conf,
            dir,
        };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        for i in 0..3 {
            cluster.wait_for_port(i, Duration::from_secs(10)).await?;
        }
        cluster
            .wait_for_meta_leader(Duration::from_secs(15))
            .await?;
        Ok(cluster)
    }

    /// Starts node `i`'s process on its ports and store.
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let binary = pinnacle_cli::nats_server::find_binary()?;
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("server.log"))?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&self.conf)
            .env("PINNACLE_NATS_NAME", format!("nats-{}", i + 1))
            .env("PINNACLE_NATS_HOST", "127.0.0.1")
            .env("PINNACLE_NATS_PORT", node.port.to_string())
            .env("PINNACLE_NATS_HTTP_PORT", node.http_port.to_string())
            .env("PINNACLE_NATS_CLUSTER_PORT", node.cluster_port.to_string())
            .env("PINNACLE_NATS_STORE_DIR", node.dir.join("jetstream"))
            .env("PINNACLE_NATS_ROUTE_1", &self.routes[0])
            .env("PINNACLE_NATS_ROUTE_2", &self.routes[1])
            .env("PINNACLE_NATS_ROUTE_3", &self.routes[2])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Waits until node `i` accepts connections.
    async fn wait_for_port(&mut self, i: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let address = format!("127.0.0.1:{}", self.nodes[i].port);
        loop {
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.nodes[i].child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(self.nodes[i].dir.join("server.log"))
                    .unwrap_or_default();
                anyhow::bail!("node {} exited with {status}:\n{log}", i + 1);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node {} not listening within {within:?}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs node `i` (its store stays).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on the same ports and store, and waits until the three nodes
    /// agree on a meta leader again.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_for_port(i, Duration::from_secs(10)).await?;
        self.wait_for_meta_leader(Duration::from_secs(30)).await
    }

    /// The index of the node named `name` (`nats-2` → 1).
    pub fn index_of(name: &str) -> Option<usize> {
        let n: usize = name.strip_prefix("nats-")?.parse().ok()?;
        (1..=3).contains(&n).then(|| n - 1)
    }

    /// Polls every node's `/jsz` until all name the same meta leader of a 3-node group.
    pub async fn wait_for_meta_leader(&self, within: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            let mut leaders = Vec::new();
            for node in &self.nodes {
                let url = format!("http://127.0.0.1:{}/jsz", node.http_port);
                let body: Option<serde_json::Value> = match http.get(&url).send().await {
                    Ok(response) => response.json().await.ok(),
                    Err(_) => None,
                };
                let meta = body.as_ref().and_then(|b| b.get("meta_cluster"));
                let leader = meta.and_then(|m| m.get("leader")).and_then(|l| l.as_str());
                let size = meta
                    .and_then(|m| m.get("cluster_size"))
                    .and_then(|s| s.as_u64());
                if let (Some(leader), Some(3)) = (leader, size) {
                    leaders.push(leader.to_string());
                }
            }
            if leaders.len() == 3 && leaders.iter().all(|l| !l.is_empty() && *l == leaders[0]) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no JetStream meta leader within {within:?} (saw {leaders:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `nats://127.0.0.1:<port>` of node `index` (0, 1 or 2).
    pub fn url(&self, index: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[index].port)
    }

    /// Every node's URL, comma separated, as `NATS_URL` takes them.
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node that leads stream `name`, asked as admin.
    pub async fn stream_leader(&self, admin: &Conn, name: &str) -> anyhow::Result<usize> {
        let info = admin
            .js_api(&format!("$JS.API.STREAM.INFO.{name}"), Vec::new())
            .await?;
        let leader = info["cluster"]["leader"].as_str().unwrap_or_default();
        Self::index_of(leader).with_context(|| format!("{name} has no leader: {info}"))
    }

    /// Waits until every one of [`SHIPPED_STREAMS`] has a leader and both followers current:
    /// after a node loss each stream elects on its own, and the credential register or the
    /// rate bucket may still be leaderless when AUDIT already has its leader again.
    pub async fn wait_all_current(&self, admin: &Conn, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for name in SHIPPED_STREAMS {
            self.wait_for_replicas(admin, name, deadline).await?;
        }
        Ok(())
    }

    /// The index of the JetStream meta leader, as a live node's `/jsz` names it.
    pub async fn meta_leader(&self) -> Option<usize> {
        let http = reqwest::Client::new();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let url = format!("http://127.0.0.1:{}/jsz", node.http_port);
            let Ok(response) = http.get(&url).send().await else {
                continue;
            };
            let Ok(body) = response.json::<serde_json::Value>().await else {
                continue;
            };
            if let Some(leader) = body["meta_cluster"]["leader"].as_str() {
                return Self::index_of(leader);
            }
        }
        None
    }

    /// The index of a live node holding a client connection named `name`, from `/connz`.
    pub async fn node_with_connection(&self, name: &str) -> Option<usize> {
        let http = reqwest::Client::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.child.is_none() {
                continue;
            }
            let url = format!("http://127.0.0.1:{}/connz?limit=4096", node.http_port);
            let Ok(response) = http.get(&url).send().await else {
                continue;
            };
            let Ok(body) = response.json::<serde_json::Value>().await else {
                continue;
            };
            let holds = body["connections"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["name"] == name));
            if holds {
                return Some(i);
            }
        }
        None
    }

    /// The scratch directory (configs, per-node stores and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Connects to node `index` as `login`. Traders use their private inbox prefix
    /// `_INBOX.<user id>`, the only inbox their permissions let them subscribe to.
    pub async fn connect(&self, index: usize, login: Login) -> anyhow::Result<Conn> {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let mut options = async_nats::ConnectOptions::with_user_and_password(
            login.user.into(),
            login.password.into(),
        )
        .event_callback(move |event| {
            let sink = sink.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    sink.lock().expect("errors lock").push(error.to_string());
                }
            }
        });
        if login.trader {
            options = options.custom_inbox_prefix(format!("_INBOX.{}", login.user));
        }
        let client = options
            .connect(self.url(index))
            .await
            .with_context(|| format!("connecting as {}", login.user))?;
        Ok(Conn {
            client,
            errors,
            user: login.user,
        })
    }

    /// As admin, creates (or, if a service already created it, updates) a stream from its
    /// definition in `nats/streams/<name>.json`, retrying while the cluster settles.
    pub async fn admin_apply_stream(&self, admin: &Conn, name: &str) -> anyhow::Result<()> {
        let definition = std::fs::read(nats_dir().join(format!("streams/{name}.json")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A just-formed cluster may time a request out as well as refuse it: both are
            // asked again until the deadline.
            let applied = async {
                let exists = admin
                    .js_api(&format!("$JS.API.STREAM.INFO.{name}"), Vec::new())
                    .await?
                    .get("error")
                    .is_none();
                let verb = if exists { "UPDATE" } else { "CREATE" };
                let reply = admin
                    .js_api(&format!("$JS.API.STREAM.{verb}.{name}"), definition.clone())
                    .await?;
                match reply.get("error") {
                    None => Ok(()),
                    Some(error) => Err(anyhow::anyhow!("{verb} {name} failed: {error}")),
                }
            }
            .await;
            match applied {
                Ok(()) => return self.wait_for_replicas(admin, name, deadline).await,
                Err(error) if Instant::now() > deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl TestCluster {
    /// Polls the stream's info until it has a leader and two current followers (after a
    /// create, or an update from R1 to R3, the new group first elects its leader).
    async fn wait_for_replicas(
        &self,
        admin: &Conn,
        name: &str,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        loop {
            // Right after a node loss the API may not answer for a moment.
            let info = admin
                .js_api(&format!("$JS.API.STREAM.INFO.{name}"), Vec::new())
                .await
                .unwrap_or_default();
            let cluster = &info["cluster"];
            let current = cluster["replicas"]
                .as_array()
                .map_or(0, |r| r.iter().filter(|p| p["current"] == true).count());
            if cluster["leader"].as_str().is_some_and(|l| !l.is_empty()) && current == 2 {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name}: replicas not current in time: {cluster}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A client connection that remembers the errors the server sent it.
#[derive(Debug)]
pub struct Conn {
    /// The connection.
    pub client: async_nats::Client,
    /// `-ERR` lines from the server, as async-nats reports them to the event callback.
    errors: Arc<Mutex<Vec<String>>>,
    /// Who this is, for failure messages.
    pub user: &'static str,
}

impl Conn {
    /// Waits (up to 5 s) for the server's `Permissions Violation for <what> to "<subject>"`,
    /// where `what` is `Publish` or `Subscription`. A flush first writes out everything
    /// sent before (it does not wait for the server; the loop does).
    pub async fn expect_violation(&self, what: &str, subject: &str) {
        let needle = format!("Permissions Violation for {what} to \"{subject}\"");
        let _ = self.client.flush().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self
                .errors
                .lock()
                .expect("errors lock")
                .iter()
                .any(|e| e.contains(&needle))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: expected `{needle}`, got {:?}",
                self.user,
                self.errors.lock().expect("errors lock")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Asserts the server has reported no permission violation on this connection so far.
    /// A flush writes out what was sent but does not wait for the server, so a violation
    /// it reports later is caught only by a later check on the same connection.
    pub async fn expect_no_violation(&self) {
        let _ = self.client.flush().await;
        let errors = self.errors.lock().expect("errors lock");
        assert!(
            !errors.iter().any(|e| e.contains("Permissions Violation")),
            "{}: unexpected {errors:?}",
            self.user
        );
    }

    /// A raw JetStream API request; the JSON reply (which carries `error` on failure).
    pub async fn js_api(&self, subject: &str, body: Vec<u8>) -> anyhow::Result<serde_json::Value> {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            self.client.request(subject.to_string(), body.into()),
        )
        .await
        .with_context(|| format!("{subject}: no reply"))??;
        Ok(serde_json::from_slice(&reply.payload)?)
    }
}
