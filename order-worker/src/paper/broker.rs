//! The paper broker behind the `Broker` trait: fills against the last tick, reserves in
//! the books, reads the portfolio from them.

use std::time::Duration;
use tracing::Instrument as _;

use async_trait::async_trait;
use pinnacle_common::broker::{
    Admission, Broker, BrokerCredentials, BrokerError, BrokerOutcome, Filled, OrderKeys, OrderTerms,
};
use pinnacle_common::model::{Funds, Holding, OrderRequest, OrderStatus, Position, Trade};
use pinnacle_common::writes::Writer;
use sea_orm::DatabaseConnection;

use crate::engine::ledger;

use super::prices::PaperBroker;

impl PaperBroker {
    fn ledger(&self) -> Result<&DatabaseConnection, BrokerError> {
        self.db
            .as_ref()
            .map(Writer::db)
            .ok_or_else(|| BrokerError::Unavailable("the paper broker has no ledger".into()))
    }

    /// Reserves what `order` (Pinnacle id `order_id`) needs in the books, or refuses it.
    /// `fill` is the price [`Self::evaluate`] filled it at, if it did (a fill costs its
    /// fill price); `modify` replaces the order's existing reservation instead of adding
    /// one.
    async fn reserve(
        &self,
        credentials: &BrokerCredentials,
        order_id: &str,
        order: &OrderRequest,
        fill: Option<i64>,
        modify: bool,
    ) -> Result<(), BrokerError> {
        let Some(db) = &self.db else { return Ok(()) };
        let ltp = self
            .last_tick(&order.exchange, &order.symbol)
            .map_or(0, |t| t.ltp);
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
            let terms = OrderTerms {
                quantity: Some(order.quantity),
                price: order.price,
                trigger_price: order.trigger_price,
            };
            ledger::re_reserve(db, &self.books, &claim, terms)
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
            // Only a placer that lost its lease meets it: its answer is dropped.
            settled @ ledger::Refusal::Settled => BrokerError::Unavailable(settled.to_string()),
            ledger::Refusal::Db(error) => BrokerError::Unavailable(error.to_string()),
        })
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

    /// A paper account needs a client code, as a real one does (refused here, before the
    /// order is stored), and prices on the instrument's tick.
    fn preflight(
        &self,
        credentials: &BrokerCredentials,
        order: &OrderRequest,
    ) -> Result<(), BrokerError> {
        require_client_code(credentials)?;
        let tick = self.tick_size(&order.exchange, &order.symbol);
        ledger::arithmetic::check_ticks(order, tick).map_err(BrokerError::InvalidPrice)
    }

    async fn ready_for(&self, order: &OrderRequest) -> Result<(), BrokerError> {
        if self.last_tick(&order.exchange, &order.symbol).is_none() {
            let tick = self.fetch_last(&order.exchange, &order.symbol).await?;
            self.observe(tick);
        }
        // The tick size only judges a price or trigger: an order without one neither asks
        // the instrument master nor waits for it (the publisher may be down while ticks
        // are known).
        if order.price.is_some() || order.trigger_price.is_some() {
            self.learn_tick_size(&order.exchange, &order.symbol).await?;
        }
        Ok(())
    }

    async fn place_order(
        &self,
        credentials: &BrokerCredentials,
        order_id: &str,
        order: &OrderRequest,
        _admission: Admission,
    ) -> Result<BrokerOutcome, BrokerError> {
        let (outcome, fill) = self.evaluate(
            credentials,
            format!("{}{order_id}", ledger::PAPER_PREFIX),
            order,
            Filled::default(),
        )?;
        self.reserve(credentials, order_id, order, fill, false)
            .await?;
        Ok(outcome)
    }

    async fn modify_order(
        &self,
        credentials: &BrokerCredentials,
        broker_order_id: &str,
        order: &OrderRequest,
        filled: Filled,
    ) -> Result<BrokerOutcome, BrokerError> {
        let (outcome, fill) =
            self.evaluate(credentials, broker_order_id.to_string(), order, filled)?;
        let order_id = broker_order_id
            .strip_prefix(ledger::PAPER_PREFIX)
            .unwrap_or(broker_order_id);
        self.reserve(credentials, order_id, order, fill, true)
            .await?;
        Ok(outcome)
    }

    async fn cancel_order(
        &self,
        credentials: &BrokerCredentials,
        broker_order_id: &str,
        _order: &OrderRequest,
        filled: Filled,
    ) -> Result<BrokerOutcome, BrokerError> {
        require_client_code(credentials)?;
        // What filled before the cancel stays filled.
        Ok(BrokerOutcome {
            broker_order_id: broker_order_id.to_string(),
            broker_unique_id: None,
            status: OrderStatus::Cancelled,
            filled_quantity: filled.quantity,
            average_price: filled.average_price,
            terms: OrderTerms::default(),
            fill_value: None,
            reason: None,
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

    /// What the paper broker holds of an order whose outcome was lost. Paper fills happen
    /// inside `place_order` and are recorded only by the worker, so a place whose outcome
    /// the worker never recorded was never filled: `None`, and reconciliation ends it
    /// `NOT_AT_BROKER` (which releases what it reserved). A modify is different: its
    /// re-reservation records the new terms on the books ([`ledger::modify_taken`]), and
    /// an order still `PENDING_MODIFY` on other terms stands on those at the broker.
    async fn find_order(
        &self,
        credentials: &BrokerCredentials,
        order: OrderKeys<'_>,
    ) -> Result<Option<BrokerOutcome>, BrokerError> {
        require_client_code(credentials)?;
        let Some(db) = &self.db else { return Ok(None) };
        let taken = ledger::modify_taken(db.db(), order.order_id)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        Ok(taken.map(|(order, terms)| BrokerOutcome {
            broker_order_id: order.broker_order_id.clone().unwrap_or_default(),
            broker_unique_id: None,
            status: if order.filled_quantity > 0 {
                OrderStatus::PartiallyFilled
            } else {
                OrderStatus::Open
            },
            filled_quantity: order.filled_quantity,
            average_price: order.average_price,
            terms,
            fill_value: None,
            reason: None,
        }))
    }

    async fn reference_price(&self, exchange: &str, symbol: &str) -> Option<i64> {
        self.last_tick(exchange, symbol).map(|t| t.ltp)
    }
}

fn require_client_code(credentials: &BrokerCredentials) -> Result<(), BrokerError> {
    match credentials.client_code {
        Some(_) => Ok(()),
        None => Err(BrokerError::Credentials("client_code is required")),
    }
}

impl PaperBroker {
    /// Fills the rest of `order` at the last price if it is marketable and its exchange
    /// is open, or leaves it resting; `filled` is what of it had filled (nothing for a new
    /// order), which stays filled at its own price. Returns the outcome and, for a fill,
    /// its price.
    fn evaluate(
        &self,
        credentials: &BrokerCredentials,
        broker_order_id: String,
        order: &OrderRequest,
        filled: Filled,
    ) -> Result<(BrokerOutcome, Option<i64>), BrokerError> {
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
        // While the exchange is closed the order is an after-market order: it rests, and
        // the matcher fills it at the next session's first tick.
        let marketable = self.hours.is_open(&order.exchange)
            && order
                .order_type
                .fills_at(order.side, order.price, order.trigger_price, tick.ltp);
        let rest = order.quantity - filled.quantity;
        Ok(if marketable && rest > 0 {
            let value = tick.ltp.saturating_mul(rest);
            let total = i128::from(filled.average_price.unwrap_or(0)) * i128::from(filled.quantity)
                + i128::from(value);
            let average = i64::try_from(total / i128::from(order.quantity)).unwrap_or(i64::MAX);
            let outcome = BrokerOutcome {
                broker_order_id,
                broker_unique_id: None,
                status: OrderStatus::Filled,
                filled_quantity: order.quantity,
                average_price: Some(average),
                terms: OrderTerms::default(),
                // The rest's own value: the average above is rounded down.
                fill_value: Some(value),
                reason: None,
            };
            (outcome, Some(tick.ltp))
        } else {
            let status = if filled.quantity > 0 {
                OrderStatus::PartiallyFilled
            } else {
                OrderStatus::Open
            };
            let outcome = BrokerOutcome {
                broker_order_id,
                broker_unique_id: None,
                status,
                filled_quantity: filled.quantity,
                average_price: filled.average_price,
                terms: OrderTerms::default(),
                fill_value: None,
                reason: None,
            };
            (outcome, None)
        })
    }
}
