use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use uuid::Uuid;

use super::add_columns;

/// Free text about a student that was stored in clear is sealed with the data
/// key, like narratives and notes:
///
/// - `referrals.institution` and `referrals.return_assessment` (where a
///   student was referred, what the return-to-school assessment said) become
///   `institution_sealed` and `return_assessment_sealed`;
/// - `hotline_calls.counsellor` and `hotline_calls.referral_advice` become
///   `counsellor_sealed` and `referral_advice_sealed`;
/// - the timeline's free text in `case_actions.detail` (a close's `outcome`,
///   a referral's `return_assessment`) moves to `detail_sealed`, a sealed JSON
///   object merged back into `detail` for the people who work the case.
///
/// Rows already stored are sealed here, in the migration's transaction, and
/// the clear columns are dropped (SQLite ≥ 3.35 drops columns in place), so no
/// clear copy is left to read or to write into by mistake. On SQLite the
/// space this frees is zeroed (`secure_delete`); after the commit the WAL is
/// truncated, and PostgreSQL's tables are rewritten without their dead
/// tuples (`super::purge_replaced_clear_text`). Sealing needs the
/// data key ([`crate::db::migrate_with_key`]); on a database with nothing to
/// seal (a new one) the migration runs without it, and with clear rows but no
/// key it fails and changes nothing.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The timeline actions whose `detail` held free text, and its keys.
const ACTION_FREE_TEXT: [(&str, &str); 3] = [
    ("close", "outcome"),
    ("referral", "return_assessment"),
    ("referral_update", "return_assessment"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let added = [
            ("referrals", "institution_sealed"),
            ("referrals", "return_assessment_sealed"),
            ("hotline_calls", "counsellor_sealed"),
            ("hotline_calls", "referral_advice_sealed"),
            ("case_actions", "detail_sealed"),
        ];
        // SQLite takes one change per ALTER TABLE.
        for (table, column) in added {
            add_columns(manager, table, [blob_null(column)]).await?;
        }
        let conn = manager.get_connection();
        // SQLite zeroes what it frees while this runs: the clear values the
        // updates and the dropped columns leave behind (reset at the end).
        let sqlite = conn.get_database_backend() == sea_orm::DatabaseBackend::Sqlite;
        if sqlite {
            conn.execute_unprepared("PRAGMA secure_delete = ON").await?;
        }
        let key = super::data_key();
        let seal = |text: &str| -> Result<Vec<u8>, DbErr> {
            key.as_ref()
                .ok_or_else(|| {
                    DbErr::Migration(
                        "this migration seals free text already stored in clear and needs the \
                         data key: run `sanyu migrate` with security.data_key set"
                            .to_owned(),
                    )
                })?
                .seal(text)
                .map_err(|e| DbErr::Migration(e.to_string()))
        };
        seal_columns(
            conn,
            "referrals",
            &[
                ("institution", "institution_sealed"),
                ("return_assessment", "return_assessment_sealed"),
            ],
            &seal,
        )
        .await?;
        seal_columns(
            conn,
            "hotline_calls",
            &[
                ("counsellor", "counsellor_sealed"),
                ("referral_advice", "referral_advice_sealed"),
            ],
            &seal,
        )
        .await?;
        seal_action_details(conn, &seal).await?;
        let dropped = [
            ("referrals", "institution"),
            ("referrals", "return_assessment"),
            ("hotline_calls", "counsellor"),
            ("hotline_calls", "referral_advice"),
        ];
        for (table, column) in dropped {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        if sqlite {
            conn.execute_unprepared("PRAGMA secure_delete = OFF")
                .await?;
        }
        Ok(())
    }
}

fn id_of(row: &QueryResult) -> Result<Uuid, DbErr> {
    row.try_get::<Uuid>("", "id")
}

/// Seal each clear column of `table` into its sealed column, row by row.
async fn seal_columns(
    conn: &impl ConnectionTrait,
    table: &'static str,
    columns: &[(&'static str, &'static str)],
    seal: &impl Fn(&str) -> Result<Vec<u8>, DbErr>,
) -> Result<(), DbErr> {
    let mut select = Query::select();
    select.column("id").from(table);
    for (clear, _) in columns {
        select.column(*clear);
    }
    for row in conn.query_all(&select).await? {
        let id = id_of(&row)?;
        let mut update = Query::update();
        update.table(table).and_where(Expr::col("id").eq(id));
        let mut any = false;
        for (clear, sealed) in columns {
            if let Some(text) = row.try_get::<Option<String>>("", clear)? {
                update.value(*sealed, seal(&text)?);
                any = true;
            }
        }
        if any {
            conn.execute(&update).await?;
            super::replaced_clear_text();
        }
    }
    Ok(())
}

/// Move the free text of timeline entries out of the clear `detail` JSON into
/// the sealed `detail_sealed` object.
async fn seal_action_details(
    conn: &impl ConnectionTrait,
    seal: &impl Fn(&str) -> Result<Vec<u8>, DbErr>,
) -> Result<(), DbErr> {
    let select = Query::select()
        .columns(["id", "action", "detail"])
        .from("case_actions")
        .and_where(Expr::col("action").is_in(ACTION_FREE_TEXT.map(|(action, _)| action)))
        .to_owned();
    for row in conn.query_all(&select).await? {
        let id = id_of(&row)?;
        let action: String = row.try_get("", "action")?;
        let detail: String = row.try_get("", "detail")?;
        let Ok(serde_json::Value::Object(mut clear)) = serde_json::from_str(&detail) else {
            continue;
        };
        let mut private = serde_json::Map::new();
        for (_, key) in ACTION_FREE_TEXT.iter().filter(|(a, _)| *a == action) {
            if let Some(value) = clear.remove(*key) {
                private.insert((*key).to_owned(), value);
            }
        }
        if private.is_empty() {
            continue;
        }
        let update = Query::update()
            .table("case_actions")
            .value("detail", serde_json::Value::Object(clear).to_string())
            .value(
                "detail_sealed",
                seal(&serde_json::Value::Object(private).to_string())?,
            )
            .and_where(Expr::col("id").eq(id))
            .to_owned();
        conn.execute(&update).await?;
        super::replaced_clear_text();
    }
    Ok(())
}
