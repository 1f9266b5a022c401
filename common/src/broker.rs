//! The `Broker` port: how the order worker talks to a broker, whichever one it is.
//!
//! The paper broker (in `pinnacle-order-worker`) and the Angel One client implement it;
//! order handling never knows which one it holds.

use async_trait::async_trait;
use secrecy::SecretString;

use crate::model::{Funds, Holding, OrderRequest, OrderStatus, Position, Trade};

/// A user's decrypted broker credentials, alive only for the call that needs them.
#[derive(Debug, Default)]
pub struct BrokerCredentials {
    /// The broker account these belong to (Pinnacle's id; not secret).
    pub account_id: String,
    /// SmartAPI key.
    pub api_key: Option<SecretString>,
    /// Client code.
    pub client_code: Option<SecretString>,
    /// PIN or secret.
    pub secret: Option<SecretString>,
    /// TOTP seed.
    pub totp_seed: Option<SecretString>,
    /// Session token.
    pub access_token: Option<SecretString>,
    /// SmartAPI session JWT.
    pub jwt_token: Option<SecretString>,
    /// SmartAPI refresh token.
    pub refresh_token: Option<SecretString>,
    /// SmartAPI feed token.
    pub feed_token: Option<SecretString>,
    /// When the stored session tokens stop being usable.
    pub session_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The static IP registered with the broker (not secret).
    pub static_ip: Option<String>,
    /// A proxy whose egress is `static_ip` (not secret).
    pub egress_proxy: Option<String>,
    /// The exchange-issued algo id orders are tagged with (not secret).
    pub algo_id: Option<String>,
}

/// What the broker made of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerOutcome {
    /// The broker's order id.
    pub broker_order_id: String,
    /// The broker's own unique id of the order, where its answer names one (Angel One's
    /// `uniqueorderid`, which its order details are read by); stored with the order.
    pub broker_unique_id: Option<String>,
    /// Where the order stands at the broker.
    pub status: OrderStatus,
    /// Units filled.
    pub filled_quantity: i64,
    /// Average fill price in paise.
    pub average_price: Option<i64>,
    /// The terms the broker holds the order on, as far as its answer states them (Angel
    /// One's order records do; an acknowledgement or the paper broker's answer does not).
    /// They are the truth after a modify: the order-update stream records them, and so does
    /// reconciliation settling a modify whose answer was lost.
    pub terms: OrderTerms,
    /// The exact value, paise, of the units this answer fills beyond those filled before,
    /// where the broker knows it (the paper broker filling the rest of a partly filled
    /// order at one price). `None`: worked out from the average prices, which is exact
    /// only for a fill from nothing, since an average is rounded.
    pub fill_value: Option<i64>,
    /// Why the broker rejected the order, in its words (Angel One's `text`), where it says.
    pub reason: Option<String>,
}

/// What a stored order is known by at its broker, for [`Broker::find_order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderKeys<'a> {
    /// Pinnacle's id, sent to the broker as the order's tag.
    pub order_id: &'a str,
    /// The broker's order id, once an answer of the broker named it.
    pub broker_order_id: Option<&'a str>,
    /// The broker's own unique id of the order, once an answer of the broker named it.
    pub broker_unique_id: Option<&'a str>,
}

impl<'a> OrderKeys<'a> {
    /// The keys of a stored order.
    pub fn of(order: &'a crate::entities::orders::Model) -> Self {
        Self {
            order_id: &order.id,
            broker_order_id: order.broker_order_id.as_deref(),
            broker_unique_id: order.broker_unique_id.as_deref(),
        }
    }

    /// Whether the broker has acknowledged the order (named an id for it): it has the
    /// order, so not finding it is a failure to read, never "not at the broker".
    pub fn acknowledged(&self) -> bool {
        self.broker_order_id.is_some() || self.broker_unique_id.is_some()
    }
}

/// What of a working order has filled, as Pinnacle recorded it: what a modify or cancel
/// leaves filled, unless the broker's answer says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    /// Units filled.
    pub quantity: i64,
    /// Their average price in paise (`None` when nothing filled).
    pub average_price: Option<i64>,
}

/// What a modify changes: the terms an order stands on at the broker, each `None` where
/// the broker's answer does not state it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderTerms {
    /// Units ordered.
    pub quantity: Option<i64>,
    /// Limit price in paise.
    pub price: Option<i64>,
    /// Trigger price in paise.
    pub trigger_price: Option<i64>,
}

impl OrderTerms {
    /// The terms an order of `order_type` has: a limit price only if it takes one, a
    /// trigger only if it is a stop-loss order (a broker may state a price it made up, as
    /// Angel One does for a market order converted under its price protection).
    pub fn for_type(self, order_type: crate::model::OrderType) -> Self {
        Self {
            quantity: self.quantity,
            price: self.price.filter(|_| order_type.has_limit()),
            trigger_price: self.trigger_price.filter(|_| order_type.is_stop()),
        }
    }
}

/// How a stored rejection of an order the broker never processed ends its message: the
/// client order id is spent, and the order may be sent again under a new one.
pub const NOTHING_PLACED: &str = "nothing was placed; send it again under a new client_order_id";

/// A broker call failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker refused the order; the message says why.
    #[error("broker rejected the order: {0}")]
    Rejected(String),
    /// The broker has no price or listing for the symbol.
    #[error("unknown symbol {exchange}:{symbol}")]
    UnknownSymbol {
        /// Exchange segment.
        exchange: String,
        /// Trading symbol.
        symbol: String,
    },
    /// The credentials are missing something this broker needs.
    #[error("broker credentials incomplete: {0}")]
    Credentials(&'static str),
    /// The account cannot pay for the order.
    #[error("insufficient funds: the order needs {required} paise, {available} are available")]
    InsufficientFunds {
        /// What the order needs, paise.
        required: i64,
        /// What the account has free, paise.
        available: i64,
    },
    /// A sell of more units than the account holds, for a product that may not go short.
    #[error("insufficient holdings: the sell needs {required} units, {available} are free to sell; only INTRADAY sells may go short")]
    InsufficientHoldings {
        /// Units the sell needs.
        required: i64,
        /// Units held and not already held back for other sells.
        available: i64,
    },
    /// A price the instrument cannot trade at (e.g. not a multiple of its tick size);
    /// nothing was sent.
    #[error("{0}")]
    InvalidPrice(String),
    /// The broker could not be reached or answered nonsense. For an order request the
    /// outcome is unknown: the order is looked up, never sent again.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The account or the order does not meet the exchange's rules for API (algo) orders,
    /// e.g. no registered static IP or algo id; nothing was sent.
    #[error("{0}")]
    Regulatory(String),
    /// The broker's rate limit held; nothing was sent or the broker did not process it.
    #[error("{0}")]
    RateLimited(String),
    /// The broker cannot price the symbol yet (no tick since it started); nothing was sent.
    /// Unlike [`Self::UnknownSymbol`] this passes: retry.
    #[error("no price for {exchange}:{symbol} yet")]
    PriceUnavailable {
        /// Exchange segment.
        exchange: String,
        /// Trading symbol.
        symbol: String,
    },
}

/// What [`Broker::admit`] secured for one place (Angel One: its turn in the rate limit),
/// handed to [`Broker::place_order`]. Empty for a broker that needs nothing.
#[derive(Default)]
pub struct Admission(Option<Box<dyn std::any::Any + Send + Sync>>);

impl Admission {
    /// An admission holding `what`, for the broker that made it.
    pub fn holding<T: std::any::Any + Send + Sync>(what: T) -> Self {
        Self(Some(Box::new(what)))
    }

    /// What the admission holds, if it is a `T`.
    pub fn take<T: std::any::Any>(self) -> Option<T> {
        self.0?.downcast().ok().map(|held| *held)
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Admission").field(&self.0.is_some()).finish()
    }
}

/// A broker that can take orders.
#[async_trait]
pub trait Broker: Send + Sync + std::fmt::Debug {
    /// Short name, e.g. `paper`, as stored in `broker_accounts.broker`.
    fn name(&self) -> &'static str;

    /// Checks, before anything is stored or sent, that `credentials`' account may place
    /// `order` at all (regulatory settings, allowed order types, prices on the
    /// instrument's tick). The engine asks it before a place and before a modify (with the
    /// order as modified). The default allows all.
    fn preflight(
        &self,
        _credentials: &BrokerCredentials,
        _order: &OrderRequest,
    ) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Waits up to `timeout` until the broker can serve orders at all (the paper broker:
    /// its first tick); whether it can. A worker joins the queue group only after this.
    /// The default is ready at once.
    async fn wait_ready(&self, _timeout: std::time::Duration) -> bool {
        true
    }

    /// Checks, before any credential is touched or anything stored, that the broker can
    /// take `order` now: for the paper broker, that it has a price for the symbol. A
    /// [`BrokerError::PriceUnavailable`] here is retryable and leaves no trace. The default
    /// allows all.
    async fn ready_for(&self, _order: &OrderRequest) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Secures, with the decrypted `credentials` but before the order is stored, whatever
    /// the place of `order` needs short of sending it (Angel One: a live session and the
    /// order's turn in the rate limit). A refusal here (`RATE_LIMITED`,
    /// `BROKER_UNAVAILABLE`, …) leaves no order behind, so the caller may resend the same
    /// client order id. The default admits at once.
    async fn admit(
        &self,
        _credentials: &BrokerCredentials,
        _order: &OrderRequest,
    ) -> Result<Admission, BrokerError> {
        Ok(Admission::default())
    }

    /// Places `order` (Pinnacle id `order_id`) with `credentials`, using what
    /// [`Broker::admit`] secured for it.
    async fn place_order(
        &self,
        credentials: &BrokerCredentials,
        order_id: &str,
        order: &OrderRequest,
        admission: Admission,
    ) -> Result<BrokerOutcome, BrokerError>;

    /// Replaces the quantity and price of working order `broker_order_id` with those in
    /// `order`; `filled` is what of it had filled. The outcome is the order's state after
    /// the change: what had filled stays filled, and only the rest can fill.
    async fn modify_order(
        &self,
        credentials: &BrokerCredentials,
        broker_order_id: &str,
        order: &OrderRequest,
        filled: Filled,
    ) -> Result<BrokerOutcome, BrokerError>;

    /// Cancels working order `broker_order_id`, which was placed as `order` and of which
    /// `filled` had filled (and stays filled). A broker whose cancel request needs more
    /// than the id (Angel One's variety) takes it from `order` instead of asking the
    /// broker.
    async fn cancel_order(
        &self,
        credentials: &BrokerCredentials,
        broker_order_id: &str,
        order: &OrderRequest,
        filled: Filled,
    ) -> Result<BrokerOutcome, BrokerError>;

    /// The account's cash and margin.
    async fn funds(&self, credentials: &BrokerCredentials) -> Result<Funds, BrokerError>;

    /// The account's net positions.
    async fn positions(
        &self,
        credentials: &BrokerCredentials,
    ) -> Result<Vec<Position>, BrokerError>;

    /// The account's delivery holdings.
    async fn holdings(&self, credentials: &BrokerCredentials) -> Result<Vec<Holding>, BrokerError>;

    /// The account's fills, oldest first.
    async fn trades(&self, credentials: &BrokerCredentials) -> Result<Vec<Trade>, BrokerError>;

    /// Looks an order up, to settle an outcome that was lost or to learn how a refused
    /// change left it: by the broker's unique id where it named one, else by Pinnacle's id
    /// (sent to the broker as the order tag). `None` means the broker has no such order.
    async fn find_order(
        &self,
        credentials: &BrokerCredentials,
        order: OrderKeys<'_>,
    ) -> Result<Option<BrokerOutcome>, BrokerError>;

    /// The price the broker would fill a market order at, in paise, if it knows one; the
    /// pre-trade order-value check uses it.
    async fn reference_price(&self, exchange: &str, symbol: &str) -> Option<i64>;

    /// The last traded price, in paise, asking the broker with `credentials` when it keeps
    /// no prices itself; the intraday square-off prices its closing orders from it. The
    /// default is [`Broker::reference_price`].
    async fn last_price(
        &self,
        _credentials: &BrokerCredentials,
        exchange: &str,
        symbol: &str,
    ) -> Result<Option<i64>, BrokerError> {
        Ok(self.reference_price(exchange, symbol).await)
    }
}
