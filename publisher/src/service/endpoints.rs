//! The market-data service's identity for the NATS micro services API: its name, one
//! endpoint per `md.req.*` verb, and the discovery service that answers `$SRV.*`.

use pinnacle_common::micro;
use pinnacle_common::subjects::{self, md};

/// The micro-service name the market-data service registers under.
pub const SERVICE_NAME: &str = "pinnacle-market-data";

/// Every `md.req.*` verb as a micro endpoint: (endpoint name, subject). Endpoint names
/// may not contain dots, so `symbols.search` is `symbols_search`.
pub const ENDPOINTS: [(&str, &str); 6] = [
    ("last", md::LAST),
    ("snapshot", md::SNAPSHOT),
    ("candles", md::CANDLES),
    ("symbols_search", md::SYMBOLS_SEARCH),
    ("symbols_lookup", md::SYMBOLS_LOOKUP),
    ("status", md::STATUS),
];

/// The discovery identity and per-endpoint statistics of the market-data service; one
/// per publisher process, shared by its incarnations.
pub fn discovery() -> micro::Service {
    micro::Service::new(
        SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
        "Pinnacle market data: last value, snapshot, candles, symbols, market status",
        ENDPOINTS
            .iter()
            .map(|(name, subject)| micro::Endpoint {
                name: (*name).to_string(),
                subject: (*subject).to_string(),
                queue_group: subjects::MD_QUEUE.to_string(),
            })
            .collect(),
    )
}

/// The endpoint name of a request subject, if it is one of [`ENDPOINTS`].
pub(super) fn endpoint_of(subject: &str) -> Option<&'static str> {
    ENDPOINTS
        .iter()
        .find(|(_, s)| *s == subject)
        .map(|(name, _)| *name)
}
