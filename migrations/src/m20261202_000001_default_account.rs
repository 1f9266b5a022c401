//! A user's default broker account: the label an order or portfolio request uses when it
//! names none and the user has several accounts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Adds `users.default_account`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    DefaultAccount,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(string_len_null(Users::DefaultAccount, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::DefaultAccount)
                    .to_owned(),
            )
            .await
    }
}
