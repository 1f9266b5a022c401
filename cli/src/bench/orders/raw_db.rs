//! The raw database baselines: one primary-key read, and one write transaction (`BEGIN`, an
//! insert of an order-sized row, `COMMIT`), on the stack's own database and through the
//! same pool (reads) and writer (writes) as the stack, in the same run. An order's cost
//! reads against them: an order makes about two dozen statements and four commits
//! (docs/BENCHMARKS.md), so these rows say what that costs here before any of Pinnacle's
//! own work.
//!
//! They use a table of their own, [`TABLE`], created for the run and dropped after it.

use pinnacle_common::writes::{Deferred as _, WriteTxn, Writer};
use sea_orm::sea_query::{Alias, ColumnDef, Expr, InsertStatement, Query, Table};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

/// The baselines' table.
pub const TABLE: &str = "bench_raw_rows";

/// The id of the row every read fetches.
const READ_ID: &str = "read";

/// Creates [`TABLE`] (dropping a leftover of an interrupted run) with the row reads fetch.
pub async fn create(db: &DatabaseConnection, body: &[u8]) -> Result<(), DbErr> {
    drop_table(db).await?;
    let table = Table::create()
        .table(Alias::new(TABLE))
        .col(
            ColumnDef::new(Alias::new("id"))
                .string()
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(Alias::new("body")).binary().not_null())
        .to_owned();
    db.execute(db.get_database_backend().build(&table)).await?;
    let row = insert(READ_ID, body)?;
    db.execute(db.get_database_backend().build(&row))
        .await
        .map(drop)
}

/// Drops [`TABLE`] if it exists.
pub async fn drop_table(db: &DatabaseConnection) -> Result<(), DbErr> {
    let table = Table::drop()
        .table(Alias::new(TABLE))
        .if_exists()
        .to_owned();
    db.execute(db.get_database_backend().build(&table)).await?;
    Ok(())
}

/// One statement: the read row by primary key.
pub async fn read(db: &DatabaseConnection) -> Result<(), String> {
    let select = Query::select()
        .column(Alias::new("body"))
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("id")).eq(READ_ID))
        .to_owned();
    match db.query_one(db.get_database_backend().build(&select)).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("DB_READ: the row is missing".into()),
        Err(e) => Err(format!("DB_READ: {e}")),
    }
}

/// One write transaction through the stack's own write path (`writer`, on SQLite its
/// writing connection): `BEGIN`, the insert of row `id`, `COMMIT`; on SQLite one command.
pub async fn write(writer: &Writer, id: &str, body: &[u8]) -> Result<(), String> {
    let committed = async {
        let txn = WriteTxn::begin(writer).await?;
        txn.defer(writer.get_database_backend().build(&insert(id, body)?))
            .await?;
        txn.commit().await
    };
    committed.await.map_err(|e| format!("DB_WRITE: {e}"))
}

fn insert(id: &str, body: &[u8]) -> Result<InsertStatement, DbErr> {
    Ok(Query::insert()
        .into_table(Alias::new(TABLE))
        .columns([Alias::new("id"), Alias::new("body")])
        .values([id.into(), body.to_vec().into()])
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .to_owned())
}
