//! Migration 000011 on a database that already holds cases: the rows, their
//! signals and timeline survive; foreign keys and the one-active-case-per-student
//! index still hold; a case may now be about no student.

use crate::common;

use chrono::Utc;
use sanyu_store::cases;
use sanyu_store::entities::case;
use sanyu_store::migration::Migrator;
use sanyu_store::sea_orm::sea_query::{InsertStatement, Query};
use sanyu_store::sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, Statement,
};
use sanyu_test_support::TestDb;
use sea_orm_migration::MigratorTrait;
use uuid::Uuid;

/// The migrations before 000011, in the migrator's order (…, 000009, 000008).
const BEFORE: u32 = 9;

/// A `high` report signal row of case `case_id`, as written before 000011.
fn old_signal(
    case_id: Uuid,
    event_id: &str,
    rule_id: &str,
    now: chrono::DateTime<Utc>,
) -> InsertStatement {
    Query::insert()
        .into_table("case_signals")
        .columns([
            "id",
            "case_id",
            "event_id",
            "kind",
            "level",
            "decision",
            "rule_id",
            "attached_at",
        ])
        .values_panic([
            Uuid::now_v7().into(),
            case_id.into(),
            event_id.into(),
            "report".into(),
            "high".into(),
            "opened".into(),
            rule_id.into(),
            now.into(),
        ])
        .to_owned()
}

async fn existing_cases_survive_and_new_ones_need_no_student(db: TestDb) {
    let conn = common::migrated_up_to(&db, BEFORE).await;
    let s = common::seeded_student(&conn, "MIG1").await;
    let case_id = Uuid::now_v7();
    let now = Utc::now();
    // The old shape of a case row (no subject, no merged_into).
    let insert = Query::insert()
        .into_table("cases")
        .columns([
            "id",
            "reference",
            "school_id",
            "class_id",
            "student_id",
            "level",
            "level_rank",
            "status",
            "opened_rule",
            "opened_at",
            "updated_at",
            "version",
            "ladder_epoch",
            "ladder_state",
        ])
        .values_panic([
            case_id.into(),
            "C-OLD00001".into(),
            s.school_id.into(),
            s.class_id.into(),
            s.id.into(),
            "high".into(),
            2i16.into(),
            "open".into(),
            "report.opens_or_raises.v1".into(),
            now.into(),
            now.into(),
            1i32.into(),
            0i32.into(),
            "stopped".into(),
        ])
        .to_owned();
    conn.execute(&insert).await.expect("old case row");
    let signal = old_signal(case_id, "report:1", "report.opens_or_raises.v1", now);
    conn.execute(&signal).await.expect("old signal row");

    Migrator::up(&conn, None).await.expect("migrate 000011");

    let old = cases::get(&conn, case_id)
        .await
        .expect("read")
        .expect("the old case");
    assert_eq!(
        (
            old.student_id,
            old.class_id,
            old.subject.as_str(),
            old.merged_into
        ),
        (Some(s.id), Some(s.class_id), "student", None)
    );
    assert_eq!(
        cases::signals(&conn, case_id).await.expect("signals").len(),
        1
    );
    // Foreign keys still hold: a signal of no case is refused.
    let orphan = old_signal(Uuid::now_v7(), "report:2", "r", now);
    assert!(
        conn.execute(&orphan).await.is_err(),
        "orphan signal accepted"
    );
    // One active case per student still: a second open case for the student is refused …
    let second = cases::NewCase {
        id: Uuid::now_v7(),
        reference: "C-SECOND01".into(),
        school_id: s.school_id,
        class_id: Some(s.class_id),
        student_id: Some(s.id),
        subject: sanyu_domain::CaseSubject::Student,
        level: sanyu_domain::RiskLevel::High,
        rule: "r".into(),
        at: now,
    };
    assert!(
        cases::open(&conn, second).await.is_err(),
        "two open cases for one student"
    );
    // … while any number of cases about unidentified callers may be open.
    for n in 0..2 {
        cases::open(
            &conn,
            cases::NewCase {
                id: Uuid::now_v7(),
                reference: format!("C-UNIDENT{n}"),
                school_id: s.school_id,
                class_id: None,
                student_id: None,
                subject: sanyu_domain::CaseSubject::UnidentifiedCaller,
                level: sanyu_domain::RiskLevel::Critical,
                rule: "hotline.unidentified_caller.v1".into(),
                at: now,
            },
        )
        .await
        .expect("an unidentified caller's case");
    }
    let unidentified = case::Entity::find()
        .filter(case::Column::StudentId.is_null())
        .all(&conn)
        .await
        .expect("list");
    assert_eq!(unidentified.len(), 2);
    assert!(
        unidentified
            .iter()
            .all(|c| c.subject == sanyu_domain::CaseSubject::UnidentifiedCaller)
    );
    if conn.get_database_backend() == DatabaseBackend::Sqlite {
        // The rebuilt table has its indexes back.
        let rows = conn
            .query_all_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cases' \
                 AND sql IS NOT NULL ORDER BY name",
            ))
            .await
            .expect("indexes");
        let names: Vec<String> = rows
            .iter()
            .map(|r| r.try_get_by_index(0).expect("name"))
            .collect();
        assert_eq!(
            names,
            [
                "cases_by_school_status",
                "cases_by_school_subject",
                "cases_one_active_per_student"
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_cases_survive_and_new_ones_need_no_student_on_sqlite() {
    existing_cases_survive_and_new_ones_need_no_student(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_cases_survive_and_new_ones_need_no_student_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        existing_cases_survive_and_new_ones_need_no_student(db).await;
    }
}
