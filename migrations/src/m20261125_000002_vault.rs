//! The credential vault: envelope-encryption columns, session tokens, `master_keys`, and
//! users' Argon2id password hashes.
//!
//! `broker_accounts` gains the wrapped data key and the id of the master key that wrapped
//! it, three encrypted session tokens and their expiry. `master_keys` records each key
//! id's fingerprint, its encryption count and whether it is retired.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Adds the vault columns and table.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BrokerAccounts {
    Table,
    JwtTokenEnc,
    RefreshTokenEnc,
    FeedTokenEnc,
    SessionExpiresAt,
    DataKeyEnc,
    MasterKeyId,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    PasswordHash,
}

#[derive(DeriveIden)]
enum MasterKeys {
    Table,
    Id,
    Fingerprint,
    Encryptions,
    CreatedAt,
    RetiredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite accepts one column per ALTER TABLE, so add them one at a time.
        let columns = [
            text_null(BrokerAccounts::JwtTokenEnc),
            text_null(BrokerAccounts::RefreshTokenEnc),
            text_null(BrokerAccounts::FeedTokenEnc),
            timestamp_with_time_zone_null(BrokerAccounts::SessionExpiresAt),
            text_null(BrokerAccounts::DataKeyEnc),
            big_integer_null(BrokerAccounts::MasterKeyId),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(BrokerAccounts::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(text_null(Users::PasswordHash))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_broker_accounts_master_key")
                    .table(BrokerAccounts::Table)
                    .col(BrokerAccounts::MasterKeyId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MasterKeys::Table)
                    .col(big_integer(MasterKeys::Id).primary_key())
                    .col(string_len(MasterKeys::Fingerprint, 32))
                    .col(big_integer(MasterKeys::Encryptions).default(0))
                    .col(timestamp_with_time_zone(MasterKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(MasterKeys::RetiredAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MasterKeys::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::PasswordHash)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_broker_accounts_master_key")
                    .table(BrokerAccounts::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            BrokerAccounts::JwtTokenEnc,
            BrokerAccounts::RefreshTokenEnc,
            BrokerAccounts::FeedTokenEnc,
            BrokerAccounts::SessionExpiresAt,
            BrokerAccounts::DataKeyEnc,
            BrokerAccounts::MasterKeyId,
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
