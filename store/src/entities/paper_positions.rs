//! `paper_positions`: one paper account's net position per instrument and product, kept
//! incrementally by every fill. Long `DELIVERY` rows are the account's holdings.

use sea_orm::entity::prelude::*;

/// One position; quantities in units, values and prices in paise.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "paper_positions")]
pub struct Model {
    /// The broker account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// Exchange segment.
    #[sea_orm(primary_key, auto_increment = false)]
    pub exchange: String,
    /// Trading symbol.
    #[sea_orm(primary_key, auto_increment = false)]
    pub symbol: String,
    /// `DELIVERY`, `INTRADAY`, `CARRYFORWARD` or `MARGIN`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub product: String,
    /// Bought minus sold; negative is short.
    pub net_quantity: i64,
    /// Average price of the open position, `open_cost / |net_quantity|` rounded down
    /// (`None` when flat).
    pub average_price: Option<i64>,
    /// What the open units cost, paise (a short's: what they were sold for), at their
    /// average cost: a closing fill takes its share of it, so a position's realised P&L
    /// is exact, not built on the rounded average. 0 when flat.
    pub open_cost: i64,
    /// Units bought.
    pub buy_quantity: i64,
    /// Units sold.
    pub sell_quantity: i64,
    /// Value bought.
    pub buy_value: i64,
    /// Value sold.
    pub sell_value: i64,
    /// Profit or loss booked by closing fills.
    pub realized_pnl: i64,
    /// Short units that open buys will cover (held for them, so two buys never both count
    /// on covering the same short).
    pub buy_held: i64,
    /// Long units that open sells will sell (held for them, so two sells never sell the
    /// same units: a delivery sell never exceeds the holding).
    pub sell_held: i64,
}

/// Relations: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
