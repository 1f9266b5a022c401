//! The web console in a real browser: headless Chromium, driven over WebDriver by
//! `chromedriver` (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/setup.sh`), against a real `pinnacle dev` whose NATS server has its loopback
//! WebSocket listener.
//!
//! It logs in with the demo token, waits for the watchlist to tick, places a LIMIT order
//! far below the price (it rests), sees a protocol error shown as code and message,
//! cancels the order and sees the cancel arrive as a live order event, reads the
//! portfolio, the audit trail and its verdict, the broker accounts and tokens (no
//! credential value, no token after creation), then the admin view and the API reference,
//! and checks that every form control has a label and that the page fits a phone. A
//! second user's token is refused for the first user's data over HTTP and over NATS.
//!
//! Screenshots of each view are taken every run; with `PINNACLE_CONSOLE_SCREENSHOTS=<dir>`
//! they are kept there (`docs/console/` holds the committed ones).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use pinnacle_tests::{eventually, free_port};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The second user's password (they log in with it in the browser).
const BOB_PASSWORD: &str = "console-bob-password";
/// How long any one thing in the page may take.
const WAIT: Duration = Duration::from_secs(30);

/// A WebDriver session on a chromedriver this test started.
struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    _driver: Child,
}

fn binary(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("none of {names:?} on PATH: run scripts/setup.sh (it installs chromium and chromium-driver)");
}

impl Browser {
    async fn start(profile: &Path) -> Self {
        let chromium = binary(&["chromium", "chromium-browser", "google-chrome"]);
        let driver_bin = binary(&["chromedriver"]);
        let port = free_port();
        // Its own process group, so Chromium and its helpers go with it (see Drop).
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        eventually(WAIT, "chromedriver to answer", || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                http.get(url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1366,1000".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Self {
            http,
            session: format!("{base}/session/{id}"),
            _driver: driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err(error) => panic!("webdriver {path}: {error}"),
        }
    }

    /// A WebDriver command; `Err` carries the driver's error and message.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request
            .send()
            .await
            .expect("webdriver call")
            .json()
            .await
            .expect("webdriver json");
        if let Some(error) = reply["value"].get("error") {
            return Err(format!("{error} {}", reply["value"]["message"]));
        }
        Ok(reply["value"].clone())
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls `expression` (a JS expression) until it is truthy; returns its value.
    async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let script =
            format!("try {{ return ({expression}) || null; }} catch (e) {{ return null; }}");
        eventually(WAIT, what, || {
            let script = script.clone();
            async move {
                let value = self.script(&script, json!([])).await;
                (!value.is_null()).then_some(value)
            }
        })
        .await
    }

    /// Runs an async script: it calls `done(value)` (its last argument) when finished.
    async fn script_async(&self, body: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1]; {body}");
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().expect("element id").to_string()
    }

    /// Clicks the element `css` names, finding it again if the page re-rendered it in
    /// between (tables are rebuilt as data arrives).
    async fn click(&self, css: &str) {
        eventually(WAIT, &format!("a click on {css}"), || async {
            let id = self.find(css).await;
            let clicked = self
                .try_call(
                    reqwest::Method::POST,
                    &format!("/element/{id}/click"),
                    Some(json!({})),
                )
                .await;
            match clicked {
                Ok(_) => Some(()),
                Err(e) if e.contains("stale element") => None,
                Err(e) => panic!("click on {css}: {e}"),
            }
        })
        .await;
    }

    /// Clears a field and types into it, as a user would.
    async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        if !text.is_empty() {
            self.call(
                reqwest::Method::POST,
                &format!("/element/{id}/value"),
                Some(json!({"text": text})),
            )
            .await;
        }
    }

    async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// A PNG of the viewport, written to `dir/<name>.png`.
    async fn screenshot(&self, dir: &Path, name: &str) {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64"))
            .expect("screenshot decodes");
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    }

    async fn quit(&self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    /// However the test ends, chromedriver's whole process group (Chromium included) stops.
    fn drop(&mut self) {
        if let Some(pid) = self._driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// `pinnacle dev`, stopped with SIGTERM however the test ends, so it stops its own
/// nats-server too (a SIGKILL would leave that running).
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let Some(pid) = self.0.id() else { return };
        // A test that failed while the server was stopped must not leave it stopped.
        if let Some(nats) = nats_server_pid_of(pid) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &nats])
                .status();
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while self.0.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The pid of `parent`'s nats-server child, if it has one.
fn nats_server_pid_of(parent: u32) -> Option<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &parent.to_string(), "nats-server"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

/// Starts `pinnacle dev` with its own NATS (and WebSocket listener) and SQLite in `data`,
/// the user API on `api_port` (a known port, so the WebSocket accepts only its pages).
async fn start_dev(data: &Path, api_port: u16) -> Dev {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pinnacle-under-test"))
        .args([
            "dev",
            "--api-bind",
            &format!("127.0.0.1:{api_port}"),
            "--data-dir",
        ])
        .arg(data)
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env_remove("PINNACLE_CONSOLE_NATS_WS_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("PINNACLE_ENV_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("pinnacle dev starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = String::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Stop with") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), read)
        .await
        .expect("the banner within 90 s");
    assert!(banner.contains("console    http://127.0.0.1:"), "{banner}");
    assert!(
        banner.contains("NATS over WebSocket at ws://127.0.0.1:"),
        "{banner}"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Dev(child)
}

fn dev_env(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .expect("dev.env")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A second user with a trade token, made with the admin token: (id, token).
async fn second_user(http: &reqwest::Client, api: &str, admin: &str) -> (String, String) {
    let user: Value = http
        .post(format!("{api}/v1/users"))
        .bearer_auth(admin)
        .json(&json!({"name": "console-bob", "password": BOB_PASSWORD}))
        .send()
        .await
        .expect("create user")
        .json()
        .await
        .expect("user json");
    let id = user["id"].as_str().expect("user id").to_string();
    let token: Value = http
        .post(format!("{api}/v1/users/{id}/tokens"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("create token")
        .json()
        .await
        .expect("token json");
    (id, token["token"].as_str().expect("token").to_string())
}

/// The dev NATS server's WebSocket answers a handshake from the console's own origin and
/// refuses one from any other page (403), so a web page the developer visits cannot reach
/// the unauthenticated dev NATS through their browser.
async fn only_the_console_may_open_the_websocket(http: &reqwest::Client, api: &str) {
    let config: Value = http
        .get(format!("{api}/console/config.json"))
        .send()
        .await
        .expect("config")
        .json()
        .await
        .expect("config json");
    let ws = config["nats_ws_url"]
        .as_str()
        .expect("a NATS WebSocket URL");
    let handshake = |origin: String| {
        http.get(ws.replacen("ws://", "http://", 1))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Origin", origin)
            .send()
    };
    let ours = handshake(api.to_string()).await.expect("handshake");
    assert_eq!(ours.status(), reqwest::StatusCode::SWITCHING_PROTOCOLS);
    let theirs = handshake("http://evil.example".into())
        .await
        .expect("handshake");
    assert_eq!(theirs.status(), reqwest::StatusCode::FORBIDDEN);
}

/// Bob's token gets nothing of the demo user's, over HTTP or NATS; `/v1/me` shows Bob.
async fn others_are_refused(
    http: &reqwest::Client,
    api: &str,
    nats: &str,
    demo: &str,
    bob: (&str, &str),
) {
    for path in [
        format!("/v1/users/{demo}/audit"),
        format!("/v1/users/{demo}/audit/verify"),
        format!("/v1/users/{demo}/broker-accounts"),
        format!("/v1/users/{demo}/tokens"),
        format!("/v1/users/{demo}"),
        "/v1/users".to_string(),
        "/v1/keys".to_string(),
    ] {
        let status = http
            .get(format!("{api}{path}"))
            .bearer_auth(bob.1)
            .send()
            .await
            .expect("request")
            .status();
        assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{path}");
    }
    let me: Value = http
        .get(format!("{api}/v1/me"))
        .bearer_auth(bob.1)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("me json");
    assert_eq!(me["kind"], "user");
    assert_eq!(me["user_id"], bob.0);
    assert!(!me.to_string().contains(bob.1), "/v1/me echoes the token");
    let client = async_nats::connect(nats).await.expect("nats");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {}", bob.1).as_str());
    headers.insert("Content-Type", "application/json");
    for verb in ["list", "funds"] {
        let reply = client
            .request_with_headers(
                format!("orders.{demo}.{verb}"),
                headers.clone(),
                "{}".into(),
            )
            .await
            .expect("reply");
        let body: Value = serde_json::from_slice(&reply.payload).expect("json reply");
        assert_eq!(body["error"]["code"], "FORBIDDEN", "{verb}: {body}");
    }
}

/// The verify route is no rubber stamp: an event forged onto Bob's chain (the dev stack's
/// NATS has no authorization) without chain headers makes his chain fail, as
/// `pinnacle audit verify` would report it.
async fn verification_can_fail(http: &reqwest::Client, api: &str, nats: &str, bob: (&str, &str)) {
    let verify = |token: String| async move {
        http.get(format!("{api}/v1/users/{}/audit/verify", bob.0))
            .bearer_auth(token)
            .send()
            .await
            .expect("verify")
            .json::<Value>()
            .await
            .expect("verify json")
    };
    let before = verify(bob.1.to_string()).await;
    assert_eq!(before["clean"], true, "{before}");
    let client = async_nats::connect(nats).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    js.publish(format!("audit.credential.{}", bob.0), "forged".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let after = verify(bob.1.to_string()).await;
    assert_eq!(after["clean"], false, "{after}");
    assert_eq!(after["problems"][0]["kind"], "unchained", "{after}");
}

/// The console's own codecs, run in the page: subject escaping (PROTOCOL.md's examples),
/// rupees to exact paise, MessagePack decoding and NATS header blocks.
async fn pure_functions_in_the_page(browser: &Browser) {
    let results = browser
        .script_async(
            "Promise.all([import('/console/app.js'), import('/console/msgpack.js'), import('/console/nats.js')])
             .then(([app, mp, nats]) => {
               const throws = (f) => { try { f(); return false; } catch { return true; } };
               const bytes = Uint8Array.of(0x82, 0xa1, 0x61, 0xcd, 0x01, 0x00, 0xa1, 0x62,
                 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb);
               done({
                 escape: ['SBIN-EQ', 'NIFTY 50', 'BAJAJ.AUTO', 'M&M-EQ', 'a~b', 'é'].map(app.escapeToken),
                 paise: ['812.35', '812.3', '812', '0.05'].map(app.toPaise),
                 bad_prices: ['8.123', '-1', '1e3', 'abc'].map((p) => throws(() => app.toPaise(p))),
                 decoded: mp.decode(bytes),
                 truncated: throws(() => mp.decode(bytes.slice(0, 9))),
                 no_responders: nats.decodeHeaders(new TextEncoder().encode('NATS/1.0 503\\r\\n\\r\\n')).status,
                 header: nats.decodeHeaders(new TextEncoder().encode('NATS/1.0\\r\\nPinnacle-Error: FORBIDDEN\\r\\n\\r\\n')).headers,
               });
             }, (e) => done({error: String(e)}));",
        )
        .await;
    assert_eq!(
        results,
        json!({
            "escape": ["SBIN-EQ", "NIFTY~2050", "BAJAJ~2EAUTO", "M&M-EQ", "a~7Eb", "~C3~A9"],
            "paise": [81235, 81230, 81200, 5],
            "bad_prices": [true, true, true, true],
            "decoded": {"a": 256, "b": -5},
            "truncated": true,
            "no_responders": 503,
            "header": {"pinnacle-error": ["FORBIDDEN"]},
        })
    );
}

/// The console's NATS client under the shipped production permissions: a node from
/// `single.conf` + `auth.conf` (with two traders) + a WebSocket block like
/// `nats/websocket.conf` (TLS left out; only the console's origin allowed). In the page
/// (served by `api`), trader A logs in as the console does: they may use market data and
/// their own inbox; trader B's order subjects and events are refused by the server; a
/// wrong password or the default inbox gets nothing.
async fn trader_permissions_over_websocket(browser: &Browser, api: &str) {
    use pinnacle_tests::cluster::{self, TRADER_A, TRADER_B};
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        cluster::nats_dir().join("single.conf"),
        dir.path().join("single.conf"),
    )
    .expect("single.conf");
    cluster::write_auth(dir.path()).expect("auth.conf and passwords");
    let ws_port = free_port();
    std::fs::write(
        dir.path().join("console.conf"),
        format!(
            "include \"single.conf\"\nwebsocket {{\n  host: 127.0.0.1\n  port: {ws_port}\n  no_tls: true\n  \
             allowed_origins: [\"{api}\"]\n}}\n"
        ),
    )
    .expect("console.conf");
    let _server = Command::new(pinnacle_cli::nats_server::find_binary().expect("nats-server"))
        .arg("-c")
        .arg(dir.path().join("console.conf"))
        .env("PINNACLE_NATS_HOST", "127.0.0.1")
        .env("PINNACLE_NATS_PORT", "-1")
        .env("PINNACLE_NATS_HTTP_PORT", "-1")
        .env("PINNACLE_NATS_STORE_DIR", dir.path().join("jetstream"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server starts");
    let url = format!("ws://127.0.0.1:{ws_port}");
    eventually(WAIT, "the WebSocket listener", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", ws_port))
            .await
            .ok()
    })
    .await;
    let (a, b) = (TRADER_A.user, TRADER_B.user);
    let script = format!(
        "import('/console/nats.js').then(async ({{ Connection }}) => {{
           const out = {{}};
           const errors = [];
           const a = await Connection.open('{url}', {{ user: '{a}', pass: '{pass}', inboxPrefix: '_INBOX.{a}' }});
           a.onerror = (e) => errors.push(e.message);
           // Allowed: market data and the trader's own order subjects and inbox.
           a.subscribe('md.tick.>', () => {{}});
           a.subscribe('events.orders.{a}', () => {{}});
           try {{ await a.request('orders.{a}.list', new Uint8Array(0), null, 2000); out.own = 'answered'; }}
           catch (e) {{ out.own = e.code; }}
           // Refused: another trader's events and orders.
           a.subscribe('events.orders.{b}', () => {{}});
           a.publish('orders.{b}.list', new Uint8Array(0));
           await a.ping();
           await new Promise((r) => setTimeout(r, 300));
           out.errors = errors;
           a.close();
           try {{ await Connection.open('{url}', {{ user: '{a}', pass: 'wrong' }}); out.wrong_password = 'accepted'; }}
           catch (e) {{ out.wrong_password = e.message; }}
           const d = await Connection.open('{url}', {{ user: '{a}', pass: '{pass}' }});
           const dErrors = [];
           d.onerror = (e) => dErrors.push(e.message);
           await d.ping();
           await new Promise((r) => setTimeout(r, 300));
           out.default_inbox = dErrors;
           d.close();
           done(out);
         }}).catch((e) => done({{ error: String(e) }}));",
        pass = TRADER_A.password,
    );
    let out = browser.script_async(&script).await;
    // No order worker runs here: the request reaches nobody, but it was allowed out and
    // the no-responders status came back on the trader's own inbox.
    assert_eq!(out["own"], "NO_RESPONDERS", "{out}");
    let errors = out["errors"].to_string();
    assert!(
        errors.contains(&format!(
            "Permissions Violation for Subscription to \\\"events.orders.{b}\\\""
        )) || errors.contains(&format!(
            "Permissions Violation for Subscription to events.orders.{b}"
        )),
        "{out}"
    );
    assert!(errors.contains(&format!("orders.{b}.list")), "{out}");
    assert_eq!(errors.matches("Permissions Violation").count(), 2, "{out}");
    assert!(
        out["wrong_password"]
            .as_str()
            .unwrap_or_default()
            .contains("Authorization Violation"),
        "{out}"
    );
    assert!(
        out["default_inbox"]
            .to_string()
            .contains("Permissions Violation for Subscription"),
        "{out}"
    );
}

/// The pid of `pinnacle dev`'s own nats-server, from its ports file
/// (`<data>/nats/ports/nats-server_<pid>.ports`).
fn nats_server_pid(data: &Path) -> u32 {
    std::fs::read_dir(data.join("nats/ports"))
        .expect("ports dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .find_map(|name| {
            name.strip_prefix("nats-server_")?
                .strip_suffix(".ports")?
                .parse()
                .ok()
        })
        .expect("a nats-server ports file")
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Places a MARKET buy of one SBIN-EQ for `user` over NATS, as a strategy would.
async fn place_market_buy(nats: &str, user: &str, token: &str, product: &str) {
    let client = async_nats::connect(nats).await.expect("nats");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {token}").as_str());
    headers.insert("Content-Type", "application/json");
    let order = json!({"client_order_id": format!("strategy-{}", uuid::Uuid::new_v4()),
        "exchange": "NSE", "symbol": "SBIN-EQ", "side": "BUY", "order_type": "MARKET", "quantity": 1,
        "product": product});
    let reply = client
        .request_with_headers(
            format!("orders.{user}.place"),
            headers,
            order.to_string().into(),
        )
        .await
        .expect("reply");
    let body: Value = serde_json::from_slice(&reply.payload).expect("json reply");
    assert_eq!(body["result"]["status"], "FILLED", "{body}");
}

/// A LIMIT buy price ~10% under the last price, on the 5-paise tick, in rupees.
async fn resting_price(nats: &str) -> String {
    let client = async_nats::connect(nats).await.expect("nats");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    let reply: Value = eventually(WAIT, "a price for SBIN-EQ", || {
        let client = client.clone();
        let headers = headers.clone();
        async move {
            let msg = client
                .request_with_headers(
                    "md.req.last",
                    headers,
                    r#"{"exchange":"NSE","symbol":"SBIN-EQ"}"#.into(),
                )
                .await
                .ok()?;
            let body: Value = serde_json::from_slice(&msg.payload).ok()?;
            body["ok"].as_bool().filter(|ok| *ok).map(|_| body)
        }
    })
    .await;
    let ltp = reply["result"]["ltp"].as_i64().expect("ltp");
    let paise = ltp * 9 / 10 / 5 * 5;
    format!("{}.{:02}", paise / 100, paise % 100)
}

/// What every step of the browser test needs.
struct Session<'a> {
    browser: &'a Browser,
    http: reqwest::Client,
    shots: &'a Path,
    api: &'a str,
    nats: &'a str,
    demo: &'a str,
    token: &'a str,
    admin: &'a str,
}

impl Session<'_> {
    /// Opens a view by its URL fragment and waits until it shows.
    async fn open(&self, view: &str) {
        self.browser.goto(&format!("{}/#{view}", self.api)).await;
        self.browser
            .wait_for(
                &format!("the {view} view"),
                &format!("!document.querySelector('#view-{view}').hidden"),
            )
            .await;
    }

    async fn logout(&self) {
        self.browser.click("#logout").await;
        self.browser
            .wait_for(
                "the login form again",
                "!document.querySelector('#view-login').hidden",
            )
            .await;
    }

    /// The visible text of the page's `main`.
    async fn main_text(&self) -> String {
        let text = self
            .browser
            .script("return document.querySelector('main').innerText", json!([]))
            .await;
        text.as_str().unwrap_or_default().to_string()
    }

    async fn get_json(&self, path: &str, bearer: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path} json: {e}"))
    }

    /// A JS expression: the first ticking watchlist row's sequence number.
    const WATCHLIST_SEQ: &'static str =
        "Number(document.querySelector('#watchlist tbody tr[data-seq]')?.dataset.seq)";

    /// Waits until the watchlist ticks past what it shows now.
    async fn watchlist_ticks(&self, what: &str) {
        let now = self
            .browser
            .wait_for("a ticking watchlist row", Self::WATCHLIST_SEQ)
            .await;
        self.browser
            .wait_for(what, &format!("{} > {now}", Self::WATCHLIST_SEQ))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trader_uses_every_view_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let shots = std::env::var_os("PINNACLE_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("shots"));
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let _dev = start_dev(&data, free_port()).await;
    let env = dev_env(&data.join("dev.env"));
    let browser = Browser::start(&dir.path().join("profile")).await;
    let session = Session {
        browser: &browser,
        http: reqwest::Client::new(),
        shots: &shots,
        api: &env["USER_API_URL"],
        nats: &env["NATS_URL"],
        demo: &env["DEMO_USER_ID"],
        token: &env["DEMO_API_TOKEN"],
        admin: &env["PINNACLE_API_ADMIN_TOKEN"],
    };
    let (api, nats) = (session.api, session.nats);
    only_the_console_may_open_the_websocket(&session.http, api).await;
    let bob = second_user(&session.http, api, session.admin).await;
    let bob = (bob.0.as_str(), bob.1.as_str());
    others_are_refused(&session.http, api, nats, session.demo, bob).await;
    verification_can_fail(&session.http, api, nats, bob).await;
    let price = resting_price(nats).await;

    login_page(&session).await;
    market_view(&session, &data).await;
    trade_view(&session, &price).await;
    portfolio_and_audit_views(&session).await;
    account_view(&session).await;
    admin_view(&session, bob).await;
    password_login(&session, bob).await;
    docs_and_phone(&session).await;
    browser.quit().await;
}

/// The login page: every control labelled, no view links before login.
async fn login_page(session: &Session<'_>) {
    let browser = session.browser;
    browser.goto(&format!("{}/", session.api)).await;
    browser
        .wait_for("the login form", "document.querySelector('#token')")
        .await;
    let unlabelled = browser
        .script(
            "return [...document.querySelectorAll('input, select')].filter(e => e.type !== 'hidden' \
             && !e.labels.length && !e.getAttribute('aria-label')).map(e => e.id || e.name);",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, json!([]), "form controls without a label");
    let nav = browser
        .script(
            "return document.querySelector('#tabs').offsetParent === null",
            json!([]),
        )
        .await;
    assert_eq!(nav, json!(true), "the views' links show before login");
    browser.screenshot(session.shots, "login").await;
}

/// Logs in with the token from the keyboard (Enter submits); the watchlist fills and
/// ticks, and keeps ticking after the NATS server was stopped and continued.
async fn market_view(session: &Session<'_>, data: &Path) {
    let browser = session.browser;
    browser
        .fill("#token", &format!("{}\u{E007}", session.token))
        .await;
    browser
        .wait_for("the connection", "document.querySelector('#conn.ok')")
        .await;
    session.watchlist_ticks("the watchlist to update").await;
    browser
        .wait_for("market status", "document.querySelector('#status-list li')")
        .await;
    browser
        .wait_for(
            "a sparkline",
            "document.querySelector('#watchlist polyline').getAttribute('points').split(' ').length > 2",
        )
        .await;
    pure_functions_in_the_page(browser).await;
    // A dead connection (the NATS server stopped, not closed) is noticed by its missing
    // PONGs and retried; once the server runs again the watchlist ticks again.
    let nats_pid = nats_server_pid(data);
    signal(nats_pid, "STOP");
    browser
        .wait_for("the connection lost", "document.querySelector('#conn.bad')")
        .await;
    signal(nats_pid, "CONT");
    browser
        .wait_for("the connection back", "document.querySelector('#conn.ok')")
        .await;
    session.watchlist_ticks("ticks after the reconnect").await;
    let source = browser
        .script("return document.documentElement.outerHTML", json!([]))
        .await;
    assert!(
        !source.as_str().unwrap_or_default().contains(session.token),
        "the token is in the page"
    );
    browser.screenshot(session.shots, "market").await;
}

/// A protocol error shown as code and message; a LIMIT order far below the price rests,
/// is modified in the dialog and cancelled, each change arriving as a live event.
async fn trade_view(session: &Session<'_>, price: &str) {
    let browser = session.browser;
    session.open("trade").await;
    browser.fill("#t-symbol", "SBIN-EQ").await;
    browser.fill("#t-qty", "1").await;
    browser.fill("#t-price", "").await;
    browser.click("#t-place").await;
    browser
        .wait_for(
            "INVALID_REQUEST shown",
            "document.querySelector('#ticket-result').textContent.startsWith('INVALID_REQUEST: ')",
        )
        .await;
    browser.fill("#t-price", price).await;
    browser.click("#t-place").await;
    browser
        .wait_for(
            "the order to rest",
            "/: OPEN/.test(document.querySelector('#ticket-result').textContent)",
        )
        .await;
    browser
        .wait_for(
            "the order in the table",
            "document.querySelector('#orders tr[data-status=OPEN]')",
        )
        .await;
    browser.screenshot(session.shots, "trade").await;
    modify_in_the_dialog(browser, price).await;
    browser
        .click("#orders tr[data-status=OPEN] button[aria-label^=Cancel]")
        .await;
    browser
        .wait_for(
            "the order cancelled",
            "document.querySelector('#orders tr[data-status=CANCELLED]')",
        )
        .await;
    browser
        .wait_for(
            "the cancel event",
            "[...document.querySelectorAll('#events li')].some(li => li.textContent.endsWith('PENDING_CANCEL → CANCELLED'))",
        )
        .await;
}

/// Modifies the resting order to a rupee below `price` (still below the market).
async fn modify_in_the_dialog(browser: &Browser, price: &str) {
    browser
        .click("#orders tr[data-status=OPEN] button[aria-label^=Modify]")
        .await;
    browser
        .wait_for(
            "the modify dialog",
            "document.querySelector('#modify-dialog').open",
        )
        .await;
    let rupees: i64 = price
        .split('.')
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let lower = format!("{}.00", rupees - 1);
    browser.fill("#m-price", &lower).await;
    browser.click("#modify-form button[value=send]").await;
    browser
        .wait_for(
            "the modified price",
            &format!(
                "!document.querySelector('#modify-dialog').open && \
                 [...document.querySelectorAll('#orders tr[data-status=OPEN] td')].some(td => td.textContent === '₹' + \
                 new Intl.NumberFormat('en-IN', {{minimumFractionDigits: 2}}).format({lower}))"
            ),
        )
        .await;
    browser
        .wait_for(
            "the modify event",
            "[...document.querySelectorAll('#events li')].some(li => li.textContent.endsWith('PENDING_MODIFY → OPEN'))",
        )
        .await;
}

/// Funds and trades; an order placed elsewhere (a strategy) fills and its events update
/// the open page; the audit trail lists the orders and the chain verifies.
async fn portfolio_and_audit_views(session: &Session<'_>) {
    let browser = session.browser;
    session.open("portfolio").await;
    browser
        .wait_for(
            "funds",
            "document.querySelectorAll('#funds dd').length === 4",
        )
        .await;
    browser
        .wait_for(
            "no trades yet",
            "document.querySelector('#trades td.empty')",
        )
        .await;
    place_market_buy(session.nats, session.demo, session.token, "INTRADAY").await;
    browser
        .wait_for(
            "the fill in trades and positions, without a reload",
            "document.querySelector('#trades tbody').textContent.includes('NSE:SBIN-EQ') && \
             document.querySelector('#positions tbody').textContent.includes('NSE:SBIN-EQ')",
        )
        .await;
    browser.screenshot(session.shots, "portfolio").await;

    // Square-off takes two clicks; then no INTRADAY position is left open. (The dev stack's
    // own daily square-off may have closed it first: then there is nothing to do.)
    browser.click("#squareoff").await;
    browser
        .wait_for(
            "the button to ask for confirmation",
            "document.querySelector('#squareoff').textContent === 'Confirm square-off'",
        )
        .await;
    browser.click("#squareoff").await;
    browser
        .wait_for(
            "the square-off's result",
            "(() => { const r = document.querySelector('#squareoff-result'); \
             return r.classList.contains('good') && (r.textContent.includes('closing SELL 1 SBIN-EQ') \
             || r.textContent.startsWith('Nothing to square off')); })()",
        )
        .await;
    browser
        .wait_for(
            "every INTRADAY position flat",
            "[...document.querySelectorAll('#positions tbody tr')].every((tr) => \
             tr.children[1].textContent !== 'INTRADAY' || tr.children[2].textContent === '0')",
        )
        .await;

    session.open("audit").await;
    browser
        .wait_for(
            "the order's audit events",
            "document.querySelector('#audit tbody').textContent.includes('order.cancel')",
        )
        .await;
    browser.click("#verify").await;
    browser
        .wait_for(
            "the chain to verify",
            "document.querySelector('#verify-result').textContent.startsWith('✓ Your chain verifies')",
        )
        .await;
    browser.screenshot(session.shots, "audit").await;
}

/// The broker accounts without a credential value; a new token shown once.
async fn account_view(session: &Session<'_>) {
    let browser = session.browser;
    session.open("account").await;
    browser
        .wait_for(
            "the paper account",
            "document.querySelector('#accounts tbody').textContent.includes('paper')",
        )
        .await;
    browser.click("#token-new button[type=submit]").await;
    let shown = browser
        .wait_for(
            "the new token, once",
            "document.querySelector('#token-value').value",
        )
        .await;
    assert!(
        shown.as_str().unwrap_or_default().starts_with("pnk_"),
        "{shown}"
    );
    browser.click("#token-dismiss").await;
    browser.screenshot(session.shots, "account").await;
    let page = session.main_text().await;
    for secret in ["paper-demo-api-key", "PAPERDEMO", "pnk_"] {
        assert!(!page.contains(secret), "the account view shows {secret}");
    }
    assert!(page.contains("api_key set"), "{page}");
}

/// The admin view, with the admin token: users, keys, and a user's kill switch switched
/// on (read back from the API) and off again.
async fn admin_view(session: &Session<'_>, (bob_id, bob_token): (&str, &str)) {
    let browser = session.browser;
    session.logout().await;
    browser.fill("#token", session.admin).await;
    browser.click("#login-token button[type=submit]").await;
    session.open("admin").await;
    browser
        .wait_for(
            "the users",
            "document.querySelector('#users tbody').textContent.includes('console-bob')",
        )
        .await;
    browser
        .wait_for("the keys", "document.querySelector('#keys tbody tr')")
        .await;
    let switch =
        |state: &str| format!("button[aria-label='Switch {state} the kill switch of console-bob']");
    browser.click(&switch("on")).await;
    browser
        .wait_for(
            "Bob's kill switch on",
            &format!("document.querySelector(\"{}\")", switch("off")),
        )
        .await;
    let limits = session
        .get_json(&format!("/v1/users/{bob_id}/risk-limits"), bob_token)
        .await;
    assert_eq!(limits["in_force"]["kill_switch"], true, "{limits}");
    browser.screenshot(session.shots, "admin").await;
    browser.click(&switch("off")).await;
    browser
        .wait_for(
            "Bob's kill switch off",
            &format!("document.querySelector(\"{}\")", switch("on")),
        )
        .await;
}

/// Bob logs in with his password and sees only his own data (the demo user's is refused
/// to his session); logging out revokes the token the login minted, and only that one.
async fn password_login(session: &Session<'_>, (bob_id, _): (&str, &str)) {
    let (browser, demo) = (session.browser, session.demo);
    session.logout().await;
    browser.fill("#login-name", "console-bob").await;
    browser.fill("#login-pass", BOB_PASSWORD).await;
    browser.click("#login-password button[type=submit]").await;
    browser
        .wait_for(
            "Bob logged in",
            "document.querySelector('#who').textContent.startsWith('console-bob')",
        )
        .await;
    session.open("audit").await;
    let refused = browser
        .script_async(&format!(
            "const auth = {{ Authorization: 'Bearer ' + sessionStorage.getItem('pinnacle.token') }};
             Promise.all(['/v1/users/{demo}/audit', '/v1/users/{demo}/broker-accounts', '/v1/users/{demo}/tokens']
               .map((p) => fetch(p, {{ headers: auth }}).then((r) => r.status))).then(done);"
        ))
        .await;
    assert_eq!(refused, json!([403, 403, 403]));
    assert!(
        !session.main_text().await.contains("order.place"),
        "Bob sees the demo user's trail"
    );
    session.logout().await;
    let tokens = session
        .get_json(&format!("/v1/users/{bob_id}/tokens"), session.admin)
        .await;
    let revoked: Vec<bool> = tokens
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| !t["revoked_at"].is_null())
        .collect();
    assert_eq!(revoked.iter().filter(|r| **r).count(), 1, "{tokens}");
    assert_eq!(revoked.len(), 2, "{tokens}");
    browser
        .fill("#token", &format!("{}\u{E007}", session.token))
        .await;
    browser
        .wait_for("the demo user back", "document.querySelector('#conn.ok')")
        .await;
}

/// The API reference page; then a phone: the market view fits its width (tables scroll
/// inside their frame), and the shipped permissions hold over the WebSocket.
async fn docs_and_phone(session: &Session<'_>) {
    let (browser, api) = (session.browser, session.api);
    browser.goto(&format!("{api}/docs")).await;
    browser
        .wait_for(
            "the operations",
            "document.querySelectorAll('#ops section').length > 10",
        )
        .await;
    browser.screenshot(session.shots, "docs").await;
    browser.resize(390, 844).await;
    browser.goto(&format!("{api}/#market")).await;
    browser
        .wait_for(
            "ticks on a phone",
            "document.querySelector('#watchlist tbody tr[data-seq]')",
        )
        .await;
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await;
    browser.screenshot(session.shots, "phone").await;
    trader_permissions_over_websocket(browser, api).await;
    let wide = browser
        .script(
            "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >              document.documentElement.clientWidth + 1 && !e.closest('.table-wrap')).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "the page scrolls sideways by {overflow}: {wide}"
    );
}

/// The production configs with the console's TLS WebSocket listener parse and load their
/// certificate (`nats-server -t`), with a throwaway self-signed one made by `openssl`.
#[test]
fn the_tls_websocket_configs_are_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nats_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats");
    for file in [
        "single.conf",
        "single-console.conf",
        "cluster.conf",
        "cluster-console.conf",
        "websocket.conf",
        "auth.conf",
    ] {
        std::fs::copy(nats_dir.join(file), dir.path().join(file)).expect(file);
    }
    std::fs::copy(
        nats_dir.join("passwords.conf.example"),
        dir.path().join("passwords.conf"),
    )
    .expect("passwords.conf");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let binary = pinnacle_cli::nats_server::find_binary().expect("nats-server");
    for conf in ["single-console.conf", "cluster-console.conf"] {
        let out = std::process::Command::new(&binary)
            .arg("-c")
            .arg(dir.path().join(conf))
            .arg("-t")
            .env("PINNACLE_NATS_NAME", "n1")
            .env("PINNACLE_NATS_HOST", "127.0.0.1")
            .env("PINNACLE_NATS_PORT", "-1")
            .env("PINNACLE_NATS_HTTP_PORT", "-1")
            .env("PINNACLE_NATS_CLUSTER_PORT", "-1")
            .env("PINNACLE_NATS_STORE_DIR", dir.path().join("js"))
            .env("PINNACLE_NATS_ROUTE_1", "nats-route://127.0.0.1:16221")
            .env("PINNACLE_NATS_ROUTE_2", "nats-route://127.0.0.1:16222")
            .env("PINNACLE_NATS_ROUTE_3", "nats-route://127.0.0.1:16223")
            .env("PINNACLE_NATS_WS_PORT", "-1")
            .env("PINNACLE_NATS_WS_CERT", &cert)
            .env("PINNACLE_NATS_WS_KEY", &key)
            .env("PINNACLE_CONSOLE_ORIGIN", "https://console.example.com")
            .output()
            .expect("nats-server runs");
        assert!(
            out.status.success(),
            "{conf}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Without the certificate the listener refuses to start: TLS is not optional.
    std::fs::remove_file(&cert).expect("remove cert");
    let out = std::process::Command::new(&binary)
        .arg("-c")
        .arg(dir.path().join("single-console.conf"))
        .arg("-t")
        .env("PINNACLE_NATS_HOST", "127.0.0.1")
        .env("PINNACLE_NATS_PORT", "-1")
        .env("PINNACLE_NATS_HTTP_PORT", "-1")
        .env("PINNACLE_NATS_STORE_DIR", dir.path().join("js"))
        .env("PINNACLE_NATS_WS_PORT", "-1")
        .env("PINNACLE_NATS_WS_CERT", &cert)
        .env("PINNACLE_NATS_WS_KEY", &key)
        .env("PINNACLE_CONSOLE_ORIGIN", "https://console.example.com")
        .output()
        .expect("nats-server runs");
    assert!(!out.status.success(), "started without its certificate");
}
