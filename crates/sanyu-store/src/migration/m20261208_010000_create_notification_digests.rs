//! Digests (issue 16, "fewer, better messages"): non-critical notices to one
//! person on one channel within a window go out as one message listing the
//! case references. `notification_digests` is one such message: `open` while
//! it takes members (`open_key` = `<staff id>:<channel>`, unique, so that
//! replicas share one open digest per person and channel; empty once it stops
//! taking members), `sending` under a worker's lease, then `sent` or
//! `failed`; `waiting` after a send that failed for now. Each member
//! (`notification_digest_members`) is one channel of one notification
//! request, by its delivery key: the delivery row is finished with the
//! digest, so the ladder still sees each case's notice.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::{fk, index};

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
                    .table("notification_digests")
                    .col(pk_uuid("id"))
                    .col(uuid("recipient_staff_id"))
                    .col(string("channel"))
                    .col(string("status"))
                    .col(string_null("open_key").unique_key())
                    .col(integer("members"))
                    .col(timestamp_with_time_zone("opened_at"))
                    .col(timestamp_with_time_zone("closes_at"))
                    .col(string_null("claimed_by"))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(timestamp_with_time_zone_null("sending_since"))
                    .col(timestamp_with_time_zone_null("finished_at"))
                    .col(string_null("last_error"))
                    .foreign_key(&mut fk(
                        "notification_digests",
                        "recipient_staff_id",
                        "staff",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("notification_digest_members")
                    .col(string("delivery_key").primary_key())
                    .col(uuid("digest_id"))
                    .col(string("notification_key"))
                    .col(uuid("case_id"))
                    .col(string("reference"))
                    .col(string("level"))
                    .col(string("reason"))
                    .col(string("school"))
                    .col(big_integer("partition"))
                    .col(timestamp_with_time_zone("added_at"))
                    .foreign_key(&mut fk(
                        "notification_digest_members",
                        "digest_id",
                        "notification_digests",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_notification_digest_members_digest",
                "notification_digest_members",
                &["digest_id"],
            ))
            .await?;
        Ok(())
    }
}
