//! SQLite cannot drop a column's NOT NULL constraint in place: the table is
//! rebuilt inside the migration's transaction from its own stored definition
//! (whatever earlier migrations added to it survives): copy the rows aside,
//! drop, recreate with the constraints relaxed, copy back, recreate its
//! indexes and triggers. Foreign keys stay on: with `defer_foreign_keys` the
//! rows of other tables that point at the dropped table count as violations
//! until the same rows are back, and the commit fails if any is still missing.

use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement};

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

/// Rebuild SQLite table `table` with the NOT NULL constraint of each column
/// in `columns` dropped. `table` is a name from the migration's own code.
pub(crate) async fn relax_not_null(
    conn: &impl ConnectionTrait,
    table: &str,
    columns: &[&str],
) -> Result<(), DbErr> {
    let found = schema_sql(
        conn,
        &format!("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name = '{table}'"),
    )
    .await?;
    let (_, create) = found
        .into_iter()
        .next()
        .ok_or_else(|| DbErr::Migration(format!("table `{table}` does not exist")))?;
    let relaxed = relaxed_definition(table, &create, columns)?;
    // Indexes and triggers go with the table; automatic indexes (sql NULL) come back by themselves.
    let dependents = schema_sql(
        conn,
        &format!(
            "SELECT name, sql FROM sqlite_master \
             WHERE tbl_name = '{table}' AND type IN ('index', 'trigger') AND sql IS NOT NULL \
             ORDER BY type, name"
        ),
    )
    .await?;
    let aside = format!("{table}_rebuild");
    conn.execute_unprepared("PRAGMA defer_foreign_keys = ON")
        .await?;
    conn.execute_unprepared(&format!("CREATE TABLE {aside} AS SELECT * FROM {table}"))
        .await?;
    conn.execute_unprepared(&format!("DROP TABLE {table}"))
        .await?;
    conn.execute_unprepared(&relaxed).await?;
    conn.execute_unprepared(&format!("INSERT INTO {table} SELECT * FROM {aside}"))
        .await?;
    conn.execute_unprepared(&format!("DROP TABLE {aside}"))
        .await?;
    for (_, sql) in dependents {
        conn.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// `create` (a `CREATE TABLE` statement as SQLite stores it) without the NOT
/// NULL constraint of each column in `columns`.
pub(crate) fn relaxed_definition(
    table: &str,
    create: &str,
    columns: &[&str],
) -> Result<String, DbErr> {
    let mut out = create.to_owned();
    for column in columns {
        let missing =
            || DbErr::Migration(format!("{table}.{column}: no NOT NULL definition found"));
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
        let relaxed =
            relaxed_definition("cases", create, &["student_id", "class_id"]).expect("relaxed");
        assert_eq!(
            relaxed,
            r#"CREATE TABLE "cases" ( "id" uuid_text NOT NULL PRIMARY KEY, "class_id" uuid_text, "student_id" uuid_text, "level" varchar NOT NULL, FOREIGN KEY ("student_id") REFERENCES "students" ("id") )"#
        );
        assert!(relaxed_definition("cases", &relaxed, &["student_id"]).is_err());
        assert!(relaxed_definition("cases", create, &["nope"]).is_err());
    }
}
