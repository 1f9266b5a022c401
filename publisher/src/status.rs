//! Publishes each exchange's status on `md.status.<EXCHANGE>` whenever it changes (and
//! once at start), checking every second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::codec::Encoding;
use pinnacle_common::model::MarketPhase;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;

use crate::calendar::{Calendar, EXCHANGES};

/// Runs until `shutdown` fires.
pub async fn run(
    client: async_nats::Client,
    calendar: Arc<Calendar>,
    clock: pinnacle_common::clock::Clock,
    period: Duration,
    shutdown: Shutdown,
) {
    let mut last: HashMap<&'static str, (MarketPhase, Option<String>)> = HashMap::new();
    let mut ticker = tokio::time::interval(period.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = clock.now();
        for exchange in EXCHANGES {
            let status = calendar.status(exchange, now);
            let key = (status.status, status.reason.clone());
            if last.get(exchange) == Some(&key) {
                continue;
            }
            let Ok(payload) = Encoding::MsgPack.encode(&status) else {
                continue;
            };
            match client.publish(subjects::status(exchange), payload).await {
                Ok(()) => {
                    tracing::info!(exchange, status = ?status.status, "market status");
                    last.insert(exchange, key);
                }
                Err(error) => tracing::warn!(%error, "status publish failed"),
            }
        }
    }
}
