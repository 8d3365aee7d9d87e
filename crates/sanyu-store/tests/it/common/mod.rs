//! Helpers the store's integration tests share.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use sanyu_store::entities::student;
use sanyu_store::migration::Migrator;
use sanyu_store::sea_orm::EntityTrait;
use sanyu_store::{Db, DbConfig, roster};
use sanyu_test_support::TestDb;
use sea_orm_migration::MigratorTrait;
use uuid::Uuid;

/// A connection to `db` with only the first `applied` migrations run (in the
/// migrator's order), to see what the next one does to rows already stored.
pub async fn migrated_up_to(db: &TestDb, applied: u32) -> Db {
    let conn = sanyu_store::db::connect(&DbConfig::new(db.url()))
        .await
        .expect("connect");
    Migrator::up(&conn, Some(applied))
        .await
        .expect("migrate to the one before");
    conn
}

/// The id of student `no` of the school with `code`.
pub async fn student_id(db: &Db, code: &str, no: &str) -> Uuid {
    let school = roster::school_by_code(db, code).await.unwrap().unwrap();
    roster::student_by_no(db, school.id, no)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// Seed school `code` and return a student of it (the first stored).
pub async fn seeded_student(conn: &Db, code: &str) -> student::Model {
    sanyu_test_support::seed_school(conn, code).await;
    student::Entity::find()
        .one(conn)
        .await
        .expect("student")
        .expect("a seeded student")
}
