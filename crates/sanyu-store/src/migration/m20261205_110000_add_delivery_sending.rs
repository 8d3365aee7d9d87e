use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::add_columns;

/// A send in progress is recorded before it starts: `sending_since` is set,
/// committed, just before the provider is called, and cleared when the
/// outcome is recorded (or the claim released). A notifier that takes over an
/// expired claim whose `sending_since` is set knows the provider may have
/// accepted the message already: it waits a grace, resends with the same
/// idempotency identity and counts the takeover (`takeovers`), so every
/// possible duplicate is recorded.
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
            "deliveries",
            [
                timestamp_with_time_zone_null("sending_since"),
                integer("takeovers").default(0).to_owned(),
            ],
        )
        .await?;
        Ok(())
    }
}
