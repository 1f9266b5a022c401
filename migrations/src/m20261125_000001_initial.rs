//! The initial schema: users, api_tokens, broker_accounts (encrypted credentials) and orders.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates the four core tables.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    IsAdmin,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    UserId,
    SecretHash,
    Scopes,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum BrokerAccounts {
    Table,
    Id,
    UserId,
    Label,
    Broker,
    ApiKeyEnc,
    ClientCodeEnc,
    SecretEnc,
    TotpSeedEnc,
    AccessTokenEnc,
    Generation,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    UserId,
    BrokerAccountId,
    ClientOrderId,
    Exchange,
    Symbol,
    Side,
    OrderType,
    Quantity,
    Price,
    Status,
    FilledQuantity,
    AveragePrice,
    BrokerOrderId,
    RejectCode,
    RejectReason,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(string_len(Users::Id, 36).primary_key())
                    .col(string_len_uniq(Users::Name, 64))
                    .col(boolean(Users::IsAdmin).default(false))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(string_len(ApiTokens::Id, 32).primary_key())
                    .col(string_len(ApiTokens::UserId, 36))
                    .col(string_len(ApiTokens::SecretHash, 64))
                    .col(string_len(ApiTokens::Scopes, 64))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiTokens::Table, ApiTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_tokens_user")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BrokerAccounts::Table)
                    .col(string_len(BrokerAccounts::Id, 36).primary_key())
                    .col(string_len(BrokerAccounts::UserId, 36))
                    .col(string_len(BrokerAccounts::Label, 64))
                    .col(string_len(BrokerAccounts::Broker, 16))
                    .col(text_null(BrokerAccounts::ApiKeyEnc))
                    .col(text_null(BrokerAccounts::ClientCodeEnc))
                    .col(text_null(BrokerAccounts::SecretEnc))
                    .col(text_null(BrokerAccounts::TotpSeedEnc))
                    .col(text_null(BrokerAccounts::AccessTokenEnc))
                    .col(big_integer(BrokerAccounts::Generation).default(0))
                    .col(timestamp_with_time_zone(BrokerAccounts::CreatedAt))
                    .col(timestamp_with_time_zone(BrokerAccounts::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(BrokerAccounts::Table, BrokerAccounts::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_broker_accounts_user_label")
                    .table(BrokerAccounts::Table)
                    .col(BrokerAccounts::UserId)
                    .col(BrokerAccounts::Label)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(string_len(Orders::Id, 36).primary_key())
                    .col(string_len(Orders::UserId, 36))
                    .col(string_len(Orders::BrokerAccountId, 36))
                    .col(string_len(Orders::ClientOrderId, 64))
                    .col(string_len(Orders::Exchange, 16))
                    .col(string_len(Orders::Symbol, 64))
                    .col(string_len(Orders::Side, 8))
                    .col(string_len(Orders::OrderType, 16))
                    .col(big_integer(Orders::Quantity))
                    .col(big_integer_null(Orders::Price))
                    .col(string_len(Orders::Status, 24))
                    .col(big_integer(Orders::FilledQuantity).default(0))
                    .col(big_integer_null(Orders::AveragePrice))
                    .col(string_len_null(Orders::BrokerOrderId, 64))
                    .col(string_len_null(Orders::RejectCode, 32))
                    .col(text_null(Orders::RejectReason))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Orders::Table, Orders::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Orders::Table, Orders::BrokerAccountId)
                            .to(BrokerAccounts::Table, BrokerAccounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Idempotency lives here: one order per (user, client order id), enforced by the
        // database, so concurrent retries on different workers cannot both insert.
        manager
            .create_index(
                Index::create()
                    .name("uq_orders_user_client_order_id")
                    .table(Orders::Table)
                    .col(Orders::UserId)
                    .col(Orders::ClientOrderId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Orders::Table.into_iden(),
            BrokerAccounts::Table.into_iden(),
            ApiTokens::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
