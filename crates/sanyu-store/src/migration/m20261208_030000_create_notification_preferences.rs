//! Per-person notification preferences (issue 16): the channels a staff
//! member adds, per case level, to those the level's policy requires
//! (`notify.channels`). A person can add channels, never drop below the
//! policy: the policy's channels are not stored here, only the additions,
//! in the person's order.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("notification_preferences")
                    .col(uuid("staff_id"))
                    .col(string("level"))
                    .col(string("channels"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("staff_id").col("level"))
                    .foreign_key(&mut fk("notification_preferences", "staff_id", "staff"))
                    .to_owned(),
            )
            .await
    }
}
