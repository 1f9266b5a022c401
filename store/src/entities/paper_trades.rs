//! `paper_trades`: every paper fill, written with it.

use sea_orm::entity::prelude::*;

/// One fill.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "paper_trades")]
pub struct Model {
    /// Insertion order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The broker account.
    pub account_id: String,
    /// The order that filled.
    pub order_id: String,
    /// Exchange segment.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// The product.
    pub product: String,
    /// `BUY` or `SELL`.
    pub side: String,
    /// Units filled.
    pub quantity: i64,
    /// Fill price, paise.
    pub price: i64,
    /// When, ms since the epoch.
    pub ts_ms: i64,
}

/// Relations: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
