use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::{fk, index};

/// Screening imports: the import jobs, one result per file row, and the
/// row-level errors of rejected rows.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One import of one file. `checkpoint_row` is the last file row whose
        // result committed: a resumed job skips up to it, and it moves in the
        // same transaction as the results and their signals.
        manager
            .create_table(
                Table::create()
                    .table("screening_imports")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(string("instrument"))
                    .col(string("coding"))
                    .col(date("administered_on"))
                    .col(string("file_name"))
                    .col(string("file_format"))
                    .col(string_null("sheet"))
                    .col(text_null("profile"))
                    .col(text_null("spool_path"))
                    .col(string("state"))
                    .col(big_integer("rows_read"))
                    .col(big_integer("rows_accepted"))
                    .col(big_integer("rows_rejected"))
                    .col(big_integer("alerts_raised"))
                    .col(big_integer_null("rows_total"))
                    .col(big_integer("checkpoint_row"))
                    .col(text_null("error"))
                    .col(uuid_null("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(timestamp_with_time_zone_null("started_at"))
                    .col(timestamp_with_time_zone_null("finished_at"))
                    .foreign_key(&mut fk("screening_imports", "school_id", "schools"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "screening_imports_by_state",
                "screening_imports",
                &["state", "created_at"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("screening_results")
                    .col(pk_uuid("id"))
                    .col(uuid("import_id"))
                    .col(big_integer("row_number"))
                    .col(uuid_null("student_id"))
                    .col(string("student_no"))
                    .col(string("instrument"))
                    .col(date("administered_on"))
                    .col(string("outcome"))
                    .col(text_null("reason"))
                    .col(integer_null("total"))
                    .col(string_null("band"))
                    .col(text_null("subscales"))
                    .col(text("flags"))
                    .col(string_null("level"))
                    .col(string_null("event_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut fk(
                        "screening_results",
                        "import_id",
                        "screening_imports",
                    ))
                    .index(
                        Index::create()
                            .name("screening_results_job_row")
                            .unique()
                            .col("import_id")
                            .col("row_number"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "screening_results_by_student",
                "screening_results",
                &["student_id", "instrument", "administered_on"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("screening_row_errors")
                    .col(pk_uuid("id"))
                    .col(uuid("import_id"))
                    .col(big_integer("row_number"))
                    .col(integer("seq"))
                    .col(string("column"))
                    .col(text("reason"))
                    .foreign_key(&mut fk(
                        "screening_row_errors",
                        "import_id",
                        "screening_imports",
                    ))
                    .index(
                        Index::create()
                            .name("screening_row_errors_job_row_seq")
                            .unique()
                            .col("import_id")
                            .col("row_number")
                            .col("seq"),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
