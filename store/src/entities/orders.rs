//! `orders`: every order a user placed, unique per (user, client order id).

use sea_orm::entity::prelude::*;

/// An order row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    /// UUID.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// The account it was placed through.
    pub broker_account_id: String,
    /// Caller-chosen id; the database keeps it unique per user, which makes retries safe.
    pub client_order_id: String,
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// `BUY` or `SELL`.
    pub side: String,
    /// `MARKET`, `LIMIT`, `STOPLOSS_LIMIT` or `STOPLOSS_MARKET`.
    pub order_type: String,
    /// Units.
    pub quantity: i64,
    /// Limit price in paise.
    pub price: Option<i64>,
    /// Stop-loss trigger price in paise.
    pub trigger_price: Option<i64>,
    /// `DELIVERY`, `INTRADAY`, `CARRYFORWARD` or `MARGIN`.
    pub product: String,
    /// An `OrderStatus` (`pinnacle_protocol::model`), e.g. `SUBMITTED`, `OPEN`, `FILLED`.
    pub status: String,
    /// Units filled.
    pub filled_quantity: i64,
    /// Average fill price in paise: `filled_value / filled_quantity`, rounded down, where
    /// the value is known; otherwise as the broker reported it.
    pub average_price: Option<i64>,
    /// The exact value, paise, of the units filled, where Pinnacle knows each part's value
    /// (the paper broker's fills); `None` where the broker reports only an average price.
    pub filled_value: Option<i64>,
    /// The broker's order id.
    pub broker_order_id: Option<String>,
    /// The broker's own unique id of the order, where it has one (Angel One's
    /// `uniqueorderid`): what the order's details are read by.
    pub broker_unique_id: Option<String>,
    /// The stable error code of a rejection, replayed to retries.
    pub reject_code: Option<String>,
    /// Why it was rejected.
    pub reject_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTimeUtc,
    /// When it last changed.
    pub updated_at: DateTimeUtc,
    /// The worker instance (or reconciler) that owns the order while it is in flight
    /// (`SUBMITTED`, `PENDING_MODIFY`, `PENDING_CANCEL`); `NULL` otherwise.
    pub lease_owner: Option<String>,
    /// Until when the owner's lease holds, ms since the epoch. The owner never calls the
    /// broker for this order after it; nobody else takes the order before it has passed
    /// by the grace period (see docs/ARCHITECTURE.md).
    pub lease_until_ms: Option<i64>,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
