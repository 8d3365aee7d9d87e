//! The console's sign-in: `console_sign_in_codes` (one-time codes, stored as
//! a keyed hash, with their attempts, expiry and use) and `console_sessions`
//! (server-side sessions, the cookie's token stored as a hash).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::index;

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
                    .table("console_sign_in_codes")
                    .col(pk_uuid("id"))
                    // The hash of the secret the browser holds for this
                    // challenge (a cookie), never the secret.
                    .col(string_uniq("challenge_hash"))
                    // The keyed hash of what was typed to ask for it (staff
                    // number, email or phone): rate limits without the value.
                    .col(string("identifier_hash"))
                    // Null when nobody matched: the answer is the same.
                    .col(uuid_null("staff_id"))
                    .col(string("code_hash"))
                    .col(string("client_addr"))
                    .col(string_null("return_to"))
                    .col(integer("attempts"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("used_at"))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("console_codes_by_identifier", "identifier_hash"),
            ("console_codes_by_addr", "client_addr"),
            ("console_codes_by_staff", "staff_id"),
        ] {
            manager
                .create_index(index(name, "console_sign_in_codes", &[col, "created_at"]))
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("console_sessions")
                    .col(pk_uuid("id"))
                    .col(string_uniq("token_hash"))
                    .col(string("csrf_token"))
                    .col(uuid("staff_id"))
                    .col(uuid("school_id"))
                    .col(uuid_null("class_id"))
                    .col(string("role"))
                    .col(string("client_addr"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("last_seen_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("ended_at"))
                    .col(string_null("end_reason"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "console_sessions_by_staff",
                "console_sessions",
                &["staff_id"],
            ))
            .await
    }
}
