//! The order engine's guarantees in the schema: an owner and a lease on every in-flight
//! order (see docs/ARCHITECTURE.md, "One owner per in-flight order"), and the transactional
//! outbox that carries every state change to `ORDER_EVENTS` (docs/PROTOCOL.md, "Order
//! events").

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Adds `orders.lease_owner` / `orders.lease_until_ms` and creates `order_outbox`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Status,
    LeaseOwner,
    LeaseUntilMs,
}

#[derive(DeriveIden)]
enum OrderOutbox {
    Table,
    Id,
    EventId,
    OrderId,
    Subject,
    Payload,
    ClaimedBy,
    ClaimedUntilMs,
    CreatedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER.
        for column in [
            string_len_null(Orders::LeaseOwner, 64),
            big_integer_null(Orders::LeaseUntilMs),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Orders::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // The reconciliation sweep looks for in-flight orders by status.
        manager
            .create_index(
                Index::create()
                    .name("ix_orders_status")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderOutbox::Table)
                    .col(big_integer(OrderOutbox::Id).auto_increment().primary_key())
                    .col(string_len(OrderOutbox::EventId, 36))
                    .col(string_len(OrderOutbox::OrderId, 36))
                    .col(string_len(OrderOutbox::Subject, 128))
                    .col(blob(OrderOutbox::Payload))
                    .col(string_len_null(OrderOutbox::ClaimedBy, 64))
                    .col(big_integer_null(OrderOutbox::ClaimedUntilMs))
                    .col(big_integer(OrderOutbox::CreatedAtMs))
                    .to_owned(),
            )
            .await?;
        // The relay publishes only the oldest row of each order: (order_id, id) finds it.
        manager
            .create_index(
                Index::create()
                    .name("ix_order_outbox_order_id")
                    .table(OrderOutbox::Table)
                    .col(OrderOutbox::OrderId)
                    .col(OrderOutbox::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_order_outbox_claimed_by")
                    .table(OrderOutbox::Table)
                    .col(OrderOutbox::ClaimedBy)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OrderOutbox::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_orders_status")
                    .table(Orders::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Orders::LeaseOwner, Orders::LeaseUntilMs] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Orders::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
