//! SeaORM entities for the tables created by `pinnacle-migrations`.
//!
//! Ids are UUID strings, so the same schema reads identically on SQLite and PostgreSQL.

pub mod api_tokens;
pub mod audit_checkpoints;
pub mod broker_accounts;
pub mod master_keys;
pub mod order_outbox;
pub mod orders;
pub mod paper_funds;
pub mod paper_positions;
pub mod paper_reservations;
pub mod paper_trades;
pub mod risk_limits;
pub mod users;
