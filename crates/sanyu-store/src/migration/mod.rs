//! Schema migrations. They run on PostgreSQL and SQLite alike; each runs in a
//! transaction on both (`use_transaction`), so a failed migration leaves nothing half-made.

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
