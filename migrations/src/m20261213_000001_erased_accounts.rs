//! A deleted broker account that orders still refer to keeps its row with every credential
//! erased; `erased_at` says so explicitly, so such a row is told apart from an account that
//! simply has no credentials (and is left out of every choice of account and every listing).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::timestamp_with_time_zone_null;

/// Adds `broker_accounts.erased_at` and marks the rows erased before it existed.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BrokerAccounts {
    Table,
    ErasedAt,
    UpdatedAt,
    DataKeyEnc,
    Generation,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BrokerAccounts::Table)
                    .add_column(timestamp_with_time_zone_null(BrokerAccounts::ErasedAt))
                    .to_owned(),
            )
            .await?;
        // An erase bumped the generation and left no data key. A row written more than
        // once without any credential looks the same; it could not place an order either
        // (every broker needs at least a client code), and writing it again revives it.
        let backfill = Query::update()
            .table(BrokerAccounts::Table)
            .value(
                BrokerAccounts::ErasedAt,
                Expr::col(BrokerAccounts::UpdatedAt),
            )
            .and_where(Expr::col(BrokerAccounts::DataKeyEnc).is_null())
            .and_where(Expr::col(BrokerAccounts::Generation).gt(1))
            .to_owned();
        manager.exec_stmt(backfill).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BrokerAccounts::Table)
                    .drop_column(BrokerAccounts::ErasedAt)
                    .to_owned(),
            )
            .await
    }
}
