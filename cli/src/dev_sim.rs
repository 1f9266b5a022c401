//! `pinnacle dev --smartapi-sim`: the Angel One integration end to end on one machine.
//!
//! Starts the SmartAPI simulator (`pinnacle-smartapi-sim`) in this process (on
//! `--smartapi-sim-bind`, a free loopback port by default) with two accounts: the
//! platform's market-data account, whose credentials go to the publisher as if they came
//! from `ANGEL_ONE_*`, and a trading account that becomes the demo user's `angel_one`
//! broker account labelled `angel` (stored encrypted through the user API's own code
//! path). The publisher streams from the simulator's SmartWebSocketV2 feed and serves its
//! candles; the order worker places `angel` orders on its REST API and follows its
//! order-update WebSocket.
//!
//! The simulator keeps everything in memory, so the credentials here are fixed dev values
//! for a local fake broker, not secrets.

use std::path::Path;

use anyhow::Context as _;
use pinnacle_common::audit::AuditLog;
use pinnacle_common::config::{AngelOneMarketDataSettings, MarketDataSettings, WorkerSettings};
use pinnacle_common::crypto::Vault;
use pinnacle_smartapi_sim::{SimAccount, SimConfig, SimInstrument, Simulator};
use pinnacle_user_api::accounts::PutAccount;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

/// The platform's market-data account at the simulator.
pub const PLATFORM_CLIENT: &str = "PMD0001";
/// The demo user's trading account at the simulator.
pub const DEMO_CLIENT: &str = "SIMDEMO1";
/// The demo user's broker-account label for it.
pub const DEMO_LABEL: &str = "angel";
/// The algo id the demo account's orders carry.
pub const DEMO_ALGO_ID: &str = "SIMALGO1";

const PLATFORM_PIN: &str = "1357";
const PLATFORM_TOTP: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const PLATFORM_KEY: &str = "sim-platform-md-key";
const DEMO_PIN: &str = "2468";
const DEMO_TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const DEMO_KEY: &str = "sim-demo-trading-key";

/// A running simulator and the settings that point the stack at it.
#[derive(Debug)]
pub struct DevSim {
    /// The simulator (stopped by [`DevSim::shutdown`]).
    pub sim: Simulator,
}

impl DevSim {
    /// Starts the simulator on `bind` with the instruments of `instruments` (the
    /// publisher's master: a local file, or the bundled sample written into `data_dir`).
    pub async fn start(
        instruments: Option<&str>,
        data_dir: &Path,
        bind: std::net::SocketAddr,
    ) -> anyhow::Result<Self> {
        let master = match instruments.filter(|s| !s.starts_with("http")) {
            Some(path) => path.into(),
            None => {
                let path = data_dir.join("sim-scrip-master.json");
                std::fs::write(&path, pinnacle_publisher::instruments::SAMPLE_MASTER)
                    .with_context(|| format!("writing {}", path.display()))?;
                path
            }
        };
        let config = SimConfig {
            bind,
            instruments: SimInstrument::load_scrip_master(&master)
                .context("loading the simulator's instruments")?,
            ..SimConfig::default()
        };
        let sim = Simulator::start(config)
            .await
            .context("starting the SmartAPI simulator")?;
        sim.add_account(SimAccount {
            client_code: PLATFORM_CLIENT.into(),
            pin: PLATFORM_PIN.into(),
            totp_seed: PLATFORM_TOTP.into(),
            api_key: PLATFORM_KEY.into(),
            static_ip: None,
            name: "Pinnacle platform (market data)".into(),
            available_cash_paise: 0,
        });
        sim.add_account(SimAccount {
            client_code: DEMO_CLIENT.into(),
            pin: DEMO_PIN.into(),
            totp_seed: DEMO_TOTP.into(),
            api_key: DEMO_KEY.into(),
            static_ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
            name: "Demo trader".into(),
            available_cash_paise: 100_000_000,
        });
        Ok(Self { sim })
    }

    /// The platform credentials, as `ANGEL_ONE_*` would give them.
    pub fn platform_credentials(&self) -> AngelOneMarketDataSettings {
        AngelOneMarketDataSettings {
            api_key: Some(SecretString::from(PLATFORM_KEY)),
            client_id: Some(PLATFORM_CLIENT.into()),
            pin: Some(SecretString::from(PLATFORM_PIN)),
            totp_secret: Some(SecretString::from(PLATFORM_TOTP)),
        }
    }

    /// `md` with the Angel One feed pointed at the simulator.
    pub fn market_data(&self, md: MarketDataSettings) -> MarketDataSettings {
        MarketDataSettings {
            feed: pinnacle_common::config::FeedKind::AngelOne,
            angel_rest_url: self.sim.rest_url(),
            angel_feed_url: self.sim.feed_url(),
            ..md
        }
    }

    /// `worker` with SmartAPI pointed at the simulator.
    pub fn worker(&self, worker: WorkerSettings) -> WorkerSettings {
        WorkerSettings {
            smartapi_url: self.sim.rest_url(),
            smartapi_order_ws_url: self.sim.order_ws_url(),
            ..worker
        }
    }

    /// Stores (or refreshes) the demo user's `angel` broker account: the simulator's
    /// trading account, with its static IP and algo id.
    pub async fn put_demo_account(
        &self,
        db: &DatabaseConnection,
        vault: &Vault,
        audit: &AuditLog,
        user_id: &str,
    ) -> anyhow::Result<()> {
        let account = PutAccount {
            totp_seed: Some(SecretString::from(DEMO_TOTP)),
            static_ip: Some("127.0.0.1".into()),
            algo_id: Some(DEMO_ALGO_ID.into()),
            ..PutAccount::basic(
                "angel_one",
                SecretString::from(DEMO_KEY),
                SecretString::from(DEMO_CLIENT),
                SecretString::from(DEMO_PIN),
            )
        };
        crate::dev::demo::put_demo_account(db, vault, audit, user_id, DEMO_LABEL, &account).await
    }

    /// Stops the simulator.
    pub async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}
