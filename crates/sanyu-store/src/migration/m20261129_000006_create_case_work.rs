use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::{add_columns, fk, index};

/// Case work and escalation: the ladder snapshot and assignment on each case,
/// the case timeline, referrals, follow-ups and the scheduler's durable timers.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one ADD COLUMN per ALTER TABLE.
        let columns = [
            text_null("ladder"),
            integer("ladder_epoch").default(0).to_owned(),
            string("ladder_state").default("stopped").to_owned(),
            timestamp_with_time_zone_null("ladder_started_at"),
            timestamp_with_time_zone_null("ack_deadline"),
            timestamp_with_time_zone_null("acknowledged_at"),
            uuid_null("acknowledged_by"),
            uuid_null("assignee_staff_id"),
        ];
        add_columns(manager, "cases", columns).await?;
        manager
            .create_table(
                Table::create()
                    .table("case_actions")
                    .col(pk_uuid("id"))
                    .col(uuid("case_id"))
                    .col(string("action"))
                    .col(string("actor_role"))
                    .col(uuid_null("actor_staff_id"))
                    .col(uuid_null("actor_token_id"))
                    .col(string("status_after"))
                    .col(text("detail"))
                    .col(blob_null("text_sealed"))
                    .col(timestamp_with_time_zone("at"))
                    .foreign_key(&mut fk("case_actions", "case_id", "cases"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "case_actions_by_case",
                "case_actions",
                &["case_id", "at"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("referrals")
                    .col(pk_uuid("id"))
                    .col(uuid("case_id"))
                    .col(string("institution"))
                    .col(date("referred_on"))
                    .col(boolean("receipt_confirmed"))
                    .col(date_null("return_assessed_on"))
                    .col(string_null("return_assessment"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut fk("referrals", "case_id", "cases"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("follow_ups")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(uuid("student_id"))
                    .col(uuid_null("case_id"))
                    .col(timestamp_with_time_zone("due_at"))
                    .col(uuid_null("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("done_at"))
                    .col(blob_null("outcome_sealed"))
                    .foreign_key(&mut fk("follow_ups", "student_id", "students"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "follow_ups_open_by_school",
                "follow_ups",
                &["school_id", "done_at", "due_at"],
            ))
            .await?;
        // Durable timers. `key` makes scheduling idempotent; `state` moves from
        // `pending` to `fired` or `cancelled` exactly once, in the transaction
        // that performs the timer's effect.
        manager
            .create_table(
                Table::create()
                    .table("timers")
                    .col(pk_uuid("id"))
                    .col(string_uniq("key"))
                    .col(string("kind"))
                    .col(uuid_null("case_id"))
                    .col(timestamp_with_time_zone("due_at"))
                    .col(text("payload"))
                    .col(string("state"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("fired_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("timers_due", "timers", &["state", "due_at"]))
            .await?;
        manager
            .create_index(index("timers_by_case", "timers", &["case_id", "state"]))
            .await?;
        Ok(())
    }
}
