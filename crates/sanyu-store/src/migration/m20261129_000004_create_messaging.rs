use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

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
                    .table("outbox")
                    .col(big_pk_auto("id"))
                    .col(string_uniq("event_id"))
                    .col(string("subject"))
                    .col(blob("payload"))
                    .col(text_null("traceparent"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("published_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("processed_messages")
                    .col(string("consumer"))
                    .col(string("message_id"))
                    .col(timestamp_with_time_zone("processed_at"))
                    .primary_key(Index::create().col("consumer").col("message_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("deliveries")
                    .col(pk_uuid("id"))
                    .col(string_uniq("notification_key"))
                    .col(uuid("case_id"))
                    .col(uuid("recipient_staff_id"))
                    .col(string("channel"))
                    .col(string("status"))
                    .col(integer("attempts"))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(string_null("claimed_by"))
                    .col(text_null("last_error"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(timestamp_with_time_zone_null("sent_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("dead_letters")
                    .col(pk_uuid("id"))
                    .col(string_uniq("source_key"))
                    .col(string("stream"))
                    .col(string("consumer"))
                    .col(big_integer_null("stream_seq"))
                    .col(string_null("subject"))
                    .col(string_null("event_id"))
                    .col(text("reason"))
                    .col(big_integer_null("deliveries"))
                    .col(timestamp_with_time_zone("received_at"))
                    .col(timestamp_with_time_zone_null("resolved_at"))
                    .to_owned(),
            )
            .await
    }
}
