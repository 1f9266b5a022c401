//! `paper_funds`: one paper account's cash, kept incrementally by every fill and every
//! reservation (see `order-worker/src/engine/ledger/`).

use sea_orm::entity::prelude::*;

/// One account's funds, all in paise.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "paper_funds")]
pub struct Model {
    /// The broker account (`broker_accounts.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// Starting cash (`PINNACLE_WORKER_PAPER_CASH` when the row was created).
    pub cash: i64,
    /// Net cash spent by fills: buys minus sells.
    pub used: i64,
    /// Held back for open and submitted orders (their `paper_reservations`).
    pub reserved: i64,
    /// Value of the open intraday short positions at their average price; twice this is
    /// held back (the sale proceeds plus a 100 % margin) until the shorts are covered.
    pub short_value: i64,
}

/// Relations: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
