//! The paper broker's value and its price cache: the last tick of every symbol (from
//! `md.tick.>`, or the publisher's last-value cache) and every instrument's tick size.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use futures::StreamExt;
use pinnacle_common::broker::BrokerError;
use pinnacle_common::codec::Encoding;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{Instrument, LastRequest, MarketTick, Reply, SymbolLookup, Tick};
use pinnacle_common::writes::Writer;
use sea_orm::DatabaseConnection;

use super::hours::MarketHours;
use crate::engine::ledger;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;

/// The paper broker. Cheap to clone; clones share the price cache.
#[derive(Debug, Clone, Default)]
pub struct PaperBroker {
    /// Last tick per `EXCHANGE:SYMBOL`.
    pub(super) last: Arc<RwLock<HashMap<String, Tick>>>,
    /// Where the books live (see [`crate::engine::ledger`]); without a database the broker fills
    /// without checking funds and reports no portfolio.
    pub(super) db: Option<Writer>,
    /// The books' settings (starting cash per account).
    pub(super) books: ledger::Books,
    /// Tick size per `EXCHANGE:SYMBOL`, paise, from the instrument master.
    pub(super) tick_sizes: Arc<RwLock<HashMap<String, i64>>>,
    /// Set once the first tick has been seen.
    pub(super) ready: Arc<tokio::sync::watch::Sender<bool>>,
    /// For `md.req.last`, once [`PaperBroker::follow_ticks`] has been called.
    pub(super) client: Arc<OnceLock<async_nats::Client>>,
    /// When each exchange is open; an order taken while it is closed is an after-market
    /// order. Always open unless [`PaperBroker::with_hours`] says otherwise.
    pub(super) hours: MarketHours,
}

/// How long [`Broker::ready_for`](pinnacle_common::broker::Broker::ready_for) waits for the publisher's last-value cache.
pub const LAST_VALUE_TIMEOUT: Duration = Duration::from_secs(2);

fn key(exchange: &str, symbol: &str) -> String {
    format!("{exchange}:{symbol}")
}

impl PaperBroker {
    /// A broker with an empty price cache and no books (for unit tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// A broker that keeps its books in `db`, each account starting with `cash` paise.
    pub fn with_ledger(db: DatabaseConnection, cash: i64) -> Self {
        Self {
            db: Some(Writer::new(&db)),
            books: ledger::Books::new(cash),
            ..Self::default()
        }
    }

    /// The same broker, taking orders by `hours`: while an order's exchange is closed it
    /// rests as an after-market order instead of filling.
    pub fn with_hours(self, hours: MarketHours) -> Self {
        Self { hours, ..self }
    }

    /// When the broker's exchanges are open (for the matcher).
    pub fn hours(&self) -> &MarketHours {
        &self.hours
    }

    /// The instrument's tick size, paise ([`ledger::DEFAULT_TICK_SIZE`] until it is known).
    pub fn tick_size(&self, exchange: &str, symbol: &str) -> i64 {
        self.tick_sizes
            .read()
            .ok()
            .and_then(|sizes| sizes.get(&key(exchange, symbol)).copied())
            .unwrap_or(ledger::DEFAULT_TICK_SIZE)
    }

    /// Learns a symbol's tick size from the publisher's instrument master, once per symbol
    /// and worker. A symbol the master does not list keeps [`ledger::DEFAULT_TICK_SIZE`],
    /// for good; a lookup that fails (no answer within [`LAST_VALUE_TIMEOUT`], an outage)
    /// is remembered for nothing and is [`BrokerError::PriceUnavailable`] (retryable; the
    /// broker refuses only an order with a price or trigger to judge, nothing stored), so a
    /// passing outage never judges a price by a wrong tick.
    pub(super) async fn learn_tick_size(
        &self,
        exchange: &str,
        symbol: &str,
    ) -> Result<(), BrokerError> {
        let known = self
            .tick_sizes
            .read()
            .is_ok_and(|sizes| sizes.contains_key(&key(exchange, symbol)));
        let Some(client) = self.client.get().filter(|_| !known) else {
            return Ok(());
        };
        let size = match lookup_tick_size(client, exchange, symbol).await {
            Ok(Some(size)) => size,
            Ok(None) => ledger::DEFAULT_TICK_SIZE,
            Err(reason) => {
                tracing::warn!(%exchange, %symbol, %reason, "tick size lookup failed; refusing for now");
                return Err(BrokerError::PriceUnavailable {
                    exchange: exchange.to_string(),
                    symbol: symbol.to_string(),
                });
            }
        };
        if let Ok(mut sizes) = self.tick_sizes.write() {
            sizes.insert(key(exchange, symbol), size);
        }
        Ok(())
    }

    /// Asks the publisher's last-value cache for a symbol's latest tick.
    pub(super) async fn fetch_last(
        &self,
        exchange: &str,
        symbol: &str,
    ) -> Result<Tick, BrokerError> {
        let unavailable = || BrokerError::PriceUnavailable {
            exchange: exchange.to_string(),
            symbol: symbol.to_string(),
        };
        let client = self.client.get().ok_or_else(unavailable)?;
        let request = LastRequest {
            exchange: exchange.to_string(),
            symbol: symbol.to_string(),
        };
        let payload = Encoding::MsgPack
            .encode(&request)
            .map_err(|_| unavailable())?;
        let message = tokio::time::timeout(
            LAST_VALUE_TIMEOUT,
            client.request(subjects::md::LAST, payload),
        )
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
        let reply: Reply<MarketTick> = Encoding::MsgPack
            .decode(&message.payload)
            .map_err(|_| unavailable())?;
        match (reply.result, reply.error) {
            (Some(tick), _) => Ok(tick.core()),
            (
                None,
                Some(ErrorBody {
                    code: ErrorCode::UnknownSymbol,
                    ..
                }),
            ) => Err(BrokerError::UnknownSymbol {
                exchange: exchange.to_string(),
                symbol: symbol.to_string(),
            }),
            _ => Err(unavailable()),
        }
    }

    /// Records a tick as the latest for its symbol, unless the one held is newer
    /// ([`supersedes`]).
    pub fn observe(&self, tick: Tick) {
        self.ready
            .send_if_modified(|seen| !std::mem::replace(seen, true));
        let Ok(mut last) = self.last.write() else {
            return;
        };
        let entry = last.entry(key(&tick.exchange, &tick.symbol));
        match entry {
            std::collections::hash_map::Entry::Occupied(mut seen) => {
                if supersedes(&tick, seen.get()) {
                    seen.insert(tick);
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(tick);
            }
        }
    }

    /// The last tick seen for a symbol.
    pub fn last_tick(&self, exchange: &str, symbol: &str) -> Option<Tick> {
        self.last.read().ok()?.get(&key(exchange, symbol)).cloned()
    }

    /// Subscribes to every tick and feeds the cache until `shutdown` fires.
    pub async fn follow_ticks(
        &self,
        client: async_nats::Client,
        shutdown: Shutdown,
    ) -> Result<tokio::task::JoinHandle<()>, async_nats::SubscribeError> {
        let mut ticks = client.subscribe(subjects::MD_TICK_ALL).await?;
        let _ = self.client.set(client);
        let broker = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = ticks.next() => message,
                };
                let Some(message) = message else { break };
                match Encoding::MsgPack.decode::<Tick>(&message.payload) {
                    Ok(tick) => pinnacle_common::tick_consumer_span!(&message)
                        .in_scope(|| broker.observe(tick)),
                    Err(error) => tracing::debug!(%error, "ignoring undecodable tick"),
                }
            }
        }))
    }
}

/// Whether `tick` is at least as new as `held`: a `seq` as high or higher, or a later
/// exchange time. Sequence numbers alone order one publisher's ticks (and a restarted
/// publisher's after its predecessor's, docs/PROTOCOL.md "Gaps"), but not two publishers
/// that ran at once: once the newer one stops, the survivor counts below it, and its live
/// ticks must still price orders. A tick from the last-value cache that is older than a live
/// one has neither, and is ignored.
fn supersedes(tick: &Tick, held: &Tick) -> bool {
    tick.seq >= held.seq || tick.ts_ms > held.ts_ms
}

/// The instrument master's tick size for a symbol (`md.req.symbols.lookup`): `None` when
/// the publisher says it does not list the symbol, an error when it could not be asked.
async fn lookup_tick_size(
    client: &async_nats::Client,
    exchange: &str,
    symbol: &str,
) -> Result<Option<i64>, String> {
    let request = SymbolLookup {
        exchange: exchange.to_string(),
        token: None,
        symbol: Some(symbol.to_string()),
    };
    let payload = Encoding::MsgPack
        .encode(&request)
        .map_err(|e| e.to_string())?;
    let message = tokio::time::timeout(
        LAST_VALUE_TIMEOUT,
        client.request(subjects::md::SYMBOLS_LOOKUP, payload),
    )
    .await
    .map_err(|_| "no answer in time".to_string())?
    .map_err(|e| e.to_string())?;
    let reply: Reply<Instrument> = Encoding::MsgPack
        .decode(&message.payload)
        .map_err(|e| e.to_string())?;
    match (reply.result, reply.error) {
        (Some(instrument), _) => Ok(Some(instrument.tick_size.max(1))),
        (None, Some(error)) if error.code == ErrorCode::UnknownSymbol => Ok(None),
        (None, Some(error)) => Err(format!("{}: {}", error.code, error.message)),
        (None, None) => Err("an empty reply".into()),
    }
}
