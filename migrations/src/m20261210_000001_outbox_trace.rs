//! The trace context of the request behind each order lifecycle event: the outbox relay
//! sends it as the event's `traceparent` header, so an events consumer can continue the
//! order's trace.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Adds `order_outbox.traceparent` (a W3C `traceparent` value; null when the transition
/// had no trace, such as a sweep's).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OrderOutbox {
    Table,
    Traceparent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OrderOutbox::Table)
                    .add_column(string_len_null(OrderOutbox::Traceparent, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OrderOutbox::Table)
                    .drop_column(OrderOutbox::Traceparent)
                    .to_owned(),
            )
            .await
    }
}
