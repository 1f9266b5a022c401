//! What the market-data service reads while it answers: the connection, the caches, the
//! instrument master, the calendar and the candle sources.

use std::sync::Arc;

use pinnacle_common::micro;

use crate::angel::AngelHistory;
use crate::cache::LastValues;
use crate::calendar::Calendar;
use crate::candles::SimHistory;
use crate::instruments::Catalog;

/// Everything the service reads.
#[derive(Debug)]
pub struct MdService {
    /// The connection requests (and `$SRV` discovery) arrive on and are answered on: the
    /// publisher's intake connection, so that a request async-nats cannot parse never
    /// stops the ticks going out on its main one
    /// ([`pinnacle_common::nats::Connections`]).
    pub client: async_nats::Client,
    /// The last-value cache the publishing loop fills.
    pub cache: Arc<LastValues>,
    /// The instrument master.
    pub catalog: Arc<Catalog>,
    /// Exchange hours and holidays.
    pub calendar: Arc<Calendar>,
    /// Simulated history, for candles when Angel One is not configured.
    pub history: SimHistory,
    /// "Now" for simulated candles and market status (`PINNACLE_SIM_NOW`, else real).
    pub clock: pinnacle_common::clock::Clock,
    /// Angel One's history, when the `ANGEL_ONE_*` credentials are set: candles then come
    /// only from it (a broker failure is an error, never a fallback to simulated data).
    pub angel: Option<Arc<AngelHistory>>,
    /// Largest accepted request body, bytes.
    pub max_payload: usize,
    /// Discovery (`$SRV.*`) and per-endpoint statistics; see [`super::discovery`].
    pub micro: micro::Service,
}
