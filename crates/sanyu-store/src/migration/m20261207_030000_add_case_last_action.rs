//! When a person last acted on a case (issue 16, "after the
//! acknowledgement"): a guardian contact or the decision not to contact, a
//! note, an assignment, a referral, a follow-up, a close. An acknowledged
//! case without one escalates again; a case being worked without one for
//! the level's days is stale (flagged in the queue, its assignee reminded).
//! Empty for cases acted on before this column: their acknowledgement counts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::add_columns;

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
            "cases",
            [timestamp_with_time_zone_null("last_action_at")],
        )
        .await
    }
}
