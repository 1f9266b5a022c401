//! `paper_reservations.modify_quantity`, `modify_price`, `modify_trigger_price`: the terms
//! a paper order's last modify re-reserved for, written in the re-reservation's own
//! transaction. The paper broker's books are its order book, so these say whether a modify
//! reached the broker: when the worker handling it dies after the re-reservation and
//! before it records the new terms, reconciliation finds them here and settles the order
//! on them, instead of returning it to its old terms with its cash held for the new ones.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::big_integer_null;

/// Adds the three columns, `NULL` for every reservation no modify has touched.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum PaperReservations {
    Table,
    ModifyQuantity,
    ModifyPrice,
    ModifyTriggerPrice,
}

const COLUMNS: [PaperReservations; 3] = [
    PaperReservations::ModifyQuantity,
    PaperReservations::ModifyPrice,
    PaperReservations::ModifyTriggerPrice,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column a statement: SQLite alters one thing at a time.
        for column in COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(PaperReservations::Table)
                        .add_column(big_integer_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(PaperReservations::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
