//! Signed audit-chain checkpoints, stored outside NATS (see docs/AUDIT.md).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `audit_checkpoints`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditCheckpoints {
    Table,
    Id,
    Subject,
    StreamSeq,
    Position,
    Hash,
    KeyId,
    TsMs,
    Signature,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditCheckpoints::Table)
                    .col(string_len(AuditCheckpoints::Id, 36).primary_key())
                    .col(string_len(AuditCheckpoints::Subject, 255))
                    .col(big_integer(AuditCheckpoints::StreamSeq))
                    .col(big_integer(AuditCheckpoints::Position))
                    .col(string_len(AuditCheckpoints::Hash, 64))
                    .col(big_integer(AuditCheckpoints::KeyId))
                    .col(big_integer(AuditCheckpoints::TsMs))
                    .col(string_len(AuditCheckpoints::Signature, 64))
                    .to_owned(),
            )
            .await?;
        // One checkpoint per link: two writers checkpointing the same tip store it once.
        manager
            .create_index(
                Index::create()
                    .name("audit_checkpoints_subject_seq")
                    .table(AuditCheckpoints::Table)
                    .col(AuditCheckpoints::Subject)
                    .col(AuditCheckpoints::StreamSeq)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditCheckpoints::Table).to_owned())
            .await
    }
}
