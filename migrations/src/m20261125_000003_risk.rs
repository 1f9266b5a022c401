//! Pre-trade risk limits and kill switches, per user and platform-wide, and the per-second
//! order counters behind the rate limit; the trigger price of stop-loss orders.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `risk_limits` and `order_rate`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RiskLimits {
    Table,
    Scope,
    MaxQuantity,
    MaxOrderValue,
    AllowedExchanges,
    AllowedSymbols,
    MaxOrdersPerSecond,
    KillSwitch,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderRate {
    Table,
    UserId,
    Second,
    Count,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    TriggerPrice,
    Product,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Stop-loss orders carry a trigger price; every order a product (intraday orders are
        // squared off). SQLite adds one column per ALTER.
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(big_integer_null(Orders::TriggerPrice))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(string_len(Orders::Product, 16).default("DELIVERY"))
                    .to_owned(),
            )
            .await?;
        // One counter per user per second, bumped atomically by every place/modify/cancel,
        // so the per-second cap holds across workers and under concurrency.
        manager
            .create_table(
                Table::create()
                    .table(OrderRate::Table)
                    .col(string_len(OrderRate::UserId, 36))
                    .col(big_integer(OrderRate::Second))
                    .col(integer(OrderRate::Count))
                    .primary_key(
                        Index::create()
                            .col(OrderRate::UserId)
                            .col(OrderRate::Second),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RiskLimits::Table)
                    // `global`, or a user id.
                    .col(string_len(RiskLimits::Scope, 36).primary_key())
                    .col(big_integer_null(RiskLimits::MaxQuantity))
                    .col(big_integer_null(RiskLimits::MaxOrderValue))
                    .col(text_null(RiskLimits::AllowedExchanges))
                    .col(text_null(RiskLimits::AllowedSymbols))
                    .col(integer_null(RiskLimits::MaxOrdersPerSecond))
                    .col(boolean(RiskLimits::KillSwitch).default(false))
                    .col(timestamp_with_time_zone(RiskLimits::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Orders touched per user over the last second are counted for the rate limit.
        manager
            .create_index(
                Index::create()
                    .name("idx_orders_user_updated")
                    .table(Alias::new("orders"))
                    .col(Alias::new("user_id"))
                    .col(Alias::new("updated_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::TriggerPrice)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::Product)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(OrderRate::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_orders_user_updated")
                    .table(Alias::new("orders"))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(RiskLimits::Table).to_owned())
            .await
    }
}
