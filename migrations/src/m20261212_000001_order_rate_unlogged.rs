//! The per-second order counters (`order_rate`) need no durability: on PostgreSQL the table
//! becomes `UNLOGGED`, so bumping a counter writes no WAL and its commit waits for no disk
//! flush (a crash empties the table, which forgets at most the last second's counts).
//! SQLite has no such table kind; nothing changes there.

use sea_orm_migration::prelude::*;

/// `ALTER TABLE order_rate SET UNLOGGED` on PostgreSQL.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_logged(manager, false).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_logged(manager, true).await
    }
}

async fn set_logged(manager: &SchemaManager<'_>, logged: bool) -> Result<(), DbErr> {
    let kind = if logged { "LOGGED" } else { "UNLOGGED" };
    crate::on_postgres(
        manager,
        &[&format!(r#"ALTER TABLE "order_rate" SET {kind}"#)],
    )
    .await
}
