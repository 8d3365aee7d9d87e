use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::index;

/// Every attempt to reach a person on one channel: which provider, how it
/// went, how long it took and the provider's reason. Delivery receipts from
/// SMS providers land on the attempt they confirm (`receipt_status`). No
/// phone number or address is stored here: the staff id on the delivery is
/// enough to find the person.
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
                    .table("delivery_attempts")
                    .col(pk_uuid("id"))
                    .col(string("delivery_key"))
                    .col(uuid("case_id"))
                    .col(string("channel"))
                    .col(string("provider"))
                    .col(string("status"))
                    .col(big_integer("latency_ms"))
                    .col(text_null("error"))
                    .col(string_null("provider_message_id"))
                    .col(string_null("receipt_status"))
                    .col(timestamp_with_time_zone_null("receipt_at"))
                    .col(timestamp_with_time_zone("at"))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("delivery_attempts_by_case", "case_id"),
            ("delivery_attempts_by_key", "delivery_key"),
            ("delivery_attempts_by_provider_id", "provider_message_id"),
        ] {
            manager
                .create_index(index(name, "delivery_attempts", &[column]))
                .await?;
        }
        Ok(())
    }
}
