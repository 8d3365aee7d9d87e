//! Schema migrations. They run on PostgreSQL and SQLite alike; each runs in a
//! transaction on both (`use_transaction`), so a failed migration leaves nothing half-made.
//!
//! The previous release (`deploy/previous-release`) keeps serving while a new
//! release's migrations run: a migration only adds (tables, nullable or
//! defaulted columns, indexes). Dropping, renaming or tightening waits for the
//! release after the one that stopped using it (deploy/README.md, "Upgrades";
//! tests/e2e/upgrade.rs runs the previous release's binaries on this schema).

use sea_orm_migration::prelude::*;

mod m20261129_000001_create_roster;
mod m20261129_000002_create_tokens;
mod m20261129_000003_create_reports_and_cases;
mod m20261129_000004_create_messaging;
mod m20261129_000005_create_audit_log;
mod m20261129_000006_create_case_work;
mod m20261129_000007_create_screening;
mod m20261129_000008_create_delivery_attempts;
mod m20261129_000009_create_zero_reports_and_hotline;
mod m20261129_000010_create_decisions;
mod m20261129_000011_allow_cases_without_student;
mod m20261129_143000_add_screening_import_leases;
mod m20261204_090000_seal_free_text;
mod m20261205_100001_add_dead_letter_school;
mod m20261205_100002_allow_deployment_tokens;
mod m20261205_100003_create_role_grants;
mod m20261205_110000_add_delivery_sending;
mod m20261205_120000_create_console_sessions;
mod m20261206_040000_add_sign_in_links;
mod m20261207_010000_create_duty_rosters;
mod m20261207_020000_add_ack_links;
mod m20261207_030000_add_case_last_action;
mod m20261208_010000_create_notification_digests;
mod m20261208_020000_add_contact_verification;
mod m20261208_030000_create_notification_preferences;
mod sqlite_rebuild;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{ConnectionTrait, DatabaseBackend};

use crate::crypto::Sealer;

/// What one run of the migrator carries besides the connection.
#[derive(Clone)]
struct Run {
    /// The data key, for migrations that seal rows already stored.
    key: Option<Sealer>,
    /// Set when a migration replaced clear text that may linger in freed
    /// space (see [`purge_replaced_clear_text`]).
    replaced_clear_text: Arc<AtomicBool>,
}

tokio::task_local! {
    static RUN: Run;
}

/// The data key of this migration run, if it has one.
fn data_key() -> Option<Sealer> {
    RUN.try_with(|r| r.key.clone()).ok().flatten()
}

/// Note that a migration replaced clear text.
fn replaced_clear_text() {
    let _ = RUN.try_with(|r| r.replaced_clear_text.store(true, Ordering::SeqCst));
}

/// Run every pending migration, with the data key when given. Returns
/// whether a migration replaced clear text.
pub(crate) async fn run(db: &crate::Db, key: Option<Sealer>) -> std::result::Result<bool, DbErr> {
    let run = Run {
        key,
        replaced_clear_text: Arc::new(AtomicBool::new(false)),
    };
    let flag = run.replaced_clear_text.clone();
    RUN.scope(run, Migrator::up(db, None)).await?;
    Ok(flag.load(Ordering::SeqCst))
}

/// Clear text that a migration sealed and overwrote can linger where the
/// database keeps old versions of rows: the SQLite WAL (the migration zeroes
/// freed space in the file itself with `secure_delete`) and PostgreSQL's dead
/// tuples. Checkpoint and truncate the WAL, or rewrite the tables. Outside
/// the migration's transaction, once, after it committed.
pub(crate) async fn purge_replaced_clear_text(db: &crate::Db) -> std::result::Result<(), DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Sqlite => {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    DatabaseBackend::Sqlite,
                    "PRAGMA wal_checkpoint(TRUNCATE)",
                ))
                .await?;
            let busy: i64 = match row {
                Some(r) => r.try_get_by_index(0)?,
                None => 0,
            };
            if busy != 0 {
                tracing::warn!(
                    "the SQLite WAL could not be truncated while another connection reads; \
                     earlier clear text stays in it until the next checkpoint"
                );
            }
        }
        _ => {
            db.execute_unprepared(&format!("VACUUM FULL {}", SEALED_TABLES.join(", ")))
                .await?;
        }
    }
    Ok(())
}

/// The tables whose clear free text the sealing migration replaced.
const SEALED_TABLES: [&str; 3] = ["referrals", "hotline_calls", "case_actions"];

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_roster::Migration),
            Box::new(m20261129_000002_create_tokens::Migration),
            Box::new(m20261129_000003_create_reports_and_cases::Migration),
            Box::new(m20261129_000004_create_messaging::Migration),
            Box::new(m20261129_000005_create_audit_log::Migration),
            Box::new(m20261129_000006_create_case_work::Migration),
            Box::new(m20261129_000007_create_screening::Migration),
            Box::new(m20261129_000009_create_zero_reports_and_hotline::Migration),
            Box::new(m20261129_000008_create_delivery_attempts::Migration),
            Box::new(m20261129_000010_create_decisions::Migration),
            Box::new(m20261129_000011_allow_cases_without_student::Migration),
            Box::new(m20261129_143000_add_screening_import_leases::Migration),
            Box::new(m20261204_090000_seal_free_text::Migration),
            Box::new(m20261205_100001_add_dead_letter_school::Migration),
            Box::new(m20261205_100002_allow_deployment_tokens::Migration),
            Box::new(m20261205_100003_create_role_grants::Migration),
            Box::new(m20261205_110000_add_delivery_sending::Migration),
            Box::new(m20261205_120000_create_console_sessions::Migration),
            Box::new(m20261206_040000_add_sign_in_links::Migration),
            Box::new(m20261207_010000_create_duty_rosters::Migration),
            Box::new(m20261207_020000_add_ack_links::Migration),
            Box::new(m20261207_030000_add_case_last_action::Migration),
            Box::new(m20261208_010000_create_notification_digests::Migration),
            Box::new(m20261208_020000_add_contact_verification::Migration),
            Box::new(m20261208_030000_create_notification_preferences::Migration),
        ]
    }
}

pub(crate) fn fk(
    from_table: &'static str,
    from_col: &'static str,
    to_table: &'static str,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_col)
        .to(to_table, "id")
        .to_owned()
}

/// Add `columns` to `table`, one statement each: SQLite takes one ADD COLUMN
/// per ALTER TABLE.
pub(crate) async fn add_columns(
    manager: &SchemaManager<'_>,
    table: &'static str,
    columns: impl IntoIterator<Item = ColumnDef>,
) -> Result<(), DbErr> {
    for column in columns {
        manager
            .alter_table(Table::alter().table(table).add_column(column).to_owned())
            .await?;
    }
    Ok(())
}

/// Index `name` on `table` over `cols`, in that order.
pub(crate) fn index(
    name: &str,
    table: &'static str,
    cols: &[&'static str],
) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    for col in cols {
        index.col(*col);
    }
    index
}
