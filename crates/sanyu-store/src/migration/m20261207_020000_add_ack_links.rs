use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::{add_columns, index};

/// Acknowledging from the message. A case notification's SMS and email carry
/// a link `/a/<token>`; the token is derived from the notification key with a
/// key of the data key (`sanyu_store::ack_links::AckKey`), so every send of a
/// key carries the same link, and only a keyed hash of it is stored, on the
/// delivery row the notifier writes when it claims the key (no write of its
/// own). The index finds the row of a link; the second one finds the SMS a
/// staff member was sent, for their replies.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_columns(manager, "deliveries", [string_null("ack_token_hash")]).await?;
        manager
            .create_index(index(
                "idx_deliveries_ack_token_hash",
                "deliveries",
                &["ack_token_hash"],
            ))
            .await?;
        manager
            .create_index(index(
                "idx_deliveries_recipient_channel",
                "deliveries",
                &["recipient_staff_id", "channel"],
            ))
            .await?;
        Ok(())
    }
}
