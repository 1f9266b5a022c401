//! The Angel One broker behind the `Broker` trait.

use async_trait::async_trait;
use pinnacle_common::broker::{
    Admission, Broker, BrokerCredentials, BrokerError, BrokerOutcome, Filled, OrderKeys,
    NOTHING_PLACED,
};
use pinnacle_common::model::{
    Funds, Holding, OrderRequest, OrderStatus, OrderType, Position, Trade,
};
use pinnacle_smartapi::limits::Slot;
use pinnacle_smartapi::tag;
use pinnacle_smartapi::types::OrderRecord;
use pinnacle_smartapi::SmartApiErrorKind;

use super::client::{AngelOneBroker, NAME};
use super::creds::{ambiguous, broker_error, check_compliance, login_secrets};
use super::map;

#[async_trait]
impl Broker for AngelOneBroker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn preflight(
        &self,
        creds: &BrokerCredentials,
        order: &OrderRequest,
    ) -> Result<(), BrokerError> {
        check_compliance(creds)?;
        if matches!(
            order.order_type,
            OrderType::Market | OrderType::StoplossMarket
        ) {
            return Err(BrokerError::Regulatory(
                "MARKET and STOPLOSS_MARKET orders are barred for API (algo) orders under NSE's \
                 retail algo framework; send LIMIT or STOPLOSS_LIMIT"
                    .into(),
            ));
        }
        login_secrets(creds).map_err(|e| BrokerError::Rejected(e.to_string()))?;
        Ok(())
    }

    /// Resolves the symbol's token before anything is stored: a lookup that fails now is
    /// a passing outage (`BROKER_UNAVAILABLE`, retryable, nothing stored) and an unknown
    /// symbol a verdict, where inside [`Self::place_order`] either would be a stored
    /// rejection. The token is then cached for the place itself.
    async fn ready_for(&self, order: &OrderRequest) -> Result<(), BrokerError> {
        self.symbols
            .resolve(&order.exchange, &order.symbol)
            .await
            .map(|_| ())
    }

    /// A live session (logging in if need be) and the order's turn in the rate limit,
    /// before the order is stored: a login that fails, a session store that cannot be
    /// reached or a rate limit that will not open within its wait is answered now, with
    /// nothing stored, instead of becoming a stored rejection.
    async fn admit(
        &self,
        creds: &BrokerCredentials,
        _order: &OrderRequest,
    ) -> Result<Admission, BrokerError> {
        let client = self.client_for(creds)?;
        let secrets = login_secrets(creds).map_err(broker_error)?;
        self.session(creds, &client, &secrets)
            .await
            .map_err(broker_error)?;
        let slot = client.reserve_place().await.map_err(broker_error)?;
        Ok(Admission::holding(slot))
    }

    async fn place_order(
        &self,
        creds: &BrokerCredentials,
        order_id: &str,
        order: &OrderRequest,
        admission: Admission,
    ) -> Result<BrokerOutcome, BrokerError> {
        self.preflight(creds, order)?;
        let token = self.token(&order.exchange, &order.symbol).await?;
        let params = map::order_params(order, &token, Some(tag::order_tag(order_id)));
        let stream = self.live.connection(&creds.account_id);
        // The first send goes in the slot `admit` reserved; a send after a renewed session
        // or the broker's 403 queues for a turn of its own, as long as a stored order may
        // (`RateLimiter::stored_wait`): the order is stored and this handler holds its
        // lease, so a refusal here would reject an order that was never sent.
        let slot = std::sync::Mutex::new(admission.take::<Slot>());
        let placed = self
            .with_session(creds, |client, jwt| {
                let params = params.clone();
                let slot = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                async move {
                    let slot = match slot {
                        Some(slot) => slot,
                        None => client.reserve_stored_place().await?,
                    };
                    client.place_order(&jwt, &params, Some(slot)).await
                }
            })
            .await;
        match placed {
            // The reply carries the broker's order id, all a later modify or cancel needs
            // besides the stored order (SPEC §3.1), but nothing about the order's state.
            // With the account's order-update stream live from before the request until
            // after the reply, that is all: the order is OPEN and its fill or rejection
            // arrives on the stream. Otherwise (the session's first order, a socket that is
            // down or reconnected meanwhile) the state may never be reported, so it is read
            // once.
            Ok(ack) if !ack.orderid.is_empty() => {
                let streamed =
                    stream.is_some() && stream == self.live.connection(&creds.account_id);
                if streamed {
                    Ok(map::acknowledged(&ack, OrderStatus::Open))
                } else {
                    self.placed_state(creds, &ack).await
                }
            }
            Ok(_) => {
                tracing::warn!(
                    "placeOrder succeeded without an order id; looking the order up by its tag"
                );
                match self.find_by_tag(creds, order_id).await {
                    Ok(Some(record)) => Ok(map::outcome(&record)),
                    Ok(None) | Err(_) => Err(BrokerError::Unavailable(
                        "placeOrder succeeded without an order id".into(),
                    )),
                }
            }
            Err(error) if ambiguous(&error) => {
                tracing::warn!(%error, "placeOrder outcome unknown; looking the order up by its tag");
                match self.find_by_tag(creds, order_id).await {
                    Ok(Some(record)) => Ok(map::outcome(&record)),
                    Ok(None) | Err(_) => Err(BrokerError::Unavailable(error.to_string())),
                }
            }
            // No session the broker took (every send refused for it, renewals included):
            // the broker processed none of them.
            Err(error) if error.kind() == SmartApiErrorKind::Session => {
                Err(BrokerError::Rejected(format!(
                    "{error} (no session the broker accepted could be had for it: \
                     {NOTHING_PLACED})"
                )))
            }
            Err(error) => Err(broker_error(error)),
        }
    }

    async fn modify_order(
        &self,
        creds: &BrokerCredentials,
        broker_order_id: &str,
        order: &OrderRequest,
        _filled: Filled,
    ) -> Result<BrokerOutcome, BrokerError> {
        // The order's details after the change say what has filled.
        check_compliance(creds)?;
        let token = self.token(&order.exchange, &order.symbol).await?;
        // The whole order again, with its variety from the stored order type (the one place
        // sent) and the new quantity and prices.
        let mut params = map::order_params(order, &token, None);
        params.orderid = Some(broker_order_id.to_string());
        let ack = self
            .with_session(creds, |client, jwt| {
                let params = params.clone();
                async move { client.modify_order(&jwt, &params).await }
            })
            .await
            .map_err(broker_error)?;
        self.after_change(creds, broker_order_id, &ack).await
    }

    async fn cancel_order(
        &self,
        creds: &BrokerCredentials,
        broker_order_id: &str,
        order: &OrderRequest,
        _filled: Filled,
    ) -> Result<BrokerOutcome, BrokerError> {
        check_compliance(creds)?;
        // The variety place sent, derived from the stored order type: no order-book read.
        let variety = map::variety(order.order_type);
        let ack = self
            .with_session(creds, |client, jwt| async move {
                client.cancel_order(&jwt, variety, broker_order_id).await
            })
            .await
            .map_err(broker_error)?;
        self.after_change(creds, broker_order_id, &ack).await
    }

    async fn funds(&self, creds: &BrokerCredentials) -> Result<Funds, BrokerError> {
        let rms = self
            .with_session(creds, |client, jwt| async move { client.rms(&jwt).await })
            .await
            .map_err(broker_error)?;
        Ok(map::funds(&rms))
    }

    async fn positions(&self, creds: &BrokerCredentials) -> Result<Vec<Position>, BrokerError> {
        let records = self
            .with_session(
                creds,
                |client, jwt| async move { client.positions(&jwt).await },
            )
            .await
            .map_err(broker_error)?;
        Ok(records.iter().map(map::position).collect())
    }

    async fn holdings(&self, creds: &BrokerCredentials) -> Result<Vec<Holding>, BrokerError> {
        let records = self
            .with_session(
                creds,
                |client, jwt| async move { client.holdings(&jwt).await },
            )
            .await
            .map_err(broker_error)?;
        Ok(records.iter().map(map::holding).collect())
    }

    async fn trades(&self, creds: &BrokerCredentials) -> Result<Vec<Trade>, BrokerError> {
        let records = self
            .with_session(
                creds,
                |client, jwt| async move { client.trade_book(&jwt).await },
            )
            .await
            .map_err(broker_error)?;
        let mut trades: Vec<Trade> = records.iter().map(map::trade).collect();
        trades.sort_by_key(|t| t.ts_ms);
        Ok(trades)
    }

    /// By the order's details where its `uniqueorderid` is stored (10 requests/s), else
    /// (the place's answer was lost, or the details cannot be read or are of another order)
    /// by its tag in the order book (1 request/s). An order the broker acknowledged is
    /// never "not found": missing from both, it is unreadable for now.
    async fn find_order(
        &self,
        creds: &BrokerCredentials,
        order: OrderKeys<'_>,
    ) -> Result<Option<BrokerOutcome>, BrokerError> {
        if let Some(unique_id) = order.broker_unique_id {
            match self.details_by_unique_id(creds, unique_id).await {
                Ok(record) if is_of(&record, order) => return Ok(Some(map::outcome(&record))),
                Ok(record) => tracing::warn!(
                    order_id = %order.order_id,
                    details_of = %record.orderid,
                    "the details read by the order's unique id are not of this order; \
                     looking it up in the order book"
                ),
                Err(error) => tracing::info!(
                    order_id = %order.order_id,
                    %error,
                    "the order's details could not be read; looking it up in the order book"
                ),
            }
        }
        let found = self
            .find_by_tag(creds, order.order_id)
            .await
            .map_err(broker_error)?;
        match found {
            Some(record) => Ok(Some(map::outcome(&record))),
            None if order.acknowledged() => Err(BrokerError::Unavailable(
                "the broker acknowledged the order, but neither its details nor its order \
                 book has it now"
                    .into(),
            )),
            None => Ok(None),
        }
    }

    async fn reference_price(&self, _exchange: &str, _symbol: &str) -> Option<i64> {
        // MARKET orders are refused for this broker, so no reference price is needed.
        None
    }

    async fn last_price(
        &self,
        creds: &BrokerCredentials,
        exchange: &str,
        symbol: &str,
    ) -> Result<Option<i64>, BrokerError> {
        // getLtpData (10 requests/s), with the account's session.
        let token = self.token(exchange, symbol).await?;
        let ltp = self
            .with_session(creds, |client, jwt| {
                let token = token.clone();
                async move { client.ltp(&jwt, exchange, symbol, &token).await }
            })
            .await
            .map_err(broker_error)?;
        Ok((ltp.ltp > 0).then_some(ltp.ltp))
    }
}

/// Whether `record` is the order `keys` name: it carries the order's tag and a broker
/// order id (the one stored, where one is).
fn is_of(record: &OrderRecord, keys: OrderKeys<'_>) -> bool {
    record.ordertag == tag::order_tag(keys.order_id)
        && !record.orderid.is_empty()
        && keys
            .broker_order_id
            .is_none_or(|stored| stored == record.orderid)
}
