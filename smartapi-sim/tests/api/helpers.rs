//! Test harness: a fresh simulator per test, an RFC 6238 helper, raw REST calls and
//! polling with deadlines.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use pinnacle_smartapi_sim::{SimAccount, SimConfig, Simulator};
use serde_json::{json, Value};
use sha1::Sha1;

pub const CLIENT: &str = "S1234";
pub const PIN: &str = "1234";
/// Base32 of the RFC 6238 SHA-1 test key "12345678901234567890".
pub const SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
pub const API_KEY: &str = "test-api-key";

/// RFC 6238 TOTP (HMAC-SHA1, 30 s) with `digits` digits, written independently here.
pub fn totp(key: &[u8], unix: u64, digits: u32) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
    mac.update(&(unix / 30).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0xf) as usize;
    let v = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]) % 10u32.pow(digits);
    format!("{v:0w$}", w = digits as usize)
}

pub fn totp_now() -> String {
    let key = data_encoding::BASE32_NOPAD
        .decode(SEED.as_bytes())
        .expect("base32 seed");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    totp(&key, now, 6)
}

pub fn account() -> SimAccount {
    SimAccount {
        client_code: CLIENT.into(),
        pin: PIN.into(),
        totp_seed: SEED.into(),
        api_key: API_KEY.into(),
        static_ip: None,
        name: "Test User".into(),
        available_cash_paise: 50_000_000,
    }
}

/// A running simulator plus an HTTP client.
pub struct TestSim {
    pub sim: Simulator,
    pub http: reqwest::Client,
}

/// Tokens from a login.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub jwt: String,
    pub refresh: String,
    pub feed: String,
}

pub async fn spawn_with(config: SimConfig) -> TestSim {
    let sim = Simulator::start(config).await.expect("simulator starts");
    sim.add_account(account());
    TestSim {
        sim,
        http: reqwest::Client::new(),
    }
}

/// Rate limits off (tests that check them turn them on), fast ticks, and markets that
/// never close (tests of the calendar turn it on and set the clock).
pub async fn spawn() -> TestSim {
    spawn_with(SimConfig {
        enforce_rate_limits: false,
        tick_interval: Duration::from_millis(50),
        enforce_market_hours: false,
        ..SimConfig::default()
    })
    .await
}

pub const LOGIN: &str = "/rest/auth/angelbroking/user/v1/loginByPassword";
pub const SECURE: &str = "/rest/secure/angelbroking";

impl TestSim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.rest_url(), path)
    }

    /// A request with the SmartAPI headers; `jwt` adds the Bearer token.
    pub fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        jwt: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = client
            .request(method, self.url(path))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .header("X-UserType", "USER")
            .header("X-SourceID", "WEB")
            .header("X-ClientLocalIP", "127.0.0.1")
            .header("X-ClientPublicIP", "106.193.147.98")
            .header("X-MACAddress", "aa:bb:cc:dd:ee:ff")
            .header("X-PrivateKey", API_KEY);
        if let Some(jwt) = jwt {
            r = r.header("Authorization", format!("Bearer {jwt}"));
        }
        r
    }

    /// POST returning (HTTP status, body text).
    pub async fn post_raw(&self, path: &str, jwt: Option<&str>, body: Value) -> (u16, String) {
        let resp = self
            .request(&self.http, reqwest::Method::POST, path, jwt)
            .json(&body)
            .send()
            .await
            .expect("request");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    pub async fn post(&self, path: &str, jwt: Option<&str>, body: Value) -> Value {
        let (status, text) = self.post_raw(path, jwt, body).await;
        assert_eq!(status, 200, "POST {path}: {text}");
        serde_json::from_str(&text).expect("JSON body")
    }

    pub async fn get(&self, path: &str, jwt: &str) -> Value {
        let resp = self
            .request(&self.http, reqwest::Method::GET, path, Some(jwt))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.expect("JSON body")
    }

    pub async fn login(&self) -> Tokens {
        let v = self
            .post(
                LOGIN,
                None,
                json!({"clientcode": CLIENT, "password": PIN, "totp": totp_now()}),
            )
            .await;
        assert_eq!(v["status"], true, "{v}");
        let d = &v["data"];
        Tokens {
            jwt: d["jwtToken"].as_str().expect("jwt").into(),
            refresh: d["refreshToken"].as_str().expect("refresh").into(),
            feed: d["feedToken"].as_str().expect("feed").into(),
        }
    }

    pub async fn place(&self, jwt: &str, extra: Value) -> Value {
        let mut body = json!({
            "variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045",
            "transactiontype": "BUY", "exchange": "NSE", "ordertype": "MARKET",
            "producttype": "INTRADAY", "duration": "DAY", "price": "0", "quantity": "1",
        });
        for (k, v) in extra.as_object().expect("object").iter() {
            body[k] = v.clone();
        }
        self.post(&format!("{SECURE}/order/v1/placeOrder"), Some(jwt), body)
            .await
    }
}

/// Polls `cond` every 10 ms until it holds or 5 s pass.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[test]
fn totp_helper_matches_rfc6238_sha1_vectors() {
    let key = b"12345678901234567890";
    assert_eq!(totp(key, 59, 8), "94287082");
    assert_eq!(totp(key, 1_111_111_109, 8), "07081804");
    assert_eq!(totp(key, 2_000_000_000, 8), "69279037");
}
