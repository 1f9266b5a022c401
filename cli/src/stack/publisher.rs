//! The market-data publisher: the feed loop, the `md.req.>` service and the market-status
//! announcer, each on the publisher's connection, under supervision.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pinnacle_common::clock::Clock;
use pinnacle_common::config::{
    AngelOneMarketDataSettings, MarketDataSettings, NatsSettings, SimFeedSettings,
};
use pinnacle_common::feed::SharedFeed;
use pinnacle_common::health::Health;
use pinnacle_common::metrics::{metrics, Component};
use pinnacle_common::micro;
use pinnacle_common::nats::Connections;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::supervise::{self, Policy, Run, Start};
use pinnacle_publisher::angel::AngelHistory;
use pinnacle_publisher::cache::LastValues;
use pinnacle_publisher::calendar::Calendar;
use pinnacle_publisher::candles::SimHistory;
use pinnacle_publisher::instruments::Catalog;
use pinnacle_publisher::service::MdService;
use pinnacle_publisher::PublishOptions;
use tokio::task::JoinSet;

use super::lifecycle::{first_to_stop, joined, ServiceResult};

/// Starts the market-data publisher: the feed loop, the `md.req.>` service and the
/// market-status announcer, each on the publisher's connection, under supervision.
///
/// The feed is `PINNACLE_MD_FEED`'s; candles come from Angel One whenever `angel` (the
/// platform's `ANGEL_ONE_*` credentials, the only ones the publisher ever reads) is set.
/// The feed and the last-value cache outlive a rebuilt connection.
pub async fn spawn_publisher(
    tasks: &mut JoinSet<ServiceResult>,
    nats_settings: &NatsSettings,
    sim: &SimFeedSettings,
    md: &MarketDataSettings,
    angel: &AngelOneMarketDataSettings,
    health: &Health,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    metrics().enable(Component::Publisher);
    let shared = Shared::load(sim, md, angel).await?;
    let start = move |connections: Connections, stop: Shutdown| -> Start<anyhow::Error> {
        shared.start(connections, stop)
    };
    let supervisor = supervise::supervise(
        "pinnacle-publisher",
        nats_settings.clone(),
        health.link("pinnacle-publisher"),
        Policy::default(),
        shutdown,
        start,
    )
    .await?;
    tasks.spawn(async move { ("publisher", joined(supervisor.await)) });
    Ok(())
}

/// What every incarnation of the publisher shares: it outlives a rebuilt connection.
struct Shared {
    cache: Arc<LastValues>,
    catalog: Arc<Catalog>,
    calendar: Arc<Calendar>,
    clock: Clock,
    feed: SharedFeed,
    history: Option<Arc<AngelHistory>>,
    seed: u64,
    max_payload: usize,
    /// One discovery identity for the process, so statistics survive a rebuilt connection.
    micro: micro::Service,
    options: PublishOptions,
}

impl Shared {
    /// Loads the instrument master and the calendar and builds the configured sources.
    async fn load(
        sim: &SimFeedSettings,
        md: &MarketDataSettings,
        angel: &AngelOneMarketDataSettings,
    ) -> anyhow::Result<Self> {
        let catalog = Arc::new(
            Catalog::load(md.instruments.as_deref())
                .await
                .context("loading the instrument master")?,
        );
        let calendar = Arc::new(Calendar::load(md.holidays.as_deref())?);
        let clock = sim.now.clock();
        let sources = pinnacle_publisher::source::build_sources(sim, md, angel, &catalog)?;
        tracing::info!(
            feed = sources.feed.name(),
            candles = if sources.history.is_some() {
                "angel_one"
            } else {
                "simulated"
            },
            "market-data sources"
        );
        let cache = Arc::new(LastValues::new());
        let options = PublishOptions {
            cache: cache.clone(),
            stall_timeout: Duration::from_millis(md.stall_ms.max(1)),
            depth: sim.depth,
            tick_trace_ratio: md.tick_trace_ratio,
            ..PublishOptions::default()
        };
        Ok(Self {
            cache,
            catalog,
            calendar,
            clock,
            feed: SharedFeed::new(sources.feed),
            history: sources.history,
            seed: sim.seed,
            max_payload: md.max_payload,
            micro: pinnacle_publisher::service::discovery(),
            options,
        })
    }

    /// One incarnation on `connections` (`md.req.>` arrives on the intake one), until
    /// `stop` fires.
    fn start(&self, connections: Connections, stop: Shutdown) -> Start<anyhow::Error> {
        let client = connections.main().clone();
        let service = Arc::new(MdService {
            client: connections.intake().clone(),
            cache: self.cache.clone(),
            catalog: self.catalog.clone(),
            calendar: self.calendar.clone(),
            history: SimHistory { seed: self.seed },
            clock: self.clock,
            angel: self.history.clone(),
            max_payload: self.max_payload,
            micro: self.micro.clone(),
        });
        let parts = Parts {
            calendar: self.calendar.clone(),
            clock: self.clock,
            feed: self.feed.clone(),
            options: self.options.clone(),
        };
        Box::pin(parts.run(client, service, stop))
    }
}

/// What an incarnation's status announcer and publishing loop take.
struct Parts {
    calendar: Arc<Calendar>,
    clock: Clock,
    feed: SharedFeed,
    options: PublishOptions,
}

impl Parts {
    /// Starts the service, then the status announcer and the publishing loop; the service
    /// subscribes before this returns, so requests sent right after start are answered.
    async fn run(
        self,
        client: async_nats::Client,
        service: Arc<MdService>,
        stop: Shutdown,
    ) -> anyhow::Result<Run<anyhow::Error>> {
        let Self {
            calendar,
            clock,
            feed,
            options,
        } = self;
        let mut parts = JoinSet::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let service_stop = stop.clone();
        parts.spawn(async move {
            let result =
                pinnacle_publisher::service::run_with_ready(service, service_stop, ready_tx).await;
            ("md-service", result.map_err(Into::into))
        });
        ready_rx
            .await
            .context("the market-data service did not start")??;
        let (status_client, status_stop) = (client.clone(), stop.clone());
        parts.spawn(async move {
            pinnacle_publisher::status::run(
                status_client,
                calendar,
                clock,
                Duration::from_secs(1),
                status_stop,
            )
            .await;
            ("md-status", Ok(()))
        });
        let publish_stop = stop.clone();
        parts.spawn(async move {
            let result =
                pinnacle_publisher::run(client, Box::new(feed), options, publish_stop).await;
            ("publisher", result.map_err(Into::into))
        });
        Ok(first_to_stop(parts, stop))
    }
}
