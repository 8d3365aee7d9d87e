use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

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
/// recreate its indexes and triggers. Foreign keys stay on: with
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
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table("cases")
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        let conn = manager.get_connection();
        match conn.get_database_backend() {
            DatabaseBackend::Sqlite => rebuild_sqlite(conn).await?,
            _ => {
                conn.execute_unprepared(
                    "ALTER TABLE cases ALTER COLUMN student_id DROP NOT NULL, \
                     ALTER COLUMN class_id DROP NOT NULL",
                )
                .await?;
            }
        }
        manager
            .create_index(
                Index::create()
                    .name("cases_by_school_subject")
                    .table("cases")
                    .col("school_id")
                    .col("subject")
                    .col("status")
                    .to_owned(),
            )
            .await
    }
}

async fn schema_sql(
    conn: &impl ConnectionTrait,
    query: &str,
) -> Result<Vec<(String, String)>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_string(DatabaseBackend::Sqlite, query))
        .await?;
    rows.into_iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect()
}

async fn rebuild_sqlite(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    let table = schema_sql(
        conn,
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name = 'cases'",
    )
    .await?;
    let (_, create) = table
        .into_iter()
        .next()
        .ok_or_else(|| DbErr::Migration("table `cases` does not exist".into()))?;
    let relaxed = relax_not_null(&create, &RELAXED)?;
    // Indexes and triggers go with the table; automatic indexes (sql NULL) come back by themselves.
    let dependents = schema_sql(
        conn,
        "SELECT name, sql FROM sqlite_master \
         WHERE tbl_name = 'cases' AND type IN ('index', 'trigger') AND sql IS NOT NULL \
         ORDER BY type, name",
    )
    .await?;
    conn.execute_unprepared("PRAGMA defer_foreign_keys = ON")
        .await?;
    conn.execute_unprepared("CREATE TABLE cases_m000011 AS SELECT * FROM cases")
        .await?;
    conn.execute_unprepared("DROP TABLE cases").await?;
    conn.execute_unprepared(&relaxed).await?;
    conn.execute_unprepared("INSERT INTO cases SELECT * FROM cases_m000011")
        .await?;
    conn.execute_unprepared("DROP TABLE cases_m000011").await?;
    for (_, sql) in dependents {
        conn.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// `create` (a `CREATE TABLE` statement as SQLite stores it) without the NOT
/// NULL constraint of each column in `columns`.
fn relax_not_null(create: &str, columns: &[&str]) -> Result<String, DbErr> {
    let mut out = create.to_owned();
    for column in columns {
        let missing = || DbErr::Migration(format!("cases.{column}: no NOT NULL definition found"));
        let start = [
            format!("\"{column}\" "),
            format!("`{column}` "),
            format!("{column} "),
        ]
        .iter()
        .filter_map(|name| {
            out.match_indices(name.as_str()).map(|(i, _)| i).find(|&i| {
                i > 0 && matches!(out.as_bytes()[i - 1], b'(' | b' ' | b',' | b'\n' | b'\t')
            })
        })
        .min()
        .ok_or_else(missing)?;
        // The definition ends at the next comma (column types here take no arguments).
        let end = out[start..].find(',').map_or(out.len(), |i| start + i);
        let definition = &out[start..end];
        let upper = definition.to_ascii_uppercase();
        let at = upper.find(" NOT NULL").ok_or_else(missing)?;
        let relaxed = format!(
            "{}{}",
            &definition[..at],
            &definition[at + " NOT NULL".len()..]
        );
        out.replace_range(start..end, &relaxed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_columns_lose_not_null() {
        let create = r#"CREATE TABLE "cases" ( "id" uuid_text NOT NULL PRIMARY KEY, "class_id" uuid_text NOT NULL, "student_id" uuid_text NOT NULL, "level" varchar NOT NULL, FOREIGN KEY ("student_id") REFERENCES "students" ("id") )"#;
        let relaxed = relax_not_null(create, &RELAXED).expect("relaxed");
        assert_eq!(
            relaxed,
            r#"CREATE TABLE "cases" ( "id" uuid_text NOT NULL PRIMARY KEY, "class_id" uuid_text, "student_id" uuid_text, "level" varchar NOT NULL, FOREIGN KEY ("student_id") REFERENCES "students" ("id") )"#
        );
        assert!(relax_not_null(&relaxed, &["student_id"]).is_err());
        assert!(relax_not_null(create, &["nope"]).is_err());
    }
}
