//! Live Angel One accounts: the regulatory settings per broker account (the static IP
//! registered for the API key, an optional egress proxy, the exchange-issued algo id), and
//! the login lease that keeps logins to one at a time across workers.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Adds the columns to `broker_accounts`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BrokerAccounts {
    Table,
    StaticIp,
    EgressProxy,
    AlgoId,
    LoginLeaseUntil,
    LoginLeaseOwner,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER.
        for column in [
            string_len_null(BrokerAccounts::StaticIp, 64),
            string_len_null(BrokerAccounts::EgressProxy, 512),
            string_len_null(BrokerAccounts::AlgoId, 64),
            timestamp_with_time_zone_null(BrokerAccounts::LoginLeaseUntil),
            string_len_null(BrokerAccounts::LoginLeaseOwner, 64),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(BrokerAccounts::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            BrokerAccounts::StaticIp,
            BrokerAccounts::EgressProxy,
            BrokerAccounts::AlgoId,
            BrokerAccounts::LoginLeaseUntil,
            BrokerAccounts::LoginLeaseOwner,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(BrokerAccounts::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
