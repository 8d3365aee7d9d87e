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
                    .table("reports")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(uuid("class_id"))
                    .col(uuid("student_id"))
                    .col(string("category"))
                    .col(string("level"))
                    .col(timestamp_with_time_zone("observed_at"))
                    .col(blob("narrative_sealed"))
                    .col(uuid("reporter_token_id"))
                    .col(string_uniq("event_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut fk("reports", "student_id", "students"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("cases")
                    .col(pk_uuid("id"))
                    .col(string_uniq("reference"))
                    .col(uuid("school_id"))
                    .col(uuid("class_id"))
                    .col(uuid("student_id"))
                    .col(string("level"))
                    .col(small_integer("level_rank"))
                    .col(string("status"))
                    .col(string("opened_rule"))
                    .col(timestamp_with_time_zone("opened_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(timestamp_with_time_zone_null("closed_at"))
                    .col(integer("version"))
                    .foreign_key(&mut fk("cases", "student_id", "students"))
                    .to_owned(),
            )
            .await?;
        // The database itself guarantees that a student never has two open cases,
        // whatever number of rules-engine replicas run. Partial indexes have the
        // same syntax on PostgreSQL and SQLite.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX cases_one_active_per_student \
                 ON cases (student_id) WHERE status <> 'closed'",
            )
            .await?;
        manager
            .create_index(index(
                "cases_by_school_status",
                "cases",
                &["school_id", "status"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("case_signals")
                    .col(pk_uuid("id"))
                    .col(uuid("case_id"))
                    .col(string("event_id"))
                    .col(string("kind"))
                    .col(uuid_null("source_id"))
                    .col(string("level"))
                    .col(string("decision"))
                    .col(string("rule_id"))
                    .col(timestamp_with_time_zone("attached_at"))
                    .foreign_key(&mut fk("case_signals", "case_id", "cases"))
                    .index(Index::create().unique().col("case_id").col("event_id"))
                    .to_owned(),
            )
            .await
    }
}
