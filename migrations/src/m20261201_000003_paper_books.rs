//! The paper broker's books, kept incrementally (see docs/ARCHITECTURE.md, "The paper
//! broker's books"): one funds row per account, one position row per instrument and
//! product, one reservation per open paper order, and the fills. Every fill changes them in
//! the same transaction as the order row and its outbox event, so reading them never scans
//! an account's order history.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `paper_funds`, `paper_positions`, `paper_reservations` and `paper_trades`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PaperFunds {
    Table,
    AccountId,
    Cash,
    Used,
    Reserved,
    ShortValue,
}

#[derive(DeriveIden)]
enum PaperPositions {
    Table,
    AccountId,
    Exchange,
    Symbol,
    Product,
    NetQuantity,
    AveragePrice,
    BuyQuantity,
    SellQuantity,
    BuyValue,
    SellValue,
    RealizedPnl,
    BuyHeld,
    SellHeld,
}

#[derive(DeriveIden)]
enum PaperReservations {
    Table,
    OrderId,
    AccountId,
    UnitPrice,
    CashUnits,
    HeldUnits,
}

#[derive(DeriveIden)]
enum PaperTrades {
    Table,
    Id,
    AccountId,
    OrderId,
    Exchange,
    Symbol,
    Product,
    Side,
    Quantity,
    Price,
    TsMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PaperFunds::Table)
                    .col(string_len(PaperFunds::AccountId, 36).primary_key())
                    .col(big_integer(PaperFunds::Cash))
                    .col(big_integer(PaperFunds::Used).default(0))
                    .col(big_integer(PaperFunds::Reserved).default(0))
                    .col(big_integer(PaperFunds::ShortValue).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaperPositions::Table)
                    .col(string_len(PaperPositions::AccountId, 36))
                    .col(string_len(PaperPositions::Exchange, 16))
                    .col(string_len(PaperPositions::Symbol, 64))
                    .col(string_len(PaperPositions::Product, 16))
                    .col(big_integer(PaperPositions::NetQuantity).default(0))
                    .col(big_integer_null(PaperPositions::AveragePrice))
                    .col(big_integer(PaperPositions::BuyQuantity).default(0))
                    .col(big_integer(PaperPositions::SellQuantity).default(0))
                    .col(big_integer(PaperPositions::BuyValue).default(0))
                    .col(big_integer(PaperPositions::SellValue).default(0))
                    .col(big_integer(PaperPositions::RealizedPnl).default(0))
                    .col(big_integer(PaperPositions::BuyHeld).default(0))
                    .col(big_integer(PaperPositions::SellHeld).default(0))
                    .primary_key(
                        Index::create()
                            .col(PaperPositions::AccountId)
                            .col(PaperPositions::Exchange)
                            .col(PaperPositions::Symbol)
                            .col(PaperPositions::Product),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaperReservations::Table)
                    .col(string_len(PaperReservations::OrderId, 36).primary_key())
                    .col(string_len(PaperReservations::AccountId, 36))
                    .col(big_integer(PaperReservations::UnitPrice))
                    .col(big_integer(PaperReservations::CashUnits))
                    .col(big_integer(PaperReservations::HeldUnits))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaperTrades::Table)
                    .col(big_integer(PaperTrades::Id).auto_increment().primary_key())
                    .col(string_len(PaperTrades::AccountId, 36))
                    .col(string_len(PaperTrades::OrderId, 36))
                    .col(string_len(PaperTrades::Exchange, 16))
                    .col(string_len(PaperTrades::Symbol, 64))
                    .col(string_len(PaperTrades::Product, 16))
                    .col(string_len(PaperTrades::Side, 4))
                    .col(big_integer(PaperTrades::Quantity))
                    .col(big_integer(PaperTrades::Price))
                    .col(big_integer(PaperTrades::TsMs))
                    .to_owned(),
            )
            .await?;
        // The trade book reads an account's latest fills: (account_id, id) finds them.
        manager
            .create_index(
                Index::create()
                    .name("ix_paper_trades_account_id")
                    .table(PaperTrades::Table)
                    .col(PaperTrades::AccountId)
                    .col(PaperTrades::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PaperTrades::Table.into_iden(),
            PaperReservations::Table.into_iden(),
            PaperPositions::Table.into_iden(),
            PaperFunds::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
