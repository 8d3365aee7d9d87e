use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::{add_columns, index, sqlite_rebuild};

/// Cases about an unidentified hotline caller.
///
/// - `cases.student_id` and `cases.class_id` become nullable: a case about a
///   caller nobody could identify has neither until someone links it to a
///   student. The partial unique index (one active case per student) stays as
///   it is: NULLs are distinct on PostgreSQL and SQLite alike, so any number of
///   unidentified callers may have open cases while a student still has one.
/// - `cases.subject`: who the case is about, `student` (every existing case)
///   or `unidentified_caller`.
/// - `cases.merged_into`: an unidentified caller's case that was closed because
///   the student it turned out to be about already had an open case names that
///   case here.
///
/// PostgreSQL drops the NOT NULL constraints in place. SQLite cannot, so the
/// table is rebuilt inside the migration's transaction from its own stored
/// definition (whatever earlier migrations added to it survives): copy the
/// rows aside, drop, recreate with the two constraints relaxed, copy back,
/// recreate its indexes and triggers (`super::sqlite_rebuild`). Foreign keys stay on: with
/// `defer_foreign_keys` the rows of `case_signals`, `case_actions`,
/// `referrals`, … that point at the dropped table count as violations until
/// the same rows are back, and the commit fails if any is still missing.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns whose NOT NULL constraint goes.
const RELAXED: [&str; 2] = ["student_id", "class_id"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one ADD COLUMN per ALTER TABLE.
        let columns = [
            string("subject").default("student").to_owned(),
            uuid_null("merged_into"),
        ];
        add_columns(manager, "cases", columns).await?;
        let conn = manager.get_connection();
        match conn.get_database_backend() {
            DatabaseBackend::Sqlite => {
                sqlite_rebuild::relax_not_null(conn, "cases", &RELAXED).await?
            }
            _ => {
                conn.execute_unprepared(
                    "ALTER TABLE cases ALTER COLUMN student_id DROP NOT NULL, \
                     ALTER COLUMN class_id DROP NOT NULL",
                )
                .await?;
            }
        }
        manager
            .create_index(index(
                "cases_by_school_subject",
                "cases",
                &["school_id", "subject", "status"],
            ))
            .await
    }
}
