//! One-time sign-in links and codes by SMS (issue 15): a challenge records
//! the channel its code went by (`email` or `sms`) and, for an email, the
//! keyed hash of the token of its sign-in link (`link_hash`, unique; the
//! token itself is never stored). The link is used up with the challenge.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::{add_columns, index};

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
            "console_sign_in_codes",
            [
                string_null("link_hash"),
                string("channel").default("email").to_owned(),
            ],
        )
        .await?;
        manager
            .create_index(
                index(
                    "console_codes_by_link",
                    "console_sign_in_codes",
                    &["link_hash"],
                )
                .unique()
                .to_owned(),
            )
            .await
    }
}
