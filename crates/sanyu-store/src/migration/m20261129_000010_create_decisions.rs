use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::index;

/// The rules engine's record of every signal it decided (issue 4): the
/// signal's facts as the rules saw them (codes and levels, never text), the
/// decision, the rule and rules version that made it and the signals it used.
/// `signal_id` is unique: a signal is decided once, whatever the redelivery.
/// The same rows are the per-student history the rules look back over and
/// the history `sanyu rules simulate` replays.
///
/// `watch_list` is the rules' key-population list (重点关注) for students
/// without an open case: the follow-up date and the rule that put them there.
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
                    .table("decisions")
                    .col(pk_uuid("id"))
                    .col(string_uniq("signal_id"))
                    .col(string("message_id"))
                    .col(uuid("student_id"))
                    .col(uuid("school_id"))
                    .col(string("source"))
                    .col(timestamp_with_time_zone("signal_at"))
                    .col(string_null("level"))
                    .col(string_null("instrument"))
                    .col(string_null("band"))
                    .col(string("flags"))
                    .col(string_null("category"))
                    .col(string("decision"))
                    .col(uuid_null("case_id"))
                    .col(string_null("case_level"))
                    .col(date_null("follow_up_on"))
                    .col(string("rule_id"))
                    .col(string("rules_version"))
                    .col(text("used"))
                    .col(timestamp_with_time_zone("decided_at"))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("decisions_by_student", &["student_id", "signal_at"][..]),
            ("decisions_by_case", &["case_id"][..]),
            ("decisions_by_time", &["signal_at"][..]),
        ] {
            manager
                .create_index(index(name, "decisions", columns))
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("watch_list")
                    .col(pk_uuid("id"))
                    .col(uuid("student_id"))
                    .col(uuid("school_id"))
                    .col(uuid("class_id"))
                    .col(timestamp_with_time_zone("since"))
                    .col(date("follow_up_on"))
                    .col(string("signal_id"))
                    .col(string("rule_id"))
                    .col(string("rules_version"))
                    .col(timestamp_with_time_zone_null("done_at"))
                    .col(uuid_null("done_by"))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("watch_list_by_student", "student_id"),
            ("watch_list_by_school", "school_id"),
        ] {
            manager
                .create_index(index(name, "watch_list", &[column]))
                .await?;
        }
        Ok(())
    }
}
