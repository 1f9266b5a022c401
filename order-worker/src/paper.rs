//! The paper broker: fills orders against the live tick stream, with no real money.
//!
//! It listens to `md.tick.>` and keeps the last tick of every symbol. A market order fills
//! in full at the last traded price; a limit order fills at the last price when that is
//! at or better than its limit, and otherwise rests as `OPEN`. The paper account's client
//! code must be present, as it would be for a real broker, so the credential path is
//! exercised end to end.
//!
//! Readiness: a worker joins the queue group once its paper broker has seen a tick
//! ([`PaperBroker::wait_ready`]). For a symbol it has no tick for yet, [`Broker::ready_for`]
//! asks the publisher's last-value cache (`md.req.last`); a symbol the publisher does not
//! list is `UNKNOWN_SYMBOL`, and one with no price anywhere yet is `PRICE_UNAVAILABLE`
//! (retryable). Both are answered before anything is stored.
//!
//! With a database it keeps the books ([`crate::engine::ledger`]): accepting an order reserves what it
//! needs atomically (cash for buys and intraday shorts, units of the position for sells),
//! refusing it with `INSUFFICIENT_FUNDS` or `INSUFFICIENT_HOLDINGS`; funds, positions,
//! holdings and trades are read from the books' tables. Every account starts with
//! `PINNACLE_WORKER_PAPER_CASH` paise (₹10,00,000 by default).
//!
//! Prices: limit and trigger prices must be multiples of the instrument's tick size, learnt
//! from the publisher's instrument master (`md.req.symbols.lookup`) with the symbol's first
//! price, and [`ledger::DEFAULT_TICK_SIZE`] for a symbol the master does not list; an
//! off-tick price is `INVALID_REQUEST`, refused before anything is stored.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use tracing::Instrument as _;

use async_trait::async_trait;
use futures::StreamExt;
use pinnacle_common::broker::{Broker, BrokerCredentials, BrokerError, BrokerOutcome};
use pinnacle_common::codec::Encoding;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{
    Funds, Holding, Instrument, LastRequest, MarketTick, OrderRequest, OrderStatus, Position,
    Reply, SymbolLookup, Tick, Trade,
};
use sea_orm::DatabaseConnection;

use crate::engine::ledger;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_common::subjects;

/// The paper broker. Cheap to clone; clones share the price cache.
#[derive(Debug, Clone, Default)]
pub struct PaperBroker {
    /// Last tick per `EXCHANGE:SYMBOL`.
    last: Arc<RwLock<HashMap<String, Tick>>>,
    /// Where the books live (see [`crate::engine::ledger`]); without a database the broker fills
    /// without checking funds and reports no portfolio.
    db: Option<DatabaseConnection>,
    /// The books' settings (starting cash per account).
    books: ledger::Books,
    /// Tick size per `EXCHANGE:SYMBOL`, paise, from the instrument master.
    tick_sizes: Arc<RwLock<HashMap<String, i64>>>,
    /// Set once the first tick has been seen.
    ready: Arc<tokio::sync::watch::Sender<bool>>,
    /// For `md.req.last`, once [`PaperBroker::follow_ticks`] has been called.
    client: Arc<OnceLock<async_nats::Client>>,
}

/// How long [`Broker::ready_for`] waits for the publisher's last-value cache.
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
            db: Some(db),
            books: ledger::Books::new(cash),
            ..Self::default()
        }
    }

    fn ledger(&self) -> Result<&DatabaseConnection, BrokerError> {
        self.db
            .as_ref()
            .ok_or_else(|| BrokerError::Unavailable("the paper broker has no ledger".into()))
    }

    /// Reserves what `order` (Pinnacle id `order_id`) needs in the books, or refuses it.
    /// `outcome` is what [`Self::evaluate`] made of it (a fill costs its fill price);
    /// `modify` replaces the order's existing reservation instead of adding one.
    async fn reserve(
        &self,
        credentials: &BrokerCredentials,
        order_id: &str,
        order: &OrderRequest,
        outcome: &BrokerOutcome,
        modify: bool,
    ) -> Result<(), BrokerError> {
        let Some(db) = &self.db else { return Ok(()) };
        let ltp = self
            .last_tick(&order.exchange, &order.symbol)
            .map_or(0, |t| t.ltp);
        let fill = (outcome.status == OrderStatus::Filled)
            .then_some(outcome.average_price)
            .flatten();
        let tick = self.tick_size(&order.exchange, &order.symbol);
        let claim = ledger::Claim {
            account_id: &credentials.account_id,
            order_id,
            exchange: &order.exchange,
            symbol: &order.symbol,
            product: order.product,
            side: order.side,
            units: order.quantity,
            unit_price: ledger::arithmetic::reference_price(order, ltp, fill, tick),
        };
        let reserved = if modify {
            ledger::re_reserve(db, &self.books, &claim)
                .instrument(pinnacle_common::db::span(db, "UPDATE", "paper_funds"))
                .await
        } else {
            ledger::reserve(db, &self.books, &claim)
                .instrument(pinnacle_common::db::span(db, "UPDATE", "paper_funds"))
                .await
        };
        reserved.map_err(|refusal| match refusal {
            ledger::Refusal::Funds {
                required,
                available,
            } => BrokerError::InsufficientFunds {
                required,
                available,
            },
            ledger::Refusal::Holdings {
                required,
                available,
            } => BrokerError::InsufficientHoldings {
                required,
                available,
            },
            ledger::Refusal::Db(error) => BrokerError::Unavailable(error.to_string()),
        })
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
    /// and worker: a symbol the master does not list, or no answer within
    /// [`LAST_VALUE_TIMEOUT`], keeps [`ledger::DEFAULT_TICK_SIZE`] (so an order never waits
    /// on this twice).
    async fn learn_tick_size(&self, exchange: &str, symbol: &str) {
        let known = self
            .tick_sizes
            .read()
            .is_ok_and(|sizes| sizes.contains_key(&key(exchange, symbol)));
        let Some(client) = self.client.get().filter(|_| !known) else {
            return;
        };
        let size = match lookup_tick_size(client, exchange, symbol).await {
            Ok(size) => size,
            Err(reason) => {
                tracing::debug!(%exchange, %symbol, %reason, "tick size unknown; using the default");
                ledger::DEFAULT_TICK_SIZE
            }
        };
        if let Ok(mut sizes) = self.tick_sizes.write() {
            sizes.insert(key(exchange, symbol), size);
        }
    }

    /// Asks the publisher's last-value cache for a symbol's latest tick.
    async fn fetch_last(&self, exchange: &str, symbol: &str) -> Result<Tick, BrokerError> {
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

    /// Records a tick as the latest for its symbol (older sequence numbers are ignored).
    pub fn observe(&self, tick: Tick) {
        self.ready
            .send_if_modified(|seen| !std::mem::replace(seen, true));
        let Ok(mut last) = self.last.write() else {
            return;
        };
        let entry = last.entry(key(&tick.exchange, &tick.symbol));
        match entry {
            std::collections::hash_map::Entry::Occupied(mut seen) => {
                if tick.seq >= seen.get().seq {
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

#[async_trait]
impl Broker for PaperBroker {
    fn name(&self) -> &'static str {
        "paper"
    }

    async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        tokio::time::timeout(timeout, ready.wait_for(|seen| *seen))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }

    fn preflight(
        &self,
        _credentials: &BrokerCredentials,
        order: &OrderRequest,
    ) -> Result<(), BrokerError> {
        let tick = self.tick_size(&order.exchange, &order.symbol);
        ledger::arithmetic::check_ticks(order, tick).map_err(BrokerError::InvalidPrice)
    }

    async fn ready_for(&self, order: &OrderRequest) -> Result<(), BrokerError> {
        if self.last_tick(&order.exchange, &order.symbol).is_none() {
            let tick = self.fetch_last(&order.exchange, &order.symbol).await?;
            self.observe(tick);
        }
        self.learn_tick_size(&order.exchange, &order.symbol).await;
        Ok(())
    }

    async fn place_order(
        &self,
        credentials: &BrokerCredentials,
        order_id: &str,
        order: &OrderRequest,
    ) -> Result<BrokerOutcome, BrokerError> {
        let outcome = self.evaluate(
            credentials,
            format!("{}{order_id}", ledger::PAPER_PREFIX),
            order,
        )?;
        self.reserve(credentials, order_id, order, &outcome, false)
            .await?;
        Ok(outcome)
    }

    async fn modify_order(
        &self,
        credentials: &BrokerCredentials,
        broker_order_id: &str,
        order: &OrderRequest,
    ) -> Result<BrokerOutcome, BrokerError> {
        self.preflight(credentials, order)?;
        let outcome = self.evaluate(credentials, broker_order_id.to_string(), order)?;
        let order_id = broker_order_id
            .strip_prefix(ledger::PAPER_PREFIX)
            .unwrap_or(broker_order_id);
        self.reserve(credentials, order_id, order, &outcome, true)
            .await?;
        Ok(outcome)
    }

    async fn cancel_order(
        &self,
        credentials: &BrokerCredentials,
        broker_order_id: &str,
        _order: &OrderRequest,
    ) -> Result<BrokerOutcome, BrokerError> {
        require_client_code(credentials)?;
        Ok(BrokerOutcome {
            broker_order_id: broker_order_id.to_string(),
            status: OrderStatus::Cancelled,
            filled_quantity: 0,
            average_price: None,
        })
    }

    async fn funds(&self, credentials: &BrokerCredentials) -> Result<Funds, BrokerError> {
        require_client_code(credentials)?;
        self.books
            .funds(self.ledger()?, &credentials.account_id)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    async fn positions(
        &self,
        credentials: &BrokerCredentials,
    ) -> Result<Vec<Position>, BrokerError> {
        require_client_code(credentials)?;
        ledger::positions(self.ledger()?, &credentials.account_id)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    async fn holdings(&self, credentials: &BrokerCredentials) -> Result<Vec<Holding>, BrokerError> {
        require_client_code(credentials)?;
        ledger::holdings(self.ledger()?, &credentials.account_id)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    async fn trades(&self, credentials: &BrokerCredentials) -> Result<Vec<Trade>, BrokerError> {
        require_client_code(credentials)?;
        ledger::trades(self.ledger()?, &credentials.account_id)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    async fn find_order(
        &self,
        credentials: &BrokerCredentials,
        _order_id: &str,
    ) -> Result<Option<BrokerOutcome>, BrokerError> {
        // Paper fills happen inside `place_order` and are recorded only by the worker, so an
        // order whose outcome the worker never recorded was never filled.
        require_client_code(credentials)?;
        Ok(None)
    }

    async fn reference_price(&self, exchange: &str, symbol: &str) -> Option<i64> {
        self.last_tick(exchange, symbol).map(|t| t.ltp)
    }
}

/// The instrument master's tick size for a symbol (`md.req.symbols.lookup`), or why not.
async fn lookup_tick_size(
    client: &async_nats::Client,
    exchange: &str,
    symbol: &str,
) -> Result<i64, String> {
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
        (Some(instrument), _) => Ok(instrument.tick_size.max(1)),
        (None, Some(error)) => Err(error.message),
        (None, None) => Err("an empty reply".into()),
    }
}

fn require_client_code(credentials: &BrokerCredentials) -> Result<(), BrokerError> {
    match credentials.client_code {
        Some(_) => Ok(()),
        None => Err(BrokerError::Credentials("client_code is required")),
    }
}

impl PaperBroker {
    /// Fills `order` at the last price if it is marketable, or leaves it resting.
    fn evaluate(
        &self,
        credentials: &BrokerCredentials,
        broker_order_id: String,
        order: &OrderRequest,
    ) -> Result<BrokerOutcome, BrokerError> {
        require_client_code(credentials)?;
        let tick = self
            .last_tick(&order.exchange, &order.symbol)
            .ok_or_else(|| BrokerError::UnknownSymbol {
                exchange: order.exchange.clone(),
                symbol: order.symbol.clone(),
            })?;
        if order.order_type.has_limit() && order.price.is_none() {
            return Err(BrokerError::Rejected("a limit order needs a price".into()));
        }
        let marketable =
            order
                .order_type
                .fills_at(order.side, order.price, order.trigger_price, tick.ltp);
        Ok(if marketable {
            BrokerOutcome {
                broker_order_id,
                status: OrderStatus::Filled,
                filled_quantity: order.quantity,
                average_price: Some(tick.ltp),
            }
        } else {
            BrokerOutcome {
                broker_order_id,
                status: OrderStatus::Open,
                filled_quantity: 0,
                average_price: None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_common::model::{OrderType, Side};
    use secrecy::SecretString;

    fn tick(seq: u64, ltp: i64) -> Tick {
        Tick {
            exchange: "NSE".into(),
            symbol: "SBIN-EQ".into(),
            seq,
            ts_ms: 0,
            ltp,
            last_qty: 1,
            volume: 1,
            bid: ltp - 5,
            ask: ltp + 5,
        }
    }

    fn order(order_type: OrderType, side: Side, price: Option<i64>) -> OrderRequest {
        OrderRequest {
            client_order_id: "c".into(),
            exchange: "NSE".into(),
            symbol: "SBIN-EQ".into(),
            side,
            order_type,
            quantity: 10,
            price,
            trigger_price: None,
            product: Default::default(),
            account: None,
        }
    }

    fn creds() -> BrokerCredentials {
        BrokerCredentials {
            client_code: Some(SecretString::from("PAPER01")),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_symbol_without_a_price_is_retryable_not_unknown() {
        // No tick and no publisher to ask: the worker cannot price it yet.
        let broker = PaperBroker::new();
        assert!(
            !broker
                .wait_ready(std::time::Duration::from_millis(10))
                .await
        );
        assert!(matches!(
            broker
                .ready_for(&order(OrderType::Market, Side::Buy, None))
                .await,
            Err(BrokerError::PriceUnavailable { .. })
        ));
        broker.observe(tick(1, 82_000));
        assert!(
            broker
                .wait_ready(std::time::Duration::from_millis(10))
                .await
        );
        assert!(broker
            .ready_for(&order(OrderType::Market, Side::Buy, None))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn fills_market_orders_at_the_last_tick() {
        let broker = PaperBroker::new();
        broker.observe(tick(2, 82_000));
        broker.observe(tick(1, 10)); // stale: ignored
        let out = broker
            .place_order(&creds(), "o1", &order(OrderType::Market, Side::Buy, None))
            .await
            .expect("fills");
        assert_eq!(out.status, OrderStatus::Filled);
        assert_eq!(out.average_price, Some(82_000));
        assert_eq!(out.filled_quantity, 10);
    }

    #[tokio::test]
    async fn limit_orders_rest_unless_marketable_and_unknown_symbols_fail() {
        let broker = PaperBroker::new();
        broker.observe(tick(1, 82_000));
        let resting = broker
            .place_order(
                &creds(),
                "o",
                &order(OrderType::Limit, Side::Buy, Some(81_000)),
            )
            .await
            .expect("accepted");
        assert_eq!(resting.status, OrderStatus::Open);
        let filled = broker
            .place_order(
                &creds(),
                "o",
                &order(OrderType::Limit, Side::Sell, Some(81_000)),
            )
            .await
            .expect("accepted");
        assert_eq!(filled.status, OrderStatus::Filled);
        let unknown = OrderRequest {
            symbol: "NOPE".into(),
            ..order(OrderType::Market, Side::Buy, None)
        };
        assert!(matches!(
            broker.place_order(&creds(), "o", &unknown).await,
            Err(BrokerError::UnknownSymbol { .. })
        ));
        assert!(matches!(
            broker
                .place_order(
                    &BrokerCredentials::default(),
                    "o",
                    &order(OrderType::Market, Side::Buy, None)
                )
                .await,
            Err(BrokerError::Credentials(_))
        ));
    }
}
