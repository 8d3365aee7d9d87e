use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::{fk, index};

/// Hotline call logs and zero reports (零报告).
///
/// - `hotline_calls`: one row per call of a school's hotline system, unique by
///   the hotline's own call id (idempotency). A call about no identified student
///   rated high or critical carries an alert (`alert_state` = `open`) for the
///   crisis team until it is linked to a student (`linked`). Cases keep their
///   required student: an unidentified caller is an alert, not a case.
/// - `zero_reports`: every version of a unit's report for a period; the
///   newest version of a unit is `current`.
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
                    .table("hotline_calls")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(string("call_id"))
                    .col(timestamp_with_time_zone("started_at"))
                    .col(timestamp_with_time_zone_null("ended_at"))
                    .col(string("caller_type"))
                    .col(uuid_null("student_id"))
                    .col(string_null("cssrs_answers"))
                    .col(string_null("rating"))
                    .col(string("level"))
                    .col(blob_null("summary_sealed"))
                    .col(string_null("counsellor"))
                    .col(string_null("referral_advice"))
                    .col(string_null("alert_state"))
                    .col(timestamp_with_time_zone_null("linked_at"))
                    .col(string_null("event_id"))
                    .col(uuid("submitted_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut fk("hotline_calls", "school_id", "schools"))
                    .foreign_key(&mut fk("hotline_calls", "student_id", "students"))
                    .index(Index::create().unique().col("school_id").col("call_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "hotline_calls_alerts",
                "hotline_calls",
                &["school_id", "alert_state"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("zero_reports")
                    .col(pk_uuid("id"))
                    .col(string("period_id"))
                    .col(uuid("school_id"))
                    .col(uuid_null("class_id"))
                    .col(string("unit"))
                    .col(integer("version"))
                    .col(boolean("current"))
                    .col(boolean("zero"))
                    .col(integer("incident_count"))
                    .col(text("incidents"))
                    .col(boolean("late"))
                    .col(string("request_hash"))
                    .col(uuid("submitted_by"))
                    .col(timestamp_with_time_zone("submitted_at"))
                    .foreign_key(&mut fk("zero_reports", "school_id", "schools"))
                    .foreign_key(&mut fk("zero_reports", "class_id", "classes"))
                    .index(
                        Index::create()
                            .unique()
                            .col("period_id")
                            .col("school_id")
                            .col("unit")
                            .col("version"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "zero_reports_current",
                "zero_reports",
                &["period_id", "school_id", "current"],
            ))
            .await
    }
}
