//! The publisher on Angel One, end to end against the SmartAPI simulator and a real
//! nats-server: decoded ticks for the configured symbols, reconnect and resubscribe after
//! dropped sockets, re-login after a revoked session and at the session's expiry, candles
//! from getCandleData with broker failures as structured errors, and the separation of
//! credential tiers (the publisher only ever uses the environment's account; the order
//! worker never reads `ANGEL_ONE_*`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use pinnacle_common::codec::Encoding;
use pinnacle_common::model::{FeedMode, MarketTick};
use pinnacle_common::subjects::{self, md};
use pinnacle_smartapi::limits::RateLimiter;
use pinnacle_smartapi::types::CandleRequest;
use pinnacle_smartapi::{AccountKey, Egress, RestClient, RestConfig};
use pinnacle_smartapi_sim::{Fault, SessionExpiry};
use pinnacle_tests::sim::{
    angel_market_data, angel_worker, collect_ticks, platform_credentials, start_sim, SimPublisher,
    PLATFORM_CLIENT, PLATFORM_KEY, USER_CLIENT, USER_KEY, USER_PIN, USER_TOTP,
};
use pinnacle_tests::{eventually, Backend, TestStack};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::each_backend;

const SYMBOLS: &str = "NSE:SBIN-EQ,NSE:RELIANCE-EQ,CDS:USDINR29DEC26FUT";
/// (exchange, symbol, token) of `SYMBOLS`, as the instrument master lists them.
const LISTED: [(&str, &str, &str); 3] = [
    ("NSE", "SBIN-EQ", "3045"),
    ("NSE", "RELIANCE-EQ", "2885"),
    ("CDS", "USDINR29DEC26FUT", "1167"),
];

/// At least `n` ticks of every listed symbol.
fn each_symbol(n: usize) -> impl FnMut(&[MarketTick]) -> bool {
    move |ticks| {
        LISTED
            .iter()
            .all(|(_, symbol, _)| ticks.iter().filter(|t| t.symbol == *symbol).count() >= n)
    }
}

async fn request(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        subjects::headers::CONTENT_TYPE,
        Encoding::Json.content_type(),
    );
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request_with_headers(
            subject.to_string(),
            headers,
            Bytes::from(serde_json::to_vec(&body).expect("encode")),
        ),
    )
    .await
    .expect("reply within 10 s")
    .expect("request");
    serde_json::from_slice(&reply.payload).expect("JSON reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_for_the_configured_symbols_arrive_decoded() {
    let started = micros_now();
    let publisher = SimPublisher::start(SYMBOLS, "SNAP_QUOTE", |_| {}).await;
    let client = &publisher.client;
    let mut ticks = client
        .subscribe(subjects::MD_TICK_ALL)
        .await
        .expect("subscribe");
    let mut depth = client
        .subscribe(subjects::depth("NSE", "SBIN-EQ"))
        .await
        .expect("subscribe");
    let got = collect_ticks(&mut ticks, Duration::from_secs(20), each_symbol(5)).await;
    for (exchange, symbol, token) in LISTED {
        let mine: Vec<&MarketTick> = got.iter().filter(|t| t.symbol == symbol).collect();
        assert!(mine
            .iter()
            .all(|t| t.exchange == exchange && t.mode == FeedMode::SnapQuote));
        // Our own per-symbol sequence, +1 per tick with no gaps (the snapshot sent on
        // subscribe may have gone out before this test subscribed).
        let seqs: Vec<u64> = mine.iter().map(|t| t.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{symbol}: {seqs:?}"
        );
        // Numbered from the publisher's start, in microseconds since the epoch, so that a
        // restarted publisher carries on above its predecessor.
        assert!(
            seqs[0] > started && seqs[0] <= micros_now(),
            "{symbol} starts at the publisher's start ({started} µs): {seqs:?}"
        );
        // Prices are paise, through the exchange's divisor (10^7 for CDS): the latest tick
        // is within the simulator's walk of its current price.
        let now = publisher
            .sim
            .ltp(exchange, token)
            .expect("listed at the simulator");
        let last = mine.last().expect("ticks").ltp;
        assert!(
            (last - now).abs() <= now / 50,
            "{symbol}: tick {last} paise, simulator {now} paise"
        );
        for t in &mine {
            let (Some(lower), Some(upper)) = (t.lower_circuit, t.upper_circuit) else {
                panic!("SNAP_QUOTE fields missing: {t:?}");
            };
            assert!(lower < t.ltp && t.ltp < upper && t.bid <= t.ask, "{t:?}");
        }
    }
    let book = tokio::time::timeout(Duration::from_secs(10), depth.next())
        .await
        .expect("a book within 10 s")
        .expect("open");
    let book: Value = rmp_serde::from_slice(&book.payload).expect("map");
    assert!(
        book["bids"].as_array().is_some_and(|b| !b.is_empty()),
        "{book}"
    );
    let last = request(
        client,
        md::LAST,
        json!({"exchange": "CDS", "symbol": "USDINR29DEC26FUT"}),
    )
    .await;
    assert_eq!(last["ok"], true, "{last}");
    assert_eq!(publisher.sim.subscriptions(PLATFORM_CLIENT), LISTED.len());
    publisher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_sockets_reconnect_resubscribe_and_ticks_resume() {
    let publisher = SimPublisher::start(SYMBOLS, "QUOTE", |_| {}).await;
    let mut ticks = publisher
        .client
        .subscribe(subjects::MD_TICK_ALL)
        .await
        .expect("subscribe");
    let before = collect_ticks(&mut ticks, Duration::from_secs(20), each_symbol(2)).await;
    let last_seq = before
        .iter()
        .filter(|t| t.symbol == "SBIN-EQ")
        .map(|t| t.seq)
        .max();
    assert!(before
        .iter()
        .all(|t| t.mode == FeedMode::Quote && t.open.is_some()));
    for round in 0..2 {
        publisher.sim.drop_sockets();
        eventually(
            Duration::from_secs(15),
            "the feed to reconnect and resubscribe",
            || async {
                (publisher.sim.feed_connections() == 1
                    && publisher.sim.subscriptions(PLATFORM_CLIENT) == LISTED.len())
                .then_some(())
            },
        )
        .await;
        eprintln!("reconnected after drop {round}");
    }
    let after = collect_ticks(&mut ticks, Duration::from_secs(20), |t| {
        t.iter()
            .any(|t| t.symbol == "SBIN-EQ" && Some(t.seq) > last_seq.map(|s| s + 5))
    })
    .await;
    // The sequence belongs to the feed: it carries on across reconnects.
    let sbin: Vec<u64> = after
        .iter()
        .filter(|t| t.symbol == "SBIN-EQ")
        .map(|t| t.seq)
        .collect();
    assert!(sbin.windows(2).all(|w| w[1] == w[0] + 1), "{sbin:?}");
    assert_eq!(
        publisher.sim.login_count(PLATFORM_CLIENT),
        1,
        "drops need no new login"
    );
    publisher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_means_a_new_login_and_ticks_resume() {
    let publisher = SimPublisher::start(SYMBOLS, "LTP", |_| {}).await;
    let mut ticks = publisher
        .client
        .subscribe(subjects::MD_TICK_ALL)
        .await
        .expect("subscribe");
    collect_ticks(&mut ticks, Duration::from_secs(20), each_symbol(1)).await;
    assert_eq!(publisher.sim.login_count(PLATFORM_CLIENT), 1);
    // Every token dies; the reconnect's handshake is refused (401), the refresh is
    // refused (AB8050), so the feed logs in again and hands the stream the new tokens.
    publisher.sim.revoke_session(PLATFORM_CLIENT);
    publisher.sim.drop_sockets();
    eventually(Duration::from_secs(20), "a second login", || async {
        (publisher.sim.login_count(PLATFORM_CLIENT) >= 2).then_some(())
    })
    .await;
    while ticks.next().now_or_never().flatten().is_some() {}
    let resumed = collect_ticks(&mut ticks, Duration::from_secs(20), each_symbol(2)).await;
    assert!(resumed.iter().all(|t| t.mode == FeedMode::Ltp));
    assert_eq!(publisher.sim.subscriptions(PLATFORM_CLIENT), LISTED.len());
    publisher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_expiry_rolls_over_to_a_new_login() {
    // Sessions that end 4 s after login stand in for the daily 00:00 IST rollover.
    let publisher = SimPublisher::start(SYMBOLS, "SNAP_QUOTE", |c| {
        c.session_expiry = SessionExpiry::After(Duration::from_secs(4));
    })
    .await;
    let mut ticks = publisher
        .client
        .subscribe(subjects::MD_TICK_ALL)
        .await
        .expect("subscribe");
    collect_ticks(&mut ticks, Duration::from_secs(20), each_symbol(1)).await;
    eventually(
        Duration::from_secs(20),
        "a login after the expiry",
        || async { (publisher.sim.login_count(PLATFORM_CLIENT) >= 2).then_some(()) },
    )
    .await;
    while ticks.next().now_or_never().flatten().is_some() {}
    collect_ticks(&mut ticks, Duration::from_secs(20), each_symbol(3)).await;
    eventually(
        Duration::from_secs(10),
        "the subscriptions restored",
        || async { (publisher.sim.subscriptions(PLATFORM_CLIENT) == LISTED.len()).then_some(()) },
    )
    .await;
    publisher.stop().await;
}

/// The simulator's candles, asked for directly over SmartAPI with the platform account.
async fn broker_candles(rest_url: &str, token: &str, from: &str, to: &str) -> Vec<Value> {
    let client = RestClient::new(
        &RestConfig {
            base_url: rest_url.into(),
            ..RestConfig::default()
        },
        AccountKey {
            api_key: SecretString::from(PLATFORM_KEY),
            client_code: PLATFORM_CLIENT.into(),
        },
        &Egress::Default,
        RateLimiter::new(Duration::from_secs(5)),
    )
    .expect("client");
    let credentials = platform_credentials();
    let (Some(pin), Some(seed)) = (credentials.pin, credentials.totp_secret) else {
        panic!("platform credentials");
    };
    // The broker allows one login per second per client code; the publisher just had one.
    let tokens = eventually(Duration::from_secs(10), "a direct login", || async {
        let code = pinnacle_smartapi::totp::now(&seed).expect("totp");
        client.login(&pin, &code).await.ok()
    })
    .await;
    let request = CandleRequest {
        exchange: "NSE".into(),
        symboltoken: token.into(),
        interval: "FIFTEEN_MINUTE".into(),
        fromdate: from.into(),
        todate: to.into(),
    };
    client
        .candles(&tokens.jwt_token, &request)
        .await
        .expect("candles")
        .into_iter()
        .map(|r| {
            json!({"ts_ms": r.time.timestamp_millis(), "open": r.open, "high": r.high,
                   "low": r.low, "close": r.close, "volume": r.volume})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_come_from_angel_one_and_broker_failures_are_structured_errors() {
    let publisher = SimPublisher::start("NSE:SBIN-EQ", "LTP", |_| {}).await;
    let client = &publisher.client;
    let (from, to) = ("2026-11-23 09:15", "2026-11-24 15:30");
    let ask = json!({"exchange": "NSE", "symbol": "SBIN-EQ", "interval": "FIFTEEN_MINUTE",
                     "from": from, "to": to});
    let reply = request(client, md::CANDLES, ask.clone()).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["source"], "angel_one");
    let candles = reply["result"]["candles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(candles.len() > 20, "{}", candles.len());
    let expected = broker_candles(&publisher.sim.rest_url(), "3045", from, to).await;
    assert_eq!(
        candles, expected,
        "the simulator's deterministic candles, in paise"
    );

    let code = |reply: &Value| reply["error"]["code"].as_str().unwrap_or("").to_string();
    let message = |reply: &Value| reply["error"]["message"].as_str().unwrap_or("").to_string();
    publisher.sim.inject(Fault::BusinessError {
        route: "getCandleData".into(),
        code: "AB1004".into(),
        message: "Something Went Wrong, Please Try After Sometime".into(),
        times: 1,
    });
    let rejected = request(client, md::CANDLES, ask.clone()).await;
    assert_eq!(
        (rejected["ok"].clone(), code(&rejected)),
        (json!(false), "BROKER_REJECTED".into())
    );
    assert!(message(&rejected).contains("AB1004"), "{rejected}");
    publisher.sim.inject(Fault::RateLimited {
        route: "getCandleData".into(),
        times: 1,
    });
    let limited = request(client, md::CANDLES, ask.clone()).await;
    assert_eq!(code(&limited), "RATE_LIMITED", "{limited}");
    publisher.sim.inject(Fault::EmptyBody {
        route: "getCandleData".into(),
        status: 200,
        times: 1,
    });
    let empty = request(client, md::CANDLES, ask.clone()).await;
    assert_eq!(code(&empty), "BROKER_UNAVAILABLE", "{empty}");
    // An expired JWT (AG8001) is renewed and the request answered.
    publisher.sim.expire_session(PLATFORM_CLIENT);
    let renewed = request(client, md::CANDLES, ask.clone()).await;
    assert_eq!(
        renewed["result"]["candles"].as_array().cloned(),
        Some(expected)
    );
    // Bad requests never reach the broker.
    let bad = request(
        client,
        md::CANDLES,
        json!({"exchange": "NSE", "symbol": "SBIN-EQ",
        "interval": "1m", "from": from, "to": to}),
    )
    .await;
    assert_eq!(code(&bad), "INVALID_INTERVAL");
    let unknown = request(
        client,
        md::CANDLES,
        json!({"exchange": "NSE", "symbol": "NOPE-EQ",
        "interval": "ONE_DAY", "from": from, "to": to}),
    )
    .await;
    assert_eq!(code(&unknown), "UNKNOWN_SYMBOL");
    let logged = pinnacle_tests::logs::captured();
    for secret in ["7001", PLATFORM_KEY] {
        assert!(
            !logged.contains(&format!("={secret}")),
            "a secret was logged"
        );
    }
    publisher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_uses_only_environment_credentials_and_the_worker_only_stored_ones() {
    each_backend(|backend: Backend| async move {
        let sim = start_sim(|_| {}).await;
        let stack = TestStack::start_with(backend, |s| {
            s.md = angel_market_data(&sim, SYMBOLS, "SNAP_QUOTE");
            s.angel = platform_credentials();
            s.worker = angel_worker(&sim);
        })
        .await;
        let user = stack.create_user("angel-trader").await;
        let (status, body) = stack
            .api_put(
                &format!("/v1/users/{}/broker-accounts/angel", user.id),
                &user.token,
                &json!({"broker": "angel_one", "api_key": USER_KEY, "client_code": USER_CLIENT,
                        "secret": USER_PIN, "totp_seed": USER_TOTP,
                        "static_ip": "127.0.0.1", "algo_id": "ALGO7002"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        stack.wait_for_ticks("SBIN-EQ", 2).await;
        let candles = request(
            &stack.client,
            md::CANDLES,
            json!({"exchange": "NSE",
            "symbol": "SBIN-EQ", "interval": "ONE_DAY", "from": "2026-11-02 00:00",
            "to": "2026-11-27 23:59"}),
        )
        .await;
        assert_eq!(candles["result"]["source"], "angel_one", "{candles}");
        let placed = stack
            .call(
                &user,
                "place",
                json!({"client_order_id": format!("sep-{backend:?}"),
                "exchange": "NSE", "symbol": "SBIN-EQ", "side": "BUY", "order_type": "LIMIT",
                "quantity": 1, "price": 70_000, "account": "angel"}),
            )
            .await;
        // The order reached the broker on the user's own account (the worker's reply is
        // the order side's business; only which account was used matters here).
        assert!(placed["ok"].is_boolean(), "{placed}");
        eprintln!("angel order on {backend:?}: {placed}");
        eventually(
            Duration::from_secs(10),
            "the order at the broker",
            || async { (!sim.orders(USER_CLIENT).is_empty()).then_some(()) },
        )
        .await;
        assert!(
            sim.orders(PLATFORM_CLIENT).is_empty(),
            "an order on the platform account"
        );

        let requests = sim.requests();
        let by_key = |key: &str| -> Vec<_> {
            requests
                .iter()
                .filter(|r| r.headers.get("x-privatekey").map(String::as_str) == Some(key))
                .collect()
        };
        let platform = by_key(PLATFORM_KEY);
        let trading = by_key(USER_KEY);
        assert!(!platform.is_empty() && !trading.is_empty(), "{requests:?}");
        for r in &platform {
            assert_eq!(
                r.client_code.as_deref(),
                Some(PLATFORM_CLIENT),
                "{} {}",
                r.method,
                r.path
            );
            assert!(
                !r.path.contains("/order/v1/placeOrder"),
                "market data placed an order"
            );
        }
        for r in &trading {
            assert_eq!(
                r.client_code.as_deref(),
                Some(USER_CLIENT),
                "{} {}",
                r.method,
                r.path
            );
        }
        assert_eq!(
            platform.len() + trading.len(),
            requests.len(),
            "no other key was used"
        );
        assert_eq!(
            sim.subscriptions(USER_CLIENT),
            0,
            "the feed never uses a user's account"
        );
        assert_eq!(sim.subscriptions(PLATFORM_CLIENT), LISTED.len());
        let mut stack = stack;
        stack.stop().await;
        sim.shutdown().await;
    })
    .await;
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// Which of `forbidden` each file under `dir` mentions.
fn mentions(dir: &Path, forbidden: &[&str]) -> HashMap<String, Vec<String>> {
    let mut found = HashMap::new();
    for path in sources(dir) {
        let text = std::fs::read_to_string(&path).expect("read source");
        let hits: Vec<String> = forbidden
            .iter()
            .filter(|f| text.contains(**f))
            .map(|f| f.to_string())
            .collect();
        if !hits.is_empty() {
            found.insert(path.display().to_string(), hits);
        }
    }
    found
}

#[test]
fn market_data_code_reads_only_environment_credentials_and_order_code_only_stored_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let publisher = mentions(
        &root.join("publisher/src"),
        &[
            "broker_accounts",
            "BrokerCredentials",
            "Vault",
            "vault",
            "keystore",
            "crypto::",
            "DbSessionStore",
        ],
    );
    assert!(
        publisher.is_empty(),
        "the publisher touches user credentials: {publisher:?}"
    );
    let publisher_manifest =
        std::fs::read_to_string(root.join("publisher/Cargo.toml")).expect("manifest");
    for crate_name in [
        "sea-orm",
        "pinnacle-order-worker",
        "pinnacle-user-api",
        "aes-gcm",
    ] {
        assert!(
            !publisher_manifest.contains(crate_name),
            "publisher depends on {crate_name}"
        );
    }
    let worker = mentions(
        &root.join("order-worker/src"),
        &["AngelOneMarketDataSettings", "ANGEL_ONE_"],
    );
    assert!(
        worker.is_empty(),
        "the order worker reads platform credentials: {worker:?}"
    );
}

/// A candles request published without a reply subject is dropped before the publisher
/// asks Angel One anything (the platform session is a credential): only the answered
/// request reaches getCandleData.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_data_request_without_a_reply_subject_never_reaches_the_broker() {
    let publisher = SimPublisher::start("NSE:SBIN-EQ", "LTP", |_| {}).await;
    let client = &publisher.client;
    let candle_calls = || {
        publisher
            .sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("getCandleData"))
            .count()
    };
    let ask = json!({"exchange": "NSE", "symbol": "SBIN-EQ", "interval": "ONE_DAY",
                     "from": "2026-11-02 09:15", "to": "2026-11-20 15:30"});
    let before = candle_calls();
    for _ in 0..3 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            subjects::headers::CONTENT_TYPE,
            Encoding::Json.content_type(),
        );
        client
            .publish_with_headers(
                md::CANDLES,
                headers,
                Bytes::from(serde_json::to_vec(&ask).expect("encode")),
            )
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    // Taken after the three above; answered from the broker.
    let reply = request(client, md::CANDLES, ask.clone()).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = request(client, md::CANDLES, ask).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        candle_calls() - before,
        2,
        "only the answered requests reached Angel One"
    );
}

/// Now, in microseconds since the Unix epoch (what a publisher numbers its ticks from).
fn micros_now() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_micros()).expect("fits")
}
