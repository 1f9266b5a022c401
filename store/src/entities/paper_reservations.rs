//! `paper_reservations`: what one open or submitted paper order holds back, so that its
//! fills and its end (fill, cancel, rejection) release exactly that.

use sea_orm::entity::prelude::*;

/// One order's reservation.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "paper_reservations")]
pub struct Model {
    /// The order (`orders.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: String,
    /// The broker account whose books hold it.
    pub account_id: String,
    /// The reference price each cash unit is reserved at, paise.
    pub unit_price: i64,
    /// Units that open a position, reserved as `unit_price` each in `paper_funds.reserved`.
    pub cash_units: i64,
    /// Units that close an opposite position, held on it (`buy_held` / `sell_held`); fills
    /// use these first.
    pub held_units: i64,
    /// The quantity the order's last modify re-reserved for (`NULL` until a modify does):
    /// with the two below, the terms the paper broker holds the order on.
    pub modify_quantity: Option<i64>,
    /// The limit price the last modify re-reserved for, paise.
    pub modify_price: Option<i64>,
    /// The trigger price the last modify re-reserved for, paise.
    pub modify_trigger_price: Option<i64>,
}

/// Relations: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
