//! `orders.broker_unique_id`: the broker's own unique id of an order (Angel One's
//! `uniqueorderid`), stored when the broker first names it, so that the order's state is
//! read from its details (`details/{uniqueorderid}`, 10 requests/s) rather than found in
//! the whole order book (1 request/s).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::string_len_null;

/// Adds `orders.broker_unique_id`; orders stored before it have none and are looked up by
/// their tag, as before.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    BrokerUniqueId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(string_len_null(Orders::BrokerUniqueId, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::BrokerUniqueId)
                    .to_owned(),
            )
            .await
    }
}
