//! SeaORM migrations for Pinnacle's schema. They run unchanged on SQLite and PostgreSQL.
//!
//! One file per migration; [`Migrator`] lists them in order. Apply them with
//! `pinnacle migrate` or [`Migrator::up`]. A migration's `up` may run past 60 lines on
//! purpose: it is the table definitions of that step, read as one, and a migration is
//! never edited once released.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_initial;
mod m20261125_000002_vault;
mod m20261125_000003_risk;
mod m20261125_000004_angel_one;
mod m20261125_000005_audit_checkpoints;
mod m20261201_000001_order_engine;
mod m20261201_000003_paper_books;
mod m20261202_000001_default_account;
mod m20261210_000001_outbox_trace;
mod m20261212_000001_order_rate_unlogged;
mod m20261213_000001_erased_accounts;
mod m20261214_000001_paper_books_functions;
mod m20261215_000001_outbox_functions;
mod m20261216_000001_broker_unique_id;
mod m20261217_000001_exact_fill_values;
mod m20261218_000001_held_units_follow_fills;
mod m20261218_000002_reservation_terms;

/// Runs `statements` in order on PostgreSQL, and nothing on SQLite: for the steps that
/// only PostgreSQL has (stored functions, `UNLOGGED` tables).
async fn on_postgres(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
    let db = manager.get_connection();
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261125_000002_vault::Migration),
            Box::new(m20261125_000003_risk::Migration),
            Box::new(m20261125_000004_angel_one::Migration),
            Box::new(m20261125_000005_audit_checkpoints::Migration),
            Box::new(m20261201_000001_order_engine::Migration),
            Box::new(m20261201_000003_paper_books::Migration),
            Box::new(m20261202_000001_default_account::Migration),
            Box::new(m20261210_000001_outbox_trace::Migration),
            Box::new(m20261212_000001_order_rate_unlogged::Migration),
            Box::new(m20261213_000001_erased_accounts::Migration),
            Box::new(m20261214_000001_paper_books_functions::Migration),
            Box::new(m20261215_000001_outbox_functions::Migration),
            Box::new(m20261216_000001_broker_unique_id::Migration),
            Box::new(m20261217_000001_exact_fill_values::Migration),
            Box::new(m20261218_000001_held_units_follow_fills::Migration),
            Box::new(m20261218_000002_reservation_terms::Migration),
        ]
    }
}
