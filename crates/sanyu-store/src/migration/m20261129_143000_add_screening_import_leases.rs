use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::add_columns;

/// Screening imports shared by several gateway replicas: the process running
/// a job holds a lease on it (`lease_owner` until `lease_until`), renewed in
/// every batch's transaction, so two processes never run one job at once and
/// a job whose process died is taken up by another once the lease expires.
/// `signal_batches` counts the `ScreeningResultBatch` messages a job has
/// written, so a resumed job numbers its next batch where the last one left off.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            manager,
            "screening_imports",
            [
                string_null("lease_owner"),
                timestamp_with_time_zone_null("lease_until"),
                integer("signal_batches").default(0).to_owned(),
            ],
        )
        .await?;
        Ok(())
    }
}
