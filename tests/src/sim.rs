//! Angel One on the SmartAPI simulator: the simulator with a platform (market-data)
//! account and a user (trading) account, the settings that point Pinnacle at it, and
//! [`SimPublisher`], the publisher alone on a real nats-server streaming from it.

use std::time::Duration;

use futures::StreamExt;
use pinnacle_cli::stack::{spawn_publisher, ServiceResult};
use pinnacle_common::codec::Encoding;
use pinnacle_common::config::{
    AngelOneMarketDataSettings, MarketDataSettings, NatsSettings, SimFeedSettings, WorkerSettings,
};
use pinnacle_common::model::MarketTick;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_smartapi_sim::{SimAccount, SimConfig, Simulator};
use secrecy::SecretString;
use tokio::task::JoinSet;

use crate::TestNats;

/// The platform's market-data account (what `ANGEL_ONE_CLIENT_ID` names).
pub const PLATFORM_CLIENT: &str = "PMD7001";
/// Its API key (`ANGEL_ONE_API_KEY`).
pub const PLATFORM_KEY: &str = "platform-md-key-7001";
const PLATFORM_PIN: &str = "7001";
const PLATFORM_TOTP: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// A user's trading account at the same broker (stored in the database, never in env).
pub const USER_CLIENT: &str = "USR7002";
/// Its API key.
pub const USER_KEY: &str = "user-trading-key-7002";
/// Its PIN.
pub const USER_PIN: &str = "7002";
/// Its TOTP seed.
pub const USER_TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// Starts the simulator on `127.0.0.1:0` (ticks every 50 ms at any hour) with both
/// accounts, after `adjust` has had its say on the configuration.
pub async fn start_sim(adjust: impl FnOnce(&mut SimConfig)) -> Simulator {
    let mut config = SimConfig {
        tick_interval: Duration::from_millis(50),
        // Markets that never close, so these tests pass at any hour; tests of the
        // calendar turn it on and set the clock.
        enforce_market_hours: false,
        ..SimConfig::default()
    };
    adjust(&mut config);
    let sim = Simulator::start(config).await.expect("simulator starts");
    sim.add_account(SimAccount {
        client_code: PLATFORM_CLIENT.into(),
        pin: PLATFORM_PIN.into(),
        totp_seed: PLATFORM_TOTP.into(),
        api_key: PLATFORM_KEY.into(),
        static_ip: None,
        name: "platform".into(),
        available_cash_paise: 0,
    });
    sim.add_account(SimAccount {
        client_code: USER_CLIENT.into(),
        pin: USER_PIN.into(),
        totp_seed: USER_TOTP.into(),
        api_key: USER_KEY.into(),
        static_ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
        name: "user".into(),
        available_cash_paise: 100_000_000,
    });
    sim
}

/// The platform credentials, as `ANGEL_ONE_*` gives them.
pub fn platform_credentials() -> AngelOneMarketDataSettings {
    AngelOneMarketDataSettings {
        api_key: Some(SecretString::from(PLATFORM_KEY)),
        client_id: Some(PLATFORM_CLIENT.into()),
        pin: Some(SecretString::from(PLATFORM_PIN)),
        totp_secret: Some(SecretString::from(PLATFORM_TOTP)),
    }
}

/// Market-data settings for the Angel One feed on `sim`: `symbols` in `mode`.
pub fn angel_market_data(sim: &Simulator, symbols: &str, mode: &str) -> MarketDataSettings {
    MarketDataSettings {
        feed: pinnacle_common::config::FeedKind::AngelOne,
        angel_symbols: symbols.into(),
        angel_mode: mode.parse().expect("an Angel One mode"),
        angel_rest_url: sim.rest_url(),
        angel_feed_url: sim.feed_url(),
        angel_timeout_ms: 2_000,
        ..MarketDataSettings::default()
    }
}

/// Worker settings with SmartAPI on `sim`.
pub fn angel_worker(sim: &Simulator) -> WorkerSettings {
    WorkerSettings {
        smartapi_url: sim.rest_url(),
        smartapi_order_ws_url: sim.order_ws_url(),
        smartapi_timeout_ms: 2_000,
        ..crate::worker_settings()
    }
}

/// The publisher alone (feed, `md.req.>` service, status), on Angel One at the simulator.
#[derive(Debug)]
pub struct SimPublisher {
    /// The simulator.
    pub sim: Simulator,
    /// A plain client connection for the test.
    pub client: async_nats::Client,
    /// Stops the publisher.
    shutdown: Shutdown,
    /// The publisher's tasks.
    tasks: JoinSet<ServiceResult>,
    /// Dropped last.
    pub nats: TestNats,
}

impl SimPublisher {
    /// Starts the simulator (adjusted by `adjust`), nats-server and the publisher
    /// streaming `symbols` in `mode` with the platform credentials.
    pub async fn start(symbols: &str, mode: &str, adjust: impl FnOnce(&mut SimConfig)) -> Self {
        crate::logs::install();
        let sim = start_sim(adjust).await;
        let nats = TestNats::start();
        let shutdown = Shutdown::new();
        let mut tasks = JoinSet::new();
        spawn_publisher(
            &mut tasks,
            &NatsSettings::for_url(nats.url()),
            &SimFeedSettings::default(),
            &MarketDataSettings {
                stall_ms: 5_000,
                ..angel_market_data(&sim, symbols, mode)
            },
            &platform_credentials(),
            &pinnacle_common::health::Health::new(),
            shutdown.clone(),
        )
        .await
        .expect("publisher starts");
        let client = async_nats::connect(nats.url()).await.expect("test client");
        Self {
            sim,
            client,
            shutdown,
            tasks,
            nats,
        }
    }

    /// Stops the publisher, then the simulator.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            let (name, result) = joined.expect("publisher task");
            result.unwrap_or_else(|e| panic!("{name} failed: {e:#}"));
        }
        self.sim.shutdown().await;
    }
}

/// Reads ticks from `subscription` until `done` says enough or `timeout` passes.
pub async fn collect_ticks(
    subscription: &mut async_nats::Subscriber,
    timeout: Duration,
    mut done: impl FnMut(&[MarketTick]) -> bool,
) -> Vec<MarketTick> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ticks = Vec::new();
    while !done(&ticks) {
        let message = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} ticks", ticks.len()))
            .expect("subscription open");
        ticks.push(
            Encoding::MsgPack
                .decode(&message.payload)
                .expect("tick decodes"),
        );
    }
    ticks
}
