//! A closed set stored as text (a case's status, level, ladder state and
//! subject) is read once, at the column: a value no build knows is an error
//! that names the column and the value, never a panic and never a default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use chrono::Utc;
use sanyu_domain::{CaseStatus, CaseSubject, LadderState, RiskLevel, case_reference};
use sanyu_store::cases::{self, NewCase};
use sanyu_store::sea_orm::sea_query::{Expr, ExprTrait, Query};
use sanyu_store::sea_orm::{ConnectionTrait, DbErr};
use sanyu_store::{Db, StoreError};
use sanyu_test_support::{TestDb, seed_school};
use uuid::Uuid;

/// Write `value` into `column` of case `id` behind the entity's back.
async fn store_raw(db: &Db, id: Uuid, column: &'static str, value: &str) {
    let update = Query::update()
        .table("cases")
        .value(column, value)
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    db.execute(&update).await.expect("raw update");
}

async fn an_unknown_stored_value_is_an_error_naming_its_column(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "ENUM1").await;
    let student = common::student_id(&db, "ENUM1", "S1").await;
    let school = sanyu_store::roster::school_by_code(&db, "ENUM1")
        .await
        .unwrap()
        .unwrap();
    let class = sanyu_store::roster::student_by_no(&db, school.id, "S1")
        .await
        .unwrap()
        .unwrap()
        .class_id;
    let id = Uuid::now_v7();
    cases::open(
        &db,
        NewCase {
            id,
            reference: case_reference(id),
            school_id: school.id,
            class_id: Some(class),
            student_id: Some(student),
            subject: CaseSubject::Student,
            level: RiskLevel::High,
            rule: "test".into(),
            at: Utc::now(),
        },
    )
    .await
    .unwrap();
    // Written and read back as the same values.
    let row = cases::get(&db, id).await.unwrap().expect("the case");
    assert_eq!(
        (row.status, row.level, row.ladder_state, row.subject),
        (
            CaseStatus::Open,
            RiskLevel::High,
            LadderState::Stopped,
            CaseSubject::Student
        )
    );

    for (column, unknown, good, kind) in [
        ("status", "paused", "open", "case status"),
        ("level", "severe", "high", "risk level"),
        ("ladder_state", "halted", "stopped", "ladder state"),
        ("subject", "visitor", "student", "case subject"),
    ] {
        store_raw(&db, id, column, unknown).await;
        let err = cases::get(&db, id)
            .await
            .expect_err("an unknown value must not read as a case");
        let StoreError::Db(DbErr::Type(message)) = &err else {
            panic!("{column}: expected a type error, got {err:?}");
        };
        assert!(
            message.starts_with(&format!("column \"{column}\": unknown {kind} `{unknown}`")),
            "{column}: {message}"
        );
        // The list of cases fails the same way (no row is skipped or defaulted).
        let listed = cases::list(
            &db,
            &cases::CaseFilter {
                school_id: school.id,
                include_unidentified: true,
                limit: 10,
                ..Default::default()
            },
        )
        .await;
        assert!(listed.is_err(), "{column}: {listed:?}");
        store_raw(&db, id, column, good).await;
        assert!(cases::get(&db, id).await.unwrap().is_some(), "{column}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_stored_value_is_an_error_naming_its_column_on_sqlite() {
    an_unknown_stored_value_is_an_error_naming_its_column(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_stored_value_is_an_error_naming_its_column_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        an_unknown_stored_value_is_an_error_naming_its_column(db).await;
    }
}
