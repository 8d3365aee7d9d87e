//! Verified contact methods (issue 16, "reachability"). A staff member's
//! mobile number or email address is verified when a code sent to it is
//! typed into the console: the console's sign-in code does it (a code by
//! SMS verifies the number, a code or link by email the address).
//! `contact_verifications` holds, per person and channel, the address that
//! was verified, so a roster change of the number or address undoes the
//! verification with no write of its own (and the `staff` table, which
//! every service reads, keeps its columns). `console_sign_in_codes.sent_to_hash`
//! is the keyed hash of the address a code went to: an address changed
//! between the send and the code's use is not verified by it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::{add_columns, fk};

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
                    .table("contact_verifications")
                    .col(uuid("staff_id"))
                    .col(string("channel"))
                    .col(string("address"))
                    .col(timestamp_with_time_zone("verified_at"))
                    .primary_key(Index::create().col("staff_id").col("channel"))
                    .foreign_key(&mut fk("contact_verifications", "staff_id", "staff"))
                    .to_owned(),
            )
            .await?;
        add_columns(
            manager,
            "console_sign_in_codes",
            [string_null("sent_to_hash")],
        )
        .await
    }
}
